"""AuthGate: building from settings, failing fast on misconfiguration, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request

from fastapi_authgate import (
    AuthContext,
    AuthenticationError,
    AuthGate,
    AuthGateSettings,
    ConfigurationError,
    Credentials,
    require_user,
)
from fastapi_authgate.credentials import parse_bearer, read_credentials
from fastapi_authgate.providers.dev import DevIssuer
from fastapi_authgate.ratelimit.hooks import ResponseHooksMiddleware
from tests.test_dependencies import TableVerifier


def test_default_settings_build_the_development_issuer() -> None:
    gate = AuthGate.from_settings()
    assert gate.dev_issuer is not None
    assert gate.realm == "api"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("AUTHGATE_LEEWAY_SECONDS", "301", "AUTHGATE_LEEWAY_SECONDS"),
        ("AUTHGATE_LEEWAY_SECONDS", "soon", "AUTHGATE_LEEWAY_SECONDS"),
        ("AUTHGATE_PROVIDER", "okta", "AUTHGATE_PROVIDER"),
        ("AUTHGATE_RATE_LIMIT_FAILURE_MODE", "maybe", "AUTHGATE_RATE_LIMIT_FAILURE_MODE"),
        ("AUTHGATE_REALM", 'a"b', "AUTHGATE_REALM"),
        ("AUTHGATE_TIUN__ENVIRONMENT", "prod", "AUTHGATE_TIUN__ENVIRONMENT"),
    ],
)
def test_bad_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        AuthGate.from_settings()
    assert named in str(info.value)


def test_jwks_provider_needs_a_url_or_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_PROVIDER", "jwks")
    with pytest.raises(ConfigurationError, match="AUTHGATE_JWKS_URL"):
        AuthGate.from_settings()


def test_jwks_provider_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_PROVIDER", "jwks")
    monkeypatch.setenv("AUTHGATE_JWKS_URL", "http://127.0.0.1:9/jwks.json")
    monkeypatch.setenv("AUTHGATE_ISSUER", "http://127.0.0.1:9")
    monkeypatch.setenv("AUTHGATE_AUDIENCE", "api://test")
    monkeypatch.setenv("AUTHGATE_ALGORITHMS", '["ES256"]')
    gate = AuthGate.from_settings()
    assert gate.verifier.provider == "jwks"
    assert gate.dev_issuer is None


def test_a_provider_module_that_is_not_installed_fails_at_startup() -> None:
    from fastapi_authgate.gate import _provider_module

    build = _provider_module("fastapi_authgate.providers.not_there", "not_there")
    with pytest.raises(ConfigurationError, match="AUTHGATE_PROVIDER=not_there"):
        build(AuthGateSettings())


def test_settings_parse_lists_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_ALGORITHMS", "RS256, ES256")
    monkeypatch.setenv("AUTHGATE_TRUSTED_PROXIES", '["10.0.0.1", "192.168.0.0/16"]')
    settings = AuthGateSettings()
    assert settings.algorithms == ["RS256", "ES256"]
    assert settings.trusted_proxies == ["10.0.0.1", "192.168.0.0/16"]


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_QYZAR__PROJECT_SECRET", "very-secret-value")
    monkeypatch.setenv("AUTHGATE_REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0")
    text = repr(AuthGateSettings())
    assert "very-secret-value" not in text
    assert "hunter2" not in text


def test_bad_verifier_and_realm_fail_fast() -> None:
    with pytest.raises(ConfigurationError):
        AuthGate(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        AuthGate(TableVerifier(), realm='x"y')


class ClosingVerifier(TableVerifier):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    async def startup(self) -> None:
        self.events.append("startup")

    async def aclose(self) -> None:
        self.events.append("aclose")


def test_install_runs_startup_and_shutdown_around_the_app_lifespan() -> None:
    verifier = ClosingVerifier()

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        verifier.events.append("app-startup")
        yield
        verifier.events.append("app-shutdown")

    app = FastAPI(lifespan=app_lifespan)
    AuthGate(verifier).install(app)
    with TestClient(app):
        assert verifier.events == ["startup", "app-startup"]
    assert verifier.events == ["startup", "app-startup", "app-shutdown", "aclose"]


def test_of_without_install_is_a_configuration_error() -> None:
    from starlette.requests import HTTPConnection

    app = FastAPI()
    with pytest.raises(ConfigurationError, match="install"):
        AuthGate.of(HTTPConnection({"type": "http", "app": app, "headers": []}))


def test_install_is_idempotent_and_refuses_a_second_gate() -> None:
    app = FastAPI()
    gate = AuthGate(TableVerifier())
    gate.install(app)
    gate.install(app)
    assert [m.cls for m in app.user_middleware].count(ResponseHooksMiddleware) == 1  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="already installed"):
        AuthGate(TableVerifier()).install(app)


def test_development_issuer_is_announced(caplog: pytest.LogCaptureFixture) -> None:
    AuthGate.from_settings()
    assert "development issuer" in caplog.text


def test_installed_gate_travels_in_the_scope_and_falls_back_to_app_state() -> None:
    from fastapi_authgate.gate import SCOPE_KEY, installed_gate

    app = FastAPI()
    gate = AuthGate(TableVerifier())
    gate.install(app)
    other = AuthGate(TableVerifier())
    assert installed_gate({"type": "http", "app": app}) is gate
    assert installed_gate({"type": "http", "app": app, SCOPE_KEY: other}) is other
    assert installed_gate({"type": "http", "app": FastAPI()}) is None
    assert installed_gate({"type": "http"}) is None

    seen: list[object] = []

    @app.get("/where")
    async def where(request: Request) -> dict[str, bool]:
        seen.append(request.scope.get(SCOPE_KEY))
        return {"ok": True}

    assert TestClient(app).get("/where").status_code == 200
    assert seen == [gate]


class CachingTableVerifier(TableVerifier):
    """A verifier that also offers the cached-bearer look-up, recording what it is asked."""

    def __init__(self) -> None:
        super().__init__()
        self.looked_up: list[bytes] = []

    def cached_bearer(self, token: bytes) -> AuthContext | None:
        self.looked_up.append(token)
        if token == b"alice":
            return AuthContext(subject="alice-cached", provider="table", credential="bearer")
        return None


def _app_with(verifier: Any) -> TestClient:
    app = FastAPI()
    AuthGate(verifier).install(app)

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, str]:
        return {"subject": auth.subject}

    return TestClient(app)


def test_a_cached_bearer_skips_credential_parsing_and_verification() -> None:
    verifier = CachingTableVerifier()
    client = _app_with(verifier)
    assert client.get("/me", headers={"Authorization": "bearer  alice"}).json() == {
        "subject": "alice-cached"
    }
    assert verifier.looked_up == [b"alice"]
    assert verifier.calls == 0
    # A miss falls through to the full path.
    assert client.get("/me", headers={"Authorization": "Bearer root"}).json() == {"subject": "root"}
    assert verifier.calls == 1


def test_the_fast_path_never_bypasses_the_checks_on_malformed_requests() -> None:
    verifier = CachingTableVerifier()
    client = _app_with(verifier)
    twice = [("Authorization", "Bearer alice"), ("Authorization", "Bearer alice")]
    response = client.get("/me", headers=twice)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert verifier.looked_up == []
    response = client.get("/me", headers={"Authorization": "Basic alice"})
    assert response.status_code == 401
    assert verifier.looked_up == []


def test_jwks_verifier_answers_a_repeated_token_from_its_cache() -> None:
    issuer = DevIssuer()
    verifier = issuer.verifier()
    token = issuer.issue("dana")
    assert verifier.cached_bearer(token.encode()) is None
    client = _app_with(verifier)
    assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    cached = verifier.cached_bearer(token.encode())
    assert cached is not None and cached.subject == "dana"
    assert verifier.cached_bearer((token + "x").encode()) is None
    assert issuer.verifier(token_cache_size=0).cached_bearer(token.encode()) is None


class RecordingVerifier(CachingTableVerifier):
    """Records the credentials the gate hands over after a cache miss."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Credentials] = []

    async def verify(self, credentials: Credentials) -> AuthContext | None:
        self.seen.append(credentials)
        return await super().verify(credentials)


