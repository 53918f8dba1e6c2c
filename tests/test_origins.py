"""Cookie sessions refuse cross-site unsafe requests and WebSocket handshakes (CSRF, CSWSH).

Over real HTTP (uvicorn on loopback), with the browser's headers written out by hand: a page on
another site can make the victim's browser send the session cookie, but not choose ``Origin``,
``Sec-Fetch-Site`` or ``Host``. Bearer tokens are never sent by the browser on its own and are
not affected.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import Depends, FastAPI, WebSocket

from fastapi_authgate import (
    AuthContext,
    AuthGate,
    AuthGateMiddleware,
    ConfigurationError,
    CrossOriginError,
    optional_user,
    require_user,
)
from fastapi_authgate.origins import OriginPolicy, parse_origin
from fastapi_authgate.providers.dev import DevIssuer
from tests.servers import serve

ISSUER = DevIssuer()
EVIL = "https://evil.example"


def build(**gate_options: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(AuthGateMiddleware, include=["/mw/*"])
    AuthGate(ISSUER.verifier(), **gate_options).install(app)

    @app.post("/transfer")
    async def transfer(auth: AuthContext = Depends(require_user)) -> dict[str, str]:
        return {"by": auth.subject}

    @app.get("/balance")
    async def balance(auth: AuthContext = Depends(require_user)) -> dict[str, str]:
        return {"of": auth.subject}

    @app.delete("/maybe")
    async def maybe(auth: AuthContext | None = Depends(optional_user)) -> dict[str, Any]:
        return {"by": auth.subject if auth else None}

    @app.post("/mw/action")
    async def mw_action() -> dict[str, bool]:
        return {"done": True}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, auth: AuthContext = Depends(require_user)) -> None:
        await websocket.accept()
        await websocket.send_json({"subject": auth.subject})
        await websocket.close()

    return app


@pytest.fixture(scope="module")
def cookie() -> str:
    _, token = ISSUER.new_session("victim")
    return f"authgate_session={token}"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve(build()) as base:
        yield base


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json() == {
        "detail": "Cross-site request refused for a cookie session",
        "error": "cross_origin_request",
    }
    assert "www-authenticate" not in response.headers


def test_cross_site_form_post_with_the_session_cookie_is_refused(server: str, cookie: str) -> None:
    with httpx.Client(base_url=server) as client:
        for headers in (
            {"Origin": EVIL},  # a browser without Sec-Fetch-Site
            {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
            {"Origin": "https://sub.127.0.0.1.example", "Sec-Fetch-Site": "same-site"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Origin": "null"},  # sandboxed frame, opaque redirect
        ):
            _refused(client.post("/transfer", headers={"Cookie": cookie, **headers}))
            _refused(client.delete("/maybe", headers={"Cookie": cookie, **headers}))
            _refused(client.post("/mw/action", headers={"Cookie": cookie, **headers}))


def test_same_origin_and_non_browser_requests_pass(server: str, cookie: str) -> None:
    own = server  # http://127.0.0.1:PORT, the Host httpx sends
    with httpx.Client(base_url=server) as client:
        for headers in (
            {"Origin": own},
            {"Origin": own, "Sec-Fetch-Site": "same-origin"},
            {"Sec-Fetch-Site": "same-origin"},
            {"Sec-Fetch-Site": "none"},  # typed into the address bar
            {},  # curl: no browser signal, no ambient cookie being ridden
        ):
            ok = client.post("/transfer", headers={"Cookie": cookie, **headers})
            assert ok.json() == {"by": "victim"}, (headers, ok.text)
            assert client.post("/mw/action", headers={"Cookie": cookie, **headers}).is_success


def test_bearer_tokens_and_safe_methods_are_not_affected(server: str, cookie: str) -> None:
    bearer = {"Authorization": "Bearer " + ISSUER.issue("alice")}
    with httpx.Client(base_url=server) as client:
        cross = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}
        assert client.post("/transfer", headers={**bearer, **cross}).json() == {"by": "alice"}
        assert client.get("/balance", headers={"Cookie": cookie, **cross}).json() == {
            "of": "victim"
        }
        # anonymous cross-site requests are not cookie sessions: nothing to protect
        assert client.delete("/maybe", headers=cross).json() == {"by": None}


def test_allowed_origins_replace_the_host_comparison(cookie: str) -> None:
    with serve(build(allowed_origins=["https://app.example", "http://localhost:3000"])) as base:
        own = base
        with httpx.Client(base_url=base) as client:
            for origin in (
                "https://app.example",
                "https://APP.example:443",
                "http://localhost:3000",
            ):
                ok = client.post("/transfer", headers={"Cookie": cookie, "Origin": origin})
                assert ok.json() == {"by": "victim"}, origin
            listed = {"Origin": "https://app.example", "Sec-Fetch-Site": "same-site"}
            assert client.post("/transfer", headers={"Cookie": cookie, **listed}).is_success
            # once origins are listed, Host is never consulted: a lying Host gets nothing
            _refused(client.post("/transfer", headers={"Cookie": cookie, "Origin": own}))
            lying = {"Cookie": cookie, "Origin": EVIL, "Host": "evil.example"}
            _refused(client.post("/transfer", headers=lying))
            _refused(
                client.post("/transfer", headers={"Cookie": cookie, "Origin": "http://app.example"})
            )
            same = {"Cookie": cookie, "Sec-Fetch-Site": "same-origin"}
            assert client.post("/transfer", headers=same).is_success


def test_x_forwarded_host_counts_only_from_a_trusted_proxy(cookie: str) -> None:
    public = {"Cookie": cookie, "Origin": "https://api.example", "X-Forwarded-Host": "api.example"}
    with serve(build(trusted_proxies=["127.0.0.1"])) as base, httpx.Client(base_url=base) as c:
        assert c.post("/transfer", headers=public).json() == {"by": "victim"}
    with serve(build()) as base, httpx.Client(base_url=base) as c:
        _refused(c.post("/transfer", headers=public))


def _handshake(base: str, headers: dict[str, str]) -> str:
    """The status line uvicorn answers a WebSocket upgrade with (101 accepted, 403 refused)."""
    url = urlsplit(base)
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: {url.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock.recv(4096).split(b"\r\n", 1)[0].decode()


def test_cross_site_websocket_handshake_with_the_cookie_is_refused(
    server: str, cookie: str
) -> None:
    assert " 403 " in _handshake(server, {"Cookie": cookie, "Origin": EVIL}) + " "
    assert " 101 " in _handshake(server, {"Cookie": cookie, "Origin": server}) + " "
    bearer = {"Authorization": "Bearer " + ISSUER.issue("alice"), "Origin": EVIL}
    assert " 101 " in _handshake(server, bearer) + " "


@pytest.mark.parametrize("entry", ["*", "https://app.example/path", "app.example", "ftp://x", ""])
def test_bad_allowed_origins_fail_at_startup(entry: str) -> None:
    with pytest.raises(ConfigurationError, match="AUTHGATE_ALLOWED_ORIGINS"):
        AuthGate(ISSUER.verifier(), allowed_origins=[entry])


def test_allowed_origins_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_ALLOWED_ORIGINS", "https://app.example, http://localhost:3000")
    gate = AuthGate.from_settings()
    assert gate.origins.allowed_origins == {"https://app.example", "http://localhost:3000"}
    monkeypatch.setenv("AUTHGATE_ALLOWED_ORIGINS", "*")
    with pytest.raises(ConfigurationError, match="AUTHGATE_ALLOWED_ORIGINS"):
        AuthGate.from_settings()


def test_parse_origin() -> None:
    assert parse_origin("https://App.Example") == ("https", "app.example", 443)
    assert parse_origin("http://[::1]:8000") == ("http", "::1", 8000)
    for bad in ("null", "https://u:p@x.example", "https://x.example?q", "https://x:99999", "x"):
        assert parse_origin(bad) is None


def test_two_origin_headers_are_refused() -> None:
    policy = OriginPolicy()
    scope = {
        "type": "http",
        "method": "POST",
        "headers": [(b"host", b"a.example"), (b"origin", b"http://a.example")] * 2,
    }
    with pytest.raises(CrossOriginError):
        policy.check(scope)
