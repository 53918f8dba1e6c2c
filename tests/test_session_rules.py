"""One rule set for sessions and scopes: the guards, the middleware and the test kit agree.

DESIGN.md: a session is a session cookie, a provider-checked session pair or a verified JWT whose
``sid`` names the session, whether it came as a cookie or a bearer token. A verified identity that
is not a session gets 401 ``invalid_token`` on a session route, from every place that checks.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request

from fastapi_authgate import (
    AuthContext,
    AuthGate,
    AuthGateMiddleware,
    ConfigurationError,
    require_session,
)
from fastapi_authgate.providers.dev import DevIssuer
from fastapi_authgate.testing import override_user
from tests.servers import serve

ISSUER = DevIssuer()


def session_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(AuthGateMiddleware, include=["/mw/*"], mode="session")
    AuthGate(ISSUER.verifier()).install(app)

    @app.get("/guard")
    async def guard(auth: AuthContext = Depends(require_session)) -> dict[str, Any]:
        return {"sid": auth.session_id, "credential": auth.credential}

    @app.get("/mw/data")
    async def mw(request: Request) -> dict[str, Any]:
        return {"sid": request.state.auth.session_id}

    return app


@pytest.mark.parametrize("path", ["/guard", "/mw/data"])
def test_session_rules_are_the_same_for_guard_and_middleware(path: str) -> None:
    session_id, session_token = ISSUER.new_session("alice")
    plain = ISSUER.issue("alice")
    with serve(session_app()) as base, httpx.Client(base_url=base) as client:
        # a bearer JWT whose sid names the session is a session (DESIGN.md section 1)
        as_bearer = client.get(path, headers={"Authorization": f"Bearer {session_token}"})
        assert as_bearer.status_code == 200, as_bearer.text
        assert as_bearer.json()["sid"] == session_id
        # the same token as the session cookie
        as_cookie = client.get(path, headers={"Cookie": f"authgate_session={session_token}"})
        assert as_cookie.json()["sid"] == session_id
        # a verified token without sid is an identity, not a session
        refused = client.get(path, headers={"Authorization": f"Bearer {plain}"})
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        # nothing at all
        anonymous = client.get(path)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"] == "not_authenticated"


def test_the_test_kit_override_answers_like_the_guard() -> None:
    app = session_app()
    client = TestClient(app)
    with override_user(app, sub="bob"):
        refused = client.get("/guard")
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_token"
    with override_user(app, sub="bob", session_id="s-1"):
        assert client.get("/guard").json() == {"sid": "s-1", "credential": "bearer"}


def test_optional_middleware_with_scopes_is_refused_when_built() -> None:
    with pytest.raises(ConfigurationError, match="optional"):
        AuthGateMiddleware(FastAPI(), mode="optional", scopes=["admin"])
    with pytest.raises(ConfigurationError, match="mode"):
        AuthGateMiddleware(FastAPI(), mode="admin")  # type: ignore[arg-type]


def test_optional_middleware_with_scopes_fails_at_startup() -> None:
    app = FastAPI()
    app.add_middleware(AuthGateMiddleware, mode="optional", scopes=["admin"])
    AuthGate(ISSUER.verifier()).install(app)
    with pytest.raises(ConfigurationError), TestClient(app):
        pass


def test_changing_a_guards_mode_keeps_its_rules() -> None:
    from fastapi_authgate import AuthDependency

    guard = AuthDependency("user", gate=AuthGate(ISSUER.verifier()))
    app = FastAPI()

    @app.get("/s")
    async def s(auth: AuthContext = Depends(guard)) -> dict[str, Any]:
        return {"sid": auth.session_id}

    plain = {"Authorization": "Bearer " + ISSUER.issue("alice")}
    client = TestClient(app)
    assert client.get("/s", headers=plain).status_code == 200
    guard.mode = "session"
    assert client.get("/s", headers=plain).status_code == 401
    with pytest.raises(ConfigurationError):
        guard.mode = "admin"  # type: ignore[assignment]