@pytest.mark.parametrize(
    "value",
    [
        "Bearer a b",  # a space inside the token
        "Bearer a==b",  # padding before the end
        "Bearer a\x7fb",  # outside the b64token alphabet
        "Bearer " + "a" * (16 * 1024 + 1),  # over 16 KiB
        "bearer    ",  # only spaces after the scheme
    ],
)
def test_a_missed_bearer_is_checked_exactly_as_the_full_path_checks_it(value: str) -> None:
    # the gate checks the bytes the cache lookup missed on instead of reading the headers again;
    # every malformed token must still be a 401 that never reaches the verifier
    verifier = RecordingVerifier()
    client = _app_with(verifier)
    response = client.get("/me", headers={"Authorization": value})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert verifier.seen == []
    with pytest.raises(AuthenticationError):
        parse_bearer(value)


def test_a_missed_bearer_reaches_the_verifier_as_the_only_credential() -> None:
    verifier = RecordingVerifier()
    client = _app_with(verifier)
    headers = {"Authorization": "Bearer  root ", "Cookie": "authgate_session=alice"}
    assert client.get("/me", headers=headers).json() == {"subject": "root"}
    assert verifier.looked_up == [b"root"]
    assert verifier.seen == [Credentials(bearer="root")]
    assert verifier.seen[0] == read_credentials_of(headers)


def read_credentials_of(headers: dict[str, str]) -> Credentials | None:
    """What the full path reads from ``headers`` (the gate's cookie, no API key header)."""
    scope = {
        "type": "http",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return read_credentials(Request(scope), cookie_names=("authgate_session",))
