"""Guards inside a mounted sub-application answer 401/403/429/503, never 500.

The gate is installed on the outer app only; the sub-app mounted under it has no handler for our
errors, and Starlette hands a mounted app's routes the sub-app's own handlers. Served by uvicorn.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Security, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from fastapi_authgate import AuthContext, AuthGate, rate_limited, require_user
from tests.servers import serve
from tests.test_dependencies import TableVerifier, bearer


def sub_app() -> FastAPI:
    sub = FastAPI()

    @sub.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, Any]:
        return {"subject": auth.subject}

    @sub.get("/admin")
    async def admin(auth: AuthContext = Security(require_user, scopes=["admin"])) -> dict[str, Any]:
        return {"subject": auth.subject}

    @sub.get("/limited", dependencies=[Depends(rate_limited("1/minute", key="ip"))])
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    @sub.get("/per-user", dependencies=[Depends(rate_limited("5/minute", key="user"))])
    async def per_user() -> dict[str, bool]:
        return {"ok": True}

    @sub.websocket("/ws")
    async def ws(websocket: WebSocket, auth: AuthContext = Depends(require_user)) -> None:
        await websocket.accept()
        await websocket.send_json({"subject": auth.subject})
        await websocket.close()

    return sub


def outer_app(verifier: TableVerifier, *, install_on_sub: bool = False) -> FastAPI:
    outer = FastAPI()
    gate = AuthGate(verifier, realm="outer")
    gate.install(outer)
    sub = sub_app()
    if install_on_sub:
        gate.install(sub)
    outer.mount("/sub", sub)
    return outer


@pytest.fixture
def verifier() -> TableVerifier:
    return TableVerifier()


def test_every_refusal_in_a_mounted_app_has_its_status_and_headers(verifier: TableVerifier) -> None:
    with serve(outer_app(verifier)) as base, httpx.Client(base_url=base + "/sub") as client:
        missing = client.get("/me")
        assert missing.status_code == 401, missing.text
        assert missing.headers["www-authenticate"] == 'Bearer realm="outer"'

        forged = client.get("/me", headers=bearer("forged"))
        assert forged.status_code == 401
        assert 'error="invalid_token"' in forged.headers["www-authenticate"]

        scope = client.get("/admin", headers=bearer("alice"))
        assert scope.status_code == 403
        challenge = scope.headers["www-authenticate"]
        assert 'error="insufficient_scope"' in challenge and 'scope="admin"' in challenge
        assert client.get("/admin", headers=bearer("root")).json() == {"subject": "root"}

        assert client.get("/limited").status_code == 200
        limited = client.get("/limited")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "ratelimit-policy" in limited.headers

        anonymous = client.get("/per-user")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == 'Bearer realm="outer"'

        verifier.down = True
        down = client.get("/me", headers=bearer("alice"))
        assert down.status_code == 503
        assert down.headers["retry-after"] == "7"


def test_installing_the_gate_on_the_sub_app_too_gives_the_full_body(
    verifier: TableVerifier,
) -> None:
    with serve(outer_app(verifier, install_on_sub=True)) as base, httpx.Client() as client:
        missing = client.get(base + "/sub/me")
        assert missing.status_code == 401
        assert missing.json() == {"detail": "Not authenticated", "error": "not_authenticated"}
        assert client.get(base + "/sub/me", headers=bearer("alice")).json() == {"subject": "alice"}


def test_a_websocket_in_a_mounted_app_is_closed_with_1008(verifier: TableVerifier) -> None:
    client = TestClient(outer_app(verifier))
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/sub/ws"):
        pass
    assert info.value.code == 1008
    with client.websocket_connect("/sub/ws", headers=bearer("alice")) as ws:
        assert ws.receive_json() == {"subject": "alice"}
