"""The example app switched to Qyzar by its three settings, against the fake over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from fastapi_authgate.errors import ConfigurationError
from fastapi_authgate.providers.qyzar import create_client_token
from tests.providers.qyzar_support import Served, qyzar, served_qyzar

__all__ = ["qyzar", "served_qyzar"]

VARIABLES = (
    "AUTHGATE_QYZAR__API_URL",
    "AUTHGATE_QYZAR__PROJECT_ID",
    "AUTHGATE_QYZAR__PROJECT_SECRET",
)


def _environment(monkeypatch: pytest.MonkeyPatch, qyzar: Served) -> None:
    monkeypatch.setenv("AUTHGATE_PROVIDER", "qyzar")
    monkeypatch.setenv("AUTHGATE_QYZAR__API_URL", qyzar.url)
    monkeypatch.setenv("AUTHGATE_QYZAR__PROJECT_ID", qyzar.fake.project_id)
    monkeypatch.setenv("AUTHGATE_QYZAR__PROJECT_SECRET", qyzar.fake.project_secret)
    monkeypatch.setenv("EXAMPLE_RATE_LIMIT", "2/minute")


@pytest.mark.anyio
async def test_example_app_switches_to_qyzar(
    qyzar: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    from example_app.main import create_app

    _environment(monkeypatch, qyzar)
    app = create_app()
    session = qyzar.fake.create_session(identifier="alice@example.com")
    cookie = {"cookie": session.cookie_header}
    token = create_client_token(
        qyzar.fake.project_secret, qyzar.fake.project_id, session_id=session.session_id
    ).client_token
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
            me = await client.get("/api/session", headers=cookie)
            assert me.status_code == 200
            assert me.json() == {
                "subject": "alice@example.com",
                "scopes": [],
                "provider": "qyzar",
                "session_id": session.session_id,
            }
            assert (await client.get("/api/me")).status_code == 401
            assert (await client.post("/dev/token", json={"sub": "eve"})).status_code == 404
            by_token = await client.get(
                "/api/client-token", headers={"x-qyzar-client-token": token}
            )
            assert by_token.json()["session_id"] == session.session_id
            assert (
                await client.get("/api/me", headers={"x-qyzar-client-token": token})
            ).status_code == 401
            limited = [(await client.get("/api/qyzar-limited")).status_code for _ in range(3)]
            assert limited == [200, 200, 429]


@pytest.mark.parametrize("missing", VARIABLES)
def test_a_missing_setting_stops_the_start_naming_it(
    qyzar: Served, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    from example_app.main import create_app

    _environment(monkeypatch, qyzar)
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigurationError, match=missing):
        create_app()
