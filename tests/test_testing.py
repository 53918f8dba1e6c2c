"""fastapi_authgate.testing: the development issuer's routes and the override helpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Security
from fastapi.testclient import TestClient

from fastapi_authgate import AuthContext, AuthGate, optional_user, require_session, require_user
from fastapi_authgate.testing import (
    DevIssuer,
    TokenRequest,
    dev_issuer_router,
    make_context,
    override_user,
)


@pytest.fixture(scope="module")
def issuer() -> DevIssuer:
    return DevIssuer(issuer="http://testserver")


def build_app(issuer: DevIssuer, **router_options: Any) -> FastAPI:
    gate = AuthGate(verifier=issuer.verifier(), dev_issuer=issuer)
    app = FastAPI()
    gate.install(app)
    app.include_router(dev_issuer_router(issuer, **router_options))

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, Any]:
        return {"subject": auth.subject, "scopes": sorted(auth.scopes), "sid": auth.session_id}

    @app.get("/session")
    async def session(auth: AuthContext = Depends(require_session)) -> dict[str, Any]:
        return {"subject": auth.subject, "sid": auth.session_id}

    @app.get("/admin")
    async def admin(auth: AuthContext = Security(require_user, scopes=["admin"])) -> str:
        return auth.subject

    @app.get("/maybe")
    async def maybe(auth: AuthContext | None = Depends(optional_user)) -> str | None:
        return None if auth is None else auth.subject

    return app


@pytest.fixture
def app(issuer: DevIssuer) -> FastAPI:
    return build_app(issuer)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def set_cookie_header(response: Any) -> str:
    (value,) = response.headers.get_list("set-cookie")
    return str(value)


# ----------------------------------------------------------------------------- /dev/token


def test_token_issuance(client: TestClient) -> None:
    response = client.post("/dev/token", json={"sub": "alice", "scopes": ["read", "admin"]})

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "session_id"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert response.headers["cache-control"] == "no-store"

    headers = {"Authorization": f"Bearer {body['access_token']}"}
    me = client.get("/me", headers=headers)
    assert me.json() == {"subject": "alice", "scopes": ["admin", "read"], "sid": None}
    assert client.get("/admin", headers=headers).text == '"alice"'


def test_session_cookie_flags(client: TestClient) -> None:
    response = client.post("/dev/token", json={"sub": "alice"})

    cookie = set_cookie_header(response)
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert cookie.startswith("authgate_session=")
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "samesite=lax" in cookie.lower()
    assert "max-age=3600" in cookie.lower()
    assert "secure" not in attributes


def test_secure_cookie_and_custom_name(issuer: DevIssuer) -> None:
    app = build_app(issuer, secure_cookie=True, cookie_name="other", ttl=60)
    with TestClient(app) as client:
        response = client.post("/dev/token", json={"sub": "alice"})
    cookie = set_cookie_header(response).lower()
    assert cookie.startswith("other=")
    assert "; secure" in cookie
    assert "max-age=60" in cookie
    assert response.json()["expires_in"] == 60


def test_cookie_is_a_session_and_the_bearer_token_is_not(client: TestClient) -> None:
    body = client.post("/dev/token", json={"sub": "alice", "scopes": ["read"]}).json()

    by_cookie = client.get("/session")
    assert by_cookie.status_code == 200
    assert by_cookie.json() == {"subject": "alice", "sid": body["session_id"]}

    client.cookies.clear()
    by_bearer = client.get("/session", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert by_bearer.status_code == 401
    assert by_bearer.headers["www-authenticate"].startswith("Bearer ")


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"sub": ""},
        {"sub": "a" * 65},
        {"sub": "<script>"},
        {"sub": "al ice"},
        {"sub": 7},
        {"sub": "alice", "scopes": ["two words"]},
        {"sub": "alice", "scopes": ['"quoted"']},
        {"sub": "alice", "scopes": "admin"},
        {"sub": "alice", "scopes": [f"s{i}" for i in range(21)]},
        {"sub": "alice", "aud": "elsewhere"},
        ["alice"],
    ],
)
def test_bad_input_is_422(client: TestClient, payload: Any) -> None:
    response = client.post("/dev/token", json=payload)
    assert response.status_code == 422
    assert "set-cookie" not in response.headers


def test_body_that_is_not_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/dev/token", content=b"\xff\xfe", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422


def test_twenty_scopes_and_safe_names_pass() -> None:
    request = TokenRequest(sub="a.b_c-d@e+f", scopes=[f"s:{i}/x" for i in range(20)])
    assert len(request.scopes) == 20


def test_logout_clears_the_cookie(client: TestClient) -> None:
    client.post("/dev/token", json={"sub": "alice"})
    assert client.get("/session").status_code == 200

    response = client.post("/dev/logout")

    assert response.status_code == 204
    cookie = set_cookie_header(response).lower()
    assert cookie.startswith('authgate_session=""') or cookie.startswith("authgate_session=;")
    assert "max-age=0" in cookie
    assert "httponly" in cookie
    assert "authgate_session" not in client.cookies
    assert client.get("/session").status_code == 401


def test_jwks_and_discovery(client: TestClient, issuer: DevIssuer) -> None:
    assert client.get("/.well-known/jwks.json").json() == issuer.jwks
    discovery = client.get("/.well-known/openid-configuration").json()
    assert discovery["issuer"] == "http://testserver"
    assert discovery["jwks_uri"] == "http://testserver/.well-known/jwks.json"


def test_sign_in_page_only_when_given(client: TestClient, issuer: DevIssuer) -> None:
    assert client.get("/").status_code == 404
    app = build_app(issuer, sign_in_page="<h1>hi</h1>")
    with TestClient(app) as other:
        page = other.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text == "<h1>hi</h1>"


# ----------------------------------------------------------------------------- overrides


def test_make_context_defaults() -> None:
    context = make_context()
    assert context.subject == "test-user"
    assert context.scopes == frozenset()
    assert context.provider == "test"
    assert context.credential == "bearer"
    assert context.session_id is None
    assert context.claims == {"sub": "test-user"}
    assert make_context("bob", ["a"], session_id="s").scopes == frozenset({"a"})


def test_override_user_as_context_manager(app: FastAPI, client: TestClient) -> None:
    with override_user(app, sub="bob", scopes=["admin"]) as context:
        assert context.subject == "bob"
        assert client.get("/me").json() == {"subject": "bob", "scopes": ["admin"], "sid": None}
        assert client.get("/admin").status_code == 200
        assert client.get("/maybe").json() == "bob"
    assert app.dependency_overrides == {}
    assert client.get("/me").status_code == 401
    assert client.get("/maybe").json() is None


def test_override_user_enforces_scopes(app: FastAPI, client: TestClient) -> None:
    undo = override_user(app, sub="bob", scopes=["read"])
    try:
        response = client.get("/admin")
        assert response.status_code == 403
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
        assert response.json()["error"] == "insufficient_scope"
    finally:
        undo()
    undo()  # a second undo is harmless
    assert app.dependency_overrides == {}


def test_override_user_sessions(app: FastAPI, client: TestClient) -> None:
    with override_user(app, sub="bob"):
        assert client.get("/session").status_code == 401
    with override_user(app, make_context("carol", session_id="sess-1")):
        assert client.get("/session").json() == {"subject": "carol", "sid": "sess-1"}


def test_override_user_restores_earlier_overrides(app: FastAPI, client: TestClient) -> None:
    def earlier() -> AuthContext:
        return make_context("earlier")

    app.dependency_overrides[require_user] = earlier
    with override_user(app, sub="bob"):
        assert client.get("/me").json()["subject"] == "bob"
    assert app.dependency_overrides == {require_user: earlier}
    assert client.get("/me").json()["subject"] == "earlier"
