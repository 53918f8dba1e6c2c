"""The example app, route by route, as DESIGN section 5 fixes it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from example_app.main import create_app
from fastapi_authgate import AuthGate
from fastapi_authgate.ratelimit.limiter import RateLimiter
from fastapi_authgate.testing import DevIssuer, dev_issuer_router
from tests.conftest import FixedClock
from tests.servers import serve


@pytest.fixture
def app() -> FastAPI:
    return create_app()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def dev_issuer_of(app: FastAPI) -> DevIssuer:
    issuer = app.state.authgate.dev_issuer
    assert isinstance(issuer, DevIssuer)
    return issuer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_module_level_app_exists() -> None:
    from example_app import main

    assert isinstance(main.app, FastAPI)


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_sign_in_page(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for needle in (
        "/dev/token",
        "/dev/logout",
        "/api/me",
        "/api/admin",
        "/api/session",
        "/api/limited",
        "Retry-After",
        'value="admin"',
    ):
        assert needle in page.text


@pytest.mark.parametrize("path", ["/api/me", "/api/session", "/api/admin"])
def test_no_credential_is_401_with_a_challenge(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    assert response.json()["error"] == "not_authenticated"


def test_forged_token_is_401_invalid_token(client: TestClient) -> None:
    stranger = DevIssuer()
    response = client.get("/api/me", headers=bearer(stranger.issue("mallory")))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_me_with_a_bearer_token(app: FastAPI, client: TestClient) -> None:
    token = dev_issuer_of(app).issue("alice", scopes=["write", "read"])
    response = client.get("/api/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {
        "subject": "alice",
        "scopes": ["read", "write"],
        "provider": "dev",
        "session_id": None,
    }


def test_admin_needs_the_admin_scope(app: FastAPI, client: TestClient) -> None:
    issuer = dev_issuer_of(app)

    refused = client.get("/api/admin", headers=bearer(issuer.issue("alice", scopes=["read"])))
    assert refused.status_code == 403
    challenge = refused.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="admin"' in challenge
    assert refused.json()["error"] == "insufficient_scope"

    allowed = client.get("/api/admin", headers=bearer(issuer.issue("root", scopes=["admin"])))
    assert allowed.status_code == 200
    assert allowed.json()["subject"] == "root"
    assert allowed.json()["scopes"] == ["admin"]


def test_session_needs_the_session_cookie(client: TestClient) -> None:
    body = client.post("/dev/token", json={"sub": "alice", "scopes": ["read"]}).json()

    by_cookie = client.get("/api/session")
    assert by_cookie.status_code == 200
    assert by_cookie.json() == {
        "subject": "alice",
        "scopes": ["read"],
        "provider": "dev",
        "session_id": body["session_id"],
    }
    # The cookie also satisfies require_user.
    assert client.get("/api/me").json()["session_id"] == body["session_id"]

    client.cookies.clear()
    plain_bearer = client.get("/api/session", headers=bearer(body["access_token"]))
    assert plain_bearer.status_code == 401

    client.post("/dev/token", json={"sub": "alice"})
    client.post("/dev/logout")
    assert client.get("/api/session").status_code == 401


def test_limited_refuses_the_sixth_call(client: TestClient) -> None:
    for _ in range(5):
        response = client.get("/api/limited")
        assert response.status_code == 200
        assert response.json() == {"ok": True}
    refused = client.get("/api/limited")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 12
    assert refused.headers["ratelimit-policy"] == '"default";q=5;w=60'
    assert refused.json()["error"] == "rate_limited"


def test_limited_timeline_matches_the_readme(clock: FixedClock) -> None:
    issuer = DevIssuer(clock=clock)
    gate = AuthGate(verifier=issuer.verifier(), limiter=RateLimiter(clock=clock), dev_issuer=issuer)
    answers: list[tuple[int, int, str | None]] = []
    headers: dict[int, tuple[str, str]] = {}
    start = clock.now
    with TestClient(create_app(gate)) as client:
        for t in (0, 1, 2, 3, 4, 5, 12, 13, 24, 36, 48):
            clock.now = start + t
            response = client.get("/api/limited")
            answers.append((t, response.status_code, response.headers.get("retry-after")))
            headers[t] = (response.headers["ratelimit-policy"], response.headers["ratelimit"])
    assert headers[0] == ('"default";q=5;w=60', '"default";r=4;t=12')
    assert headers[5] == ('"default";q=5;w=60', '"default";r=0;t=55')
    assert answers == [
        (0, 200, None),
        (1, 200, None),
        (2, 200, None),
        (3, 200, None),
        (4, 200, None),
        (5, 429, "7"),
        (12, 200, None),
        (13, 429, "11"),
        (24, 200, None),
        (36, 200, None),
        (48, 200, None),
    ]


def test_example_rate_limit_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_RATE_LIMIT", "2/minute")
    with TestClient(create_app()) as client:
        codes = [client.get("/api/limited").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_docs_are_served_offline_from_the_package(client: TestClient) -> None:
    page = client.get("/docs").text
    assert "https://" not in page  # no CDN: script, stylesheet and favicon are ours
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f'"/docs/assets/{asset}"' in page
        served = client.get(f"/docs/assets/{asset}")
        assert served.status_code == 200 and len(served.content) > 10_000


def test_docs_behind_a_root_path_point_at_the_prefixed_assets() -> None:
    with TestClient(create_app(), root_path="/svc") as prefixed:
        page = prefixed.get("/docs").text
    assert '"/svc/docs/assets/swagger-ui-bundle.js"' in page
    assert "'/svc/openapi.json'" in page


def test_docs_can_still_use_the_cdn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_SWAGGER_CDN", "1")
    with TestClient(create_app()) as cdn_client:
        page = cdn_client.get("/docs").text
        assert cdn_client.get("/docs/assets/swagger-ui.css").status_code == 404
    assert "https://cdn.jsdelivr.net/" in page


def test_docs_and_openapi_security_schemes(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()

    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    kinds = {(s["type"], s.get("scheme"), s.get("in")) for s in schemes.values()}
    assert ("http", "bearer", None) in kinds
    assert ("apiKey", None, "cookie") in kinds
    cookie = next(s for s in schemes.values() if s["type"] == "apiKey")
    assert cookie["name"] == "authgate_session"

    for path in ("/api/me", "/api/session", "/api/admin"):
        security = schema["paths"][path]["get"]["security"]
        assert len(security) == 2, path
    assert "security" not in schema["paths"]["/healthz"]["get"]
    assert "/dev/token" in schema["paths"]


def test_dev_routes_are_gone_with_a_real_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real JWKS issuer on loopback: the dev issuer's own routes, served under uvicorn.
    upstream_issuer = DevIssuer(issuer="http://127.0.0.1:0", audience="api://example")
    upstream = FastAPI()
    upstream.include_router(dev_issuer_router(upstream_issuer))
    with serve(upstream) as base_url:
        upstream_issuer.issuer = base_url
        monkeypatch.setenv("AUTHGATE_PROVIDER", "jwks")
        monkeypatch.setenv("AUTHGATE_ISSUER", base_url)
        monkeypatch.setenv("AUTHGATE_AUDIENCE", "api://example")
        monkeypatch.setenv("AUTHGATE_JWKS_URL", f"{base_url}/.well-known/jwks.json")
        app = create_app()
        assert app.state.authgate.dev_issuer is None
        with TestClient(app) as client:
            for method, path in [
                ("GET", "/"),
                ("POST", "/dev/token"),
                ("POST", "/dev/logout"),
                ("GET", "/.well-known/jwks.json"),
                ("GET", "/.well-known/openid-configuration"),
            ]:
                kwargs: dict[str, Any] = {"json": {"sub": "x"}} if method == "POST" else {}
                assert client.request(method, path, **kwargs).status_code in (404, 405), path
            assert client.get("/healthz").status_code == 200
            assert client.get("/api/me").status_code == 401

            token = upstream_issuer.issue("alice", scopes=["admin"])
            me = client.get("/api/me", headers=bearer(token))
            assert me.status_code == 200, me.text
            assert me.json()["subject"] == "alice"
            assert client.get("/api/admin", headers=bearer(token)).status_code == 200


def test_a_gate_with_a_dev_issuer_still_gets_no_routes_under_a_real_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issuer = DevIssuer()
    gate = AuthGate(verifier=issuer.verifier(), dev_issuer=issuer)
    monkeypatch.setenv("AUTHGATE_PROVIDER", "jwks")
    with TestClient(create_app(gate)) as client:
        assert client.post("/dev/token", json={"sub": "x"}).status_code == 404
