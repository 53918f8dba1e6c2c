"""``AUTHGATE_REPORTING__SINK=qyzar`` end to end: the real QyzarClient against the fake Qyzar.

Both the app and the fake Qyzar are served by uvicorn on 127.0.0.1; the reporter runs in the
app's lifespan, so the shutdown flush is the one production would do.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from fastapi_authgate import AuthContext, AuthGate, ConfigurationError, require_user
from fastapi_authgate.reporting import LoginAttempts, QyzarSink, login_attempts
from fastapi_authgate.testing import FakeQyzar
from tests.servers import serve

pytestmark = pytest.mark.anyio


def qyzar_env(monkeypatch: pytest.MonkeyPatch, url: str, fake: FakeQyzar) -> None:
    monkeypatch.setenv("AUTHGATE_PROVIDER", "jwks")
    monkeypatch.setenv("AUTHGATE_JWKS_URL", "http://127.0.0.1:9/jwks.json")  # never fetched here
    monkeypatch.setenv("AUTHGATE_ISSUER", "https://issuer.test")
    monkeypatch.setenv("AUTHGATE_AUDIENCE", "api")
    monkeypatch.setenv("AUTHGATE_REPORTING__SINK", "qyzar")
    monkeypatch.setenv("AUTHGATE_REPORTING__FLUSH_SECONDS", "0.2")
    monkeypatch.setenv("AUTHGATE_QYZAR__API_URL", url)
    monkeypatch.setenv("AUTHGATE_QYZAR__PROJECT_ID", fake.project_id)
    monkeypatch.setenv("AUTHGATE_QYZAR__PROJECT_SECRET", fake.project_secret)


def build_app(gate: AuthGate) -> FastAPI:
    app = FastAPI()
    gate.install(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, str]:
        return {"user": auth.subject}

    @app.post("/login")
    async def login(name: str, attempts: LoginAttempts = Depends(login_attempts)) -> dict[str, Any]:
        risk = await attempts.record(name, success=True)
        trusted = await attempts.trust(name)
        return {"status": risk.status, "score": risk.score, "trusted": trusted}

    return app


async def test_requests_logins_and_trust_reach_qyzar(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeQyzar()
    session = fake.create_session()
    fake.fail(429, retry_after=1, times=1, route="request-logs")  # the first upload is retried
    with serve(fake.app) as qyzar_url:
        qyzar_env(monkeypatch, qyzar_url, fake)
        gate = AuthGate.from_settings()
        assert isinstance(gate.reporter.sink if gate.reporter else None, QyzarSink)
        with serve(build_app(gate)) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                for _ in range(40):
                    assert (await client.get("/healthz")).status_code == 200
                assert (await client.get("/me")).status_code == 401
                client.cookies.set("qyzar_session_id", session.session_id)
                first = (await client.post("/login?name=alice")).json()
                for _ in range(100):  # the trust call runs in the background
                    if "alice" in session.trusted_identifiers:
                        break
                    await asyncio.sleep(0.02)
                second = (await client.post("/login?name=alice")).json()
        # the app has stopped: its lifespan flushed the queue into the fake Qyzar
    assert first == {"status": "scored", "score": 30, "trusted": True}
    assert second["score"] == 5  # trusted on this device since the first login
    logged = fake.request_logs
    assert len(logged) == 40 + 1 + 2
    assert sorted(e["status"] for e in logged) == [200] * 42 + [401]
    assert {e["route"] for e in logged} == {"/healthz", "/me", "/login"}
    assert fake.calls["ato-login-attempt"] == 2 and fake.calls["ato-add-identifier"] == 2
    counters = gate.reporter.counters if gate.reporter else None
    assert counters is not None
    assert counters.sent == 43 + 4 and counters.failed == 0 and counters.retried > 0
    assert fake.project_secret.encode() not in repr(fake.request_logs).encode()


async def test_a_refused_secret_fails_batches_without_retrying(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeQyzar()
    with serve(fake.app) as qyzar_url:
        qyzar_env(monkeypatch, qyzar_url, fake)
        monkeypatch.setenv("AUTHGATE_QYZAR__PROJECT_SECRET", "not-the-secret")
        gate = AuthGate.from_settings()
        with serve(build_app(gate)) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                for _ in range(5):
                    assert (await client.get("/healthz")).status_code == 200
    counters = gate.reporter.counters if gate.reporter else None
    assert counters is not None
    assert counters.failed == 5 and counters.retried == 0 and counters.sent == 0
    assert fake.calls["request-logs"] >= 1 and fake.request_logs == []


@pytest.mark.parametrize("missing", ["API_URL", "PROJECT_ID", "PROJECT_SECRET"])
def test_a_missing_qyzar_setting_is_named(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    qyzar_env(monkeypatch, "http://127.0.0.1:9", FakeQyzar())
    monkeypatch.delenv(f"AUTHGATE_QYZAR__{missing}")
    with pytest.raises(ConfigurationError, match=f"AUTHGATE_QYZAR__{missing}"):
        AuthGate.from_settings()
