"""AuthGateMiddleware: the same checks app-wide, with include/exclude rules."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import Depends, FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.websockets import WebSocketDisconnect

from fastapi_authgate import AuthContext, AuthGate, AuthGateMiddleware, require_user
from tests.test_dependencies import TableVerifier, bearer


def build(**options: Any) -> tuple[TestClient, TableVerifier]:
    verifier = TableVerifier()
    gate = AuthGate(verifier, realm="mw")
    app = FastAPI()
    app.add_middleware(AuthGateMiddleware, **options)
    gate.install(app)

    @app.get("/api/data")
    async def data(request: Request) -> dict[str, Any]:
        auth = getattr(request.state, "auth", None)
        return {"subject": auth.subject if auth else None}

    @app.get("/api/guarded")
    async def guarded(auth: AuthContext = Depends(require_user)) -> dict[str, Any]:
        return {"subject": auth.subject}

    @app.get("/public/info")
    async def info() -> dict[str, str]:
        return {"ok": "yes"}

    @app.websocket("/api/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"subject": websocket.scope["auth"].subject})
        await websocket.close()

    return TestClient(app), verifier


def test_included_paths_need_a_credential() -> None:
    client, _ = build(include=["/api/*"])
    response = client.get("/api/data")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="mw"'
    assert response.json()["error"] == "not_authenticated"
    assert client.get("/public/info").status_code == 200
    assert client.get("/api/data", headers=bearer("alice")).json() == {"subject": "alice"}


def test_exclude_wins_over_include() -> None:
    client, _ = build(include=["/api/*"], exclude=["/api/data"])
    assert client.get("/api/data").json() == {"subject": None}
    assert client.get("/api/guarded").status_code == 401


def test_forged_token_is_invalid_token() -> None:
    client, _ = build()
    response = client.get("/public/info", headers=bearer("forged"))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_middleware_and_dependency_verify_once() -> None:
    client, verifier = build(include=["/api/*"])
    assert client.get("/api/guarded", headers=bearer("alice")).json() == {"subject": "alice"}
    assert verifier.calls == 1


def test_required_scopes_give_403() -> None:
    client, _ = build(include=["/api/*"], scopes=["admin"])
    response = client.get("/api/data", headers=bearer("alice"))
    assert response.status_code == 403
    assert 'scope="admin"' in response.headers["www-authenticate"]
    assert client.get("/api/data", headers=bearer("root")).status_code == 200


def test_optional_mode_lets_anonymous_through() -> None:
    client, _ = build(mode="optional")
    assert client.get("/api/data").json() == {"subject": None}
    assert client.get("/api/data", headers=bearer("forged")).status_code == 401


def test_session_mode_requires_a_session() -> None:
    client, _ = build(mode="session", include=["/api/*"])
    assert client.get("/api/data", headers=bearer("alice")).status_code == 401
    client.cookies.set("authgate_session", "sess")
    assert client.get("/api/data").json() == {"subject": "bob"}


def test_provider_down_is_503() -> None:
    client, verifier = build()
    verifier.down = True
    response = client.get("/public/info", headers=bearer("alice"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"


def test_websocket_refused_and_accepted() -> None:
    client, _ = build(include=["/api/*"])
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/api/ws"):
        pass
    assert info.value.code == 1008
    with client.websocket_connect("/api/ws", headers=bearer("alice")) as ws:
        assert ws.receive_json() == {"subject": "alice"}


def test_without_gate_answers_503() -> None:
    app = FastAPI()
    app.add_middleware(AuthGateMiddleware)

    @app.get("/x")
    async def x() -> dict[str, str]:
        return {}

    response = TestClient(app).get("/x")
    assert response.status_code == 503
    assert response.json()["error"] == "provider_unavailable"
