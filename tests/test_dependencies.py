"""The guards as FastAPI sees them: statuses, challenges, scopes, sessions, sockets, overrides."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Security, WebSocket
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.websockets import WebSocketDisconnect

from fastapi_authgate import (
    AuthContext,
    AuthDependency,
    AuthenticationError,
    AuthGate,
    Credentials,
    ProviderError,
    optional_user,
    require_session,
    require_user,
)
from fastapi_authgate.providers.dev import DevIssuer


class TableVerifier:
    """A verifier over a fixed table of tokens: the plug point, not a stand-in for our code."""

    provider = "table"

    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    async def verify(self, credentials: Credentials) -> AuthContext | None:
        self.calls += 1
        if self.down:
            raise ProviderError("The identity provider is unavailable", retry_after=7)
        token = credentials.bearer or credentials.cookies.get("authgate_session")
        if token is None:
            return None
        if token == "alice":
            return AuthContext(
                subject="alice", provider="table", credential="bearer", scopes=frozenset({"read"})
            )
        if token == "root":
            return AuthContext(
                subject="root",
                provider="table",
                credential="bearer",
                scopes=frozenset({"read", "admin"}),
            )
        if token == "sess":
            return AuthContext(
                subject="bob", provider="table", credential="cookie", session_id="s-1"
            )
        if token == "foreign":
            return None
        raise AuthenticationError("The token signature is invalid")


def build_app(verifier: TableVerifier | None = None) -> tuple[FastAPI, TableVerifier]:
    verifier = verifier or TableVerifier()
    gate = AuthGate(verifier, realm="tests")
    app = FastAPI()
    gate.install(app)

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, Any]:
        return {"subject": auth.subject, "scopes": sorted(auth.scopes)}

    @app.get("/admin")
    async def admin(
        auth: AuthContext = Security(require_user, scopes=["admin"]),
    ) -> dict[str, Any]:
        return {"subject": auth.subject}

    @app.get("/session")
    async def session(auth: AuthContext = Depends(require_session)) -> dict[str, Any]:
        return {"session_id": auth.session_id}

    @app.get("/maybe")
    async def maybe(auth: AuthContext | None = Depends(optional_user)) -> dict[str, Any]:
        return {"subject": auth.subject if auth else None}

    @app.get("/twice")
    async def twice(
        a: AuthContext = Depends(require_user),
        b: AuthContext = Security(require_user, scopes=["read"]),
    ) -> dict[str, Any]:
        return {"same": a is b}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, auth: AuthContext = Depends(require_user)) -> None:
        await websocket.accept()
        await websocket.send_json({"subject": auth.subject})
        await websocket.close()

    return app, verifier


@pytest.fixture
def client() -> TestClient:
    app, _ = build_app()
    return TestClient(app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_valid_bearer_reaches_the_route(client: TestClient) -> None:
    response = client.get("/me", headers=bearer("alice"))
    assert response.status_code == 200
    assert response.json() == {"subject": "alice", "scopes": ["read"]}


def test_no_credential_is_401_without_error_code(client: TestClient) -> None:
    response = client.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="tests"'
    assert response.json() == {"detail": "Not authenticated", "error": "not_authenticated"}


@pytest.mark.parametrize(
    "authorization",
    ["Bearer forged", "Bearer", "Bearer ", "Bearer a b", "Bearer tok\u00e9n", "Bearer ===abc"],
)
def test_bad_bearer_is_401_invalid_token(client: TestClient, authorization: str) -> None:
    response = client.get("/me", headers={"Authorization": authorization.encode("utf-8")})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="tests", error="invalid_token", error_description="')
    assert response.json()["error"] == "invalid_token"


def test_other_scheme_is_not_a_bearer_token(client: TestClient) -> None:
    response = client.get("/me", headers={"Authorization": "Basic YWxhZGRpbjpvcGVu"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="tests"'


def test_unrecognised_bearer_is_invalid_not_anonymous(client: TestClient) -> None:
    response = client.get("/maybe", headers=bearer("foreign"))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_two_authorization_headers_are_refused(client: TestClient) -> None:
    response = client.get(
        "/me", headers=[("Authorization", "Bearer alice"), ("Authorization", "Bearer root")]
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_missing_scope_is_403_with_scope_in_challenge(client: TestClient) -> None:
    response = client.get("/admin", headers=bearer("alice"))
    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="admin"' in challenge
    assert response.json()["error"] == "insufficient_scope"


def test_scope_present_passes(client: TestClient) -> None:
    assert client.get("/admin", headers=bearer("root")).json() == {"subject": "root"}


def test_session_route_needs_a_session(client: TestClient) -> None:
    assert client.get("/session", headers=bearer("alice")).status_code == 401
    client.cookies.set("authgate_session", "sess")
    assert client.get("/session").json() == {"session_id": "s-1"}


def test_unrelated_cookies_are_not_a_credential(client: TestClient) -> None:
    client.cookies.set("theme", "dark")
    response = client.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="tests"'
    assert client.get("/maybe").json() == {"subject": None}


def test_optional_user(client: TestClient) -> None:
    assert client.get("/maybe").json() == {"subject": None}
    assert client.get("/maybe", headers=bearer("alice")).json() == {"subject": "alice"}
    assert client.get("/maybe", headers=bearer("forged")).status_code == 401


def test_stacked_guards_verify_once() -> None:
    app, verifier = build_app()
    client = TestClient(app)
    assert client.get("/twice", headers=bearer("alice")).json() == {"same": True}
    assert verifier.calls == 1


def test_provider_down_is_503_with_retry_after() -> None:
    app, verifier = build_app()
    verifier.down = True
    response = TestClient(app).get("/me", headers=bearer("alice"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"] == "provider_unavailable"


def test_gate_not_installed_is_503_not_500() -> None:
    app = FastAPI()

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, str]:
        return {"subject": auth.subject}

    response = TestClient(app).get("/me", headers=bearer("alice"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


def test_gate_bound_dependency_needs_no_app_state() -> None:
    verifier = TableVerifier()
    own_gate = AuthGate(verifier)
    guard = AuthDependency("user", gate=own_gate)
    app = FastAPI()
    own_gate.install(app)

    @app.get("/me")
    async def me(auth: AuthContext = Depends(guard)) -> dict[str, str]:
        return {"subject": auth.subject}

    assert TestClient(app).get("/me", headers=bearer("root")).json() == {"subject": "root"}


def test_dependency_override_works(client: TestClient) -> None:
    app = client.app
    assert isinstance(app, FastAPI)
    fixed = AuthContext(subject="override", provider="test", credential="bearer")
    app.dependency_overrides[require_user] = lambda: fixed
    assert client.get("/me").json() == {"subject": "override", "scopes": []}


def test_websocket_accepts_a_valid_token(client: TestClient) -> None:
    with client.websocket_connect("/ws", headers=bearer("alice")) as ws:
        assert ws.receive_json() == {"subject": "alice"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer forged"}])
def test_websocket_refused_with_1008(client: TestClient, headers: dict[str, str]) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as info,
        client.websocket_connect("/ws", headers=headers),
    ):
        pass
    assert info.value.code == 1008


def test_websocket_provider_down_closes_1013() -> None:
    app, verifier = build_app()
    verifier.down = True
    with (
        pytest.raises(WebSocketDisconnect) as info,
        TestClient(app).websocket_connect("/ws", headers=bearer("alice")),
    ):
        pass
    assert info.value.code == 1013


def test_context_is_on_request_state_and_scope() -> None:
    app, _ = build_app()

    @app.get("/state2")
    async def state2(request: Request, auth: AuthContext = Depends(require_user)) -> dict[str, Any]:
        return {"state": request.state.auth is auth, "scope": request.auth is auth}

    assert TestClient(app).get("/state2", headers=bearer("alice")).json() == {
        "state": True,
        "scope": True,
    }


def test_openapi_lists_bearer_and_cookie_schemes(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["BearerAuth"]["type"] == "http"
    assert schemes["BearerAuth"]["scheme"] == "bearer"
    assert schemes["SessionCookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "authgate_session",
        "description": "Session cookie set by the identity provider's sign-in",
    }
    admin_security = schema["paths"]["/admin"]["get"]["security"]
    # FastAPI >= 0.116 lists scopes for every scheme; older releases only for OAuth2 schemes.
    bearer_scopes = admin_security[0]["BearerAuth"]
    assert bearer_scopes in ([], ["admin"])
    assert admin_security == [{"BearerAuth": bearer_scopes}, {"SessionCookie": bearer_scopes}]
    assert schema["paths"]["/me"]["get"]["security"] == [{"BearerAuth": []}, {"SessionCookie": []}]


def _asgi_get(
    app: FastAPI, path: str, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[bytes, bytes]]:
    """Call ``app`` directly with raw header bytes no HTTP client would let through."""
    import asyncio

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("203.0.113.1", 1234),
        "server": ("test", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], dict(start["headers"])


_DEV_ISSUER = DevIssuer()
_DEV_APP = FastAPI()
AuthGate(_DEV_ISSUER.verifier()).install(_DEV_APP)


@_DEV_APP.get("/maybe")
async def _maybe(auth: AuthContext | None = Depends(optional_user)) -> dict[str, Any]:
    return {"subject": auth.subject if auth else None}


@settings(max_examples=300, deadline=None)
@given(
    authorization=st.one_of(
        st.binary(max_size=200),
        st.builds(lambda b: b"Bearer " + b, st.binary(max_size=200)),
        st.builds(
            lambda t: b"Bearer " + t.encode(), st.text(alphabet="abcXYZ019-_.=~+/ ", max_size=80)
        ),
    ),
    cookie=st.binary(max_size=120),
)
def test_arbitrary_credential_bytes_never_give_a_500(authorization: bytes, cookie: bytes) -> None:
    status, headers = _asgi_get(
        _DEV_APP, "/maybe", [(b"authorization", authorization), (b"cookie", cookie)]
    )
    assert status in (200, 401)
    if status == 401:
        assert headers[b"www-authenticate"].startswith(b'Bearer realm="api"')
