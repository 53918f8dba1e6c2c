"""No token, cookie value, password or secret reaches an event or a log line (checked on bytes).

The example app runs with ``AUTHGATE_REPORTING__SINK=log``: every byte the log sink and the
package's own loggers write (at DEBUG) is captured, and so is every byte a sink receives over
HTTP. Then each secret the requests carried is looked for in those bytes.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from example_app.main import create_app
from fastapi_authgate import AuthGate
from fastapi_authgate.reporting import EVENT_LOGGER, Reporter
from fastapi_authgate.testing import DevIssuer
from tests.fakes.sink import FakeSinkServer, HTTPSink

QUERY_SECRET = "q-secret-4f1d9a"
OTHER_COOKIE = "cookie-secret-77ab"
API_KEY = "key-secret-9c2e"
FORGED = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.forged-signature-31337"


@pytest.fixture
def captured() -> Iterator[io.BytesIO]:
    buffer = io.BytesIO()
    stream = io.TextIOWrapper(buffer, encoding="utf-8", write_through=True)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("fastapi_authgate")
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def exercise(client: TestClient) -> list[str]:
    """Sign in, then send every kind of credential a client can; returns the secrets used."""
    signed_in = client.post("/dev/token", json={"sub": "alice", "scopes": ["admin"]})
    assert signed_in.status_code == 200
    access_token = signed_in.json()["access_token"]
    session_token = client.cookies.get("authgate_session")
    assert session_token
    bearer = {"Authorization": f"Bearer {access_token}"}
    assert client.get("/api/me", headers=bearer).status_code == 200
    assert client.get("/api/session").status_code == 200
    client.cookies.clear()
    assert (
        client.get(f"/api/me?access_token={access_token}&password={QUERY_SECRET}").status_code
        == 401
    )
    assert client.get("/api/me", headers={"Authorization": f"Bearer {FORGED}"}).status_code == 401
    assert (
        client.get(
            "/api/me", headers={"X-API-Key": API_KEY, "Cookie": f"other={OTHER_COOKIE}"}
        ).status_code
        == 401
    )
    return [
        access_token,
        access_token.split(".")[2],
        session_token,
        session_token.split(".")[2],
        QUERY_SECRET,
        FORGED,
        FORGED.split(".")[2],
        API_KEY,
        OTHER_COOKIE,
    ]


def test_log_sink_lines_and_package_logs_hold_no_secret(
    monkeypatch: pytest.MonkeyPatch, captured: io.BytesIO, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTHGATE_REPORTING__SINK", "log")
    app = create_app()
    with TestClient(app) as client:
        secrets = exercise(client)
    data = captured.getvalue()
    stderr = capfd.readouterr().err.encode()
    for secret in secrets:
        assert secret.encode() not in data, secret
        assert secret.encode() not in stderr, secret
    events = [
        json.loads(line.split(b" ", 2)[2])
        for line in data.splitlines()
        if line.startswith(EVENT_LOGGER.encode() + b" INFO {")
    ]
    assert [e["event"] for e in events].count("request") == 6
    logins = [e for e in events if e["event"] == "login"]
    assert [(e["identifier"], e["success"]) for e in logins] == [("alice", True)]
    assert [e["status"] for e in events if e["event"] == "request"] == [
        200,
        200,
        200,
        401,
        401,
        401,
    ]
    assert all(
        e["path"] == "/api/me" or e["path"] in ("/dev/token", "/api/session")
        for e in events
        if e["event"] == "request"
    )
    # the example sends the same JSON lines to stderr
    stderr_events = [json.loads(line) for line in stderr.splitlines() if line.startswith(b"{")]
    assert len(stderr_events) == len(events)


def test_events_sent_over_http_hold_no_secret(captured: io.BytesIO) -> None:
    server = FakeSinkServer()
    issuer = DevIssuer()
    with server.running() as url:
        gate = AuthGate(issuer.verifier(), dev_issuer=issuer, reporter=Reporter(HTTPSink(url)))
        app = create_app(gate)
        with TestClient(app) as client:
            secrets = exercise(client)
    raw = b"".join(server.raw)
    assert len(server.received) == 7  # six requests and the sign-in's login attempt
    for secret in secrets:
        assert secret.encode() not in raw, secret
        assert secret.encode() not in captured.getvalue(), secret
