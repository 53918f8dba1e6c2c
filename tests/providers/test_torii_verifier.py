"""The torii verifier over real HTTP against the fake torii: claims, keys, rotation, settings."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import jwt as pyjwt
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from fastapi_authgate import AuthContext, AuthGate, Credentials, require_session, require_user
from fastapi_authgate.errors import AuthenticationError, ConfigurationError, ProviderError
from fastapi_authgate.providers.torii import torii_verifier, verifier_from_settings
from fastapi_authgate.settings import AuthGateSettings
from fastapi_authgate.testing import FakeTorii
from fastapi_authgate.verifiers.jwks import JWKSVerifier
from tests.providers.torii_support import SECRET, clean, fake, served, served_fake

__all__ = ["fake", "served"]


def bearer(token: str) -> Credentials:
    return Credentials(bearer=token)


def verifier_for(fake: FakeTorii, **options: Any) -> JWKSVerifier:
    return torii_verifier(issuer=fake.issuer, **options)


@pytest.mark.anyio
async def test_context_carries_user_session_environment_and_email_verified(
    fake: FakeTorii,
) -> None:
    token = fake.issue("user_42", session_id="sess_9", email_verified=False)
    verifier = verifier_for(fake)
    context = await verifier.verify(bearer(token))
    await verifier.aclose()
    assert context is not None
    assert (context.subject, context.session_id, context.provider) == ("user_42", "sess_9", "torii")
    assert context.credential == "bearer"
    assert context.claims["environment_id"] == "env_test"
    assert context.claims["email_verified"] is False
    assert context.user is not None and context.user.id == "user_42"
    assert context.user.metadata == {"environment_id": "env_test", "email_verified": False}
    assert context.expires_at is not None


@pytest.mark.anyio
async def test_no_round_trip_per_request(fake: FakeTorii) -> None:
    verifier = verifier_for(fake, token_cache_size=0)
    tokens = [fake.issue(f"user_{i}") for i in range(40)]
    for token in tokens + tokens:
        assert (await verifier.verify(bearer(token))) is not None
    await verifier.aclose()
    assert fake.jwks_hits == 1
    assert [r.path for r in fake.received] == ["/.well-known/jwks.json"]


@pytest.mark.anyio
async def test_a_cold_start_under_load_fetches_the_keys_once(fake: FakeTorii) -> None:
    verifier = verifier_for(fake, token_cache_size=0)
    tokens = [fake.issue(f"user_{i}", session_id=f"s{i}") for i in range(300)]
    contexts = await asyncio.gather(*(verifier.verify(bearer(t)) for t in tokens))
    await verifier.aclose()
    assert [c.subject for c in contexts if c is not None] == [f"user_{i}" for i in range(300)]
    assert fake.jwks_hits == 1


@pytest.mark.anyio
@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_tokens_minted_with_pyjwt_are_accepted(algorithm: str) -> None:
    for other in served_fake(algorithm=algorithm):
        clean(other)
        key = pyjwt.PyJWK(other.private_jwk_for_tests()).key
        claims = {
            "iss": other.issuer,
            "sub": "user_py",
            "iat": 1_700_000_000,
            "exp": 4_000_000_000,
            "sid": "sess_py",
            "environment_id": "env_live",
            "email_verified": True,
        }
        token = pyjwt.encode(claims, key, algorithm=algorithm, headers={"kid": other.kid})
        verifier = verifier_for(other)
        context = await verifier.verify(bearer(token))
        await verifier.aclose()
        assert context is not None
        assert (context.subject, context.session_id) == ("user_py", "sess_py")
        assert context.claims["environment_id"] == "env_live"


@pytest.mark.anyio
async def test_rotation_is_picked_up_with_one_refetch(fake: FakeTorii) -> None:
    verifier = verifier_for(fake, refetch_cooldown=0)
    old = fake.issue("user_old")
    assert await verifier.verify(bearer(old)) is not None
    assert fake.jwks_hits == 1
    fake.rotate(keep_old=True)
    both = fake.issue("user_new")
    assert (await verifier.verify(bearer(both))) is not None  # unknown kid: one refetch
    assert (await verifier.verify(bearer(old))) is not None  # old key still published
    assert fake.jwks_hits == 2
    fake.rotate(keep_old=False)
    newest = fake.issue("user_newest")
    assert (await verifier.verify(bearer(newest))) is not None
    assert fake.jwks_hits == 3
    with pytest.raises(AuthenticationError):  # its key is gone: not even the cache serves it
        await verifier.verify(bearer(old))
    await verifier.aclose()


@pytest.mark.anyio
async def test_audience_when_the_issuer_has_one(fake: FakeTorii) -> None:
    fake.audience = "https://api.acme.example"
    try:
        with_aud = fake.issue("user_a")
        right = verifier_for(fake, audience="https://api.acme.example")
        wrong = verifier_for(fake, audience="https://other.example")
        assert (await right.verify(bearer(with_aud))) is not None
        with pytest.raises(AuthenticationError):
            await wrong.verify(bearer(with_aud))
        unset = verifier_for(fake)  # aud present but none configured: minted for some other API
        with pytest.raises(AuthenticationError):
            await unset.verify(bearer(with_aud))
        await unset.aclose()
        fake.audience = None
        with pytest.raises(AuthenticationError):  # an audience is set: aud is required
            await right.verify(bearer(fake.issue("user_b")))
        await right.aclose()
        await wrong.aclose()
    finally:
        fake.audience = None


@pytest.mark.anyio
@pytest.mark.parametrize(
    "claims",
    [{"email_verified": "yes"}, {"environment_id": 7}, {"environment_id": ""}, {"sid": 5}],
)
async def test_torii_claims_of_the_wrong_type_are_refused(
    fake: FakeTorii, claims: dict[str, Any]
) -> None:
    verifier = verifier_for(fake)
    with pytest.raises(AuthenticationError):
        await verifier.verify(bearer(fake.issue("user_1", **claims)))
    await verifier.aclose()


@pytest.mark.anyio
async def test_environment_can_be_pinned(fake: FakeTorii) -> None:
    verifier = verifier_for(fake, environment_id="env_test")
    assert (await verifier.verify(bearer(fake.issue("user_1")))) is not None
    with pytest.raises(AuthenticationError):
        await verifier.verify(bearer(fake.issue("user_1", environment_id="env_other")))
    with pytest.raises(AuthenticationError):
        await verifier.verify(bearer(fake.issue("user_1", environment_id=None)))
    await verifier.aclose()


@pytest.mark.anyio
async def test_forged_and_foreign_tokens(fake: FakeTorii) -> None:
    verifier = verifier_for(fake)
    token = fake.issue("user_1")
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-4]}AAAA"
    with pytest.raises(AuthenticationError):
        await verifier.verify(bearer(forged))
    assert (await verifier.verify(bearer(fake.issue("u", iss="https://evil.example")))) is None
    await verifier.aclose()


@pytest.mark.anyio
async def test_jwks_down_is_a_provider_error(fake: FakeTorii) -> None:
    fake.fail(503, path="/.well-known/", times=None)
    verifier = verifier_for(fake)
    with pytest.raises(ProviderError):
        await verifier.verify(bearer(fake.issue("user_1")))
    await verifier.aclose()


# -- settings, the gate and the example app ----------------------------------------------


def test_missing_issuer_fails_at_startup_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_PROVIDER", "torii")
    with pytest.raises(ConfigurationError, match="AUTHGATE_TORII__ISSUER"):
        AuthGate.from_settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTHGATE_TORII__ISSUER", "http://acme.torii.example"),
        ("AUTHGATE_TORII__SECRET_KEY", "sk_test_short"),
        ("AUTHGATE_TORII__SECRET_KEY", "pk_live_0123456789abcdef0"),
        ("AUTHGATE_TORII__API_URL", "http://api.torii.example"),
    ],
)
def test_bad_torii_settings_fail_at_startup_naming_them(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("AUTHGATE_PROVIDER", "torii")
    monkeypatch.setenv("AUTHGATE_TORII__ISSUER", "https://acme.torii.example")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable) as raised:
        AuthGate.from_settings()
    assert "sk_test_short" not in str(raised.value) and "pk_live_0123" not in str(raised.value)


def test_settings_audience_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_TORII__ISSUER", "https://acme.torii.example/")
    monkeypatch.setenv("AUTHGATE_TORII__AUDIENCE", "https://api.acme.example")
    monkeypatch.setenv("AUTHGATE_TORII__ENVIRONMENT_ID", "env_live")
    verifier = verifier_from_settings(AuthGateSettings())
    assert isinstance(verifier, JWKSVerifier)
    assert verifier.issuer == "https://acme.torii.example"  # the trailing slash is dropped
    assert verifier.provider == "torii"


@pytest.fixture
def torii_env(fake: FakeTorii, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTorii]:
    monkeypatch.setenv("AUTHGATE_PROVIDER", "torii")
    monkeypatch.setenv("AUTHGATE_TORII__ISSUER", fake.issuer)
    monkeypatch.setenv("AUTHGATE_TORII__SECRET_KEY", SECRET)
    monkeypatch.setenv("AUTHGATE_TORII__API_URL", fake.issuer)
    yield fake


def test_the_gate_from_settings_guards_routes(torii_env: FakeTorii) -> None:
    gate = AuthGate.from_settings()
    app = FastAPI()
    gate.install(app)

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, object]:
        return {"user": auth.subject, "env": auth.claims["environment_id"]}

    @app.get("/session")
    async def session(auth: AuthContext = Depends(require_session)) -> dict[str, object]:
        return {"sid": auth.session_id}

    token = torii_env.issue("user_7", session_id="sess_7")
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/me", headers=headers).json() == {"user": "user_7", "env": "env_test"}
        assert client.get("/session", headers=headers).json() == {"sid": "sess_7"}
        refused = client.get("/me", headers={"Authorization": f"Bearer {token[:-3]}abc"})
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]


def test_keys_unavailable_answers_503(torii_env: FakeTorii) -> None:
    torii_env.fail(503, path="/.well-known/", times=None)
    app = FastAPI()
    AuthGate.from_settings().install(app)

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, object]:
        return {"user": auth.subject}

    with TestClient(app) as client:
        down = client.get("/me", headers={"Authorization": f"Bearer {torii_env.issue('u2')}"})
    assert down.status_code == 503 and int(down.headers["retry-after"]) >= 1
    assert down.json()["error"] == "provider_unavailable"


def test_the_example_app_switches_to_torii(torii_env: FakeTorii) -> None:
    from example_app.main import create_app

    app = create_app()
    token = torii_env.issue("user_ex", session_id="sess_ex")
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {token}"}
        me = client.get("/api/me", headers=headers)
        assert me.status_code == 200
        assert me.json() == {
            "subject": "user_ex",
            "scopes": [],
            "provider": "torii",
            "session_id": "sess_ex",
        }
        assert client.get("/api/session", headers=headers).status_code == 200
        assert client.get("/api/admin", headers=headers).status_code == 403
        assert client.post("/dev/token", json={"sub": "x"}).status_code in (404, 405)
        assert client.get("/api/me").status_code == 401


@pytest.mark.anyio
async def test_a_torii_token_in_the_session_cookie(fake: FakeTorii) -> None:
    verifier = verifier_for(fake)
    token = fake.issue("user_c", session_id="sess_c")
    context = await verifier.verify(Credentials(cookies={"authgate_session": token}))
    await verifier.aclose()
    assert context is not None
    assert (context.subject, context.session_id, context.credential) == (
        "user_c",
        "sess_c",
        "cookie",
    )


@pytest.mark.anyio
async def test_a_hanging_jwks_is_a_provider_error_within_the_deadline(fake: FakeTorii) -> None:
    fake.hang(5, path="/.well-known/", times=None)
    verifier = verifier_for(fake, fetch_deadline=0.3)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ProviderError):
        await verifier.verify(bearer(fake.issue("user_h")))
    elapsed = asyncio.get_running_loop().time() - started
    fake.heal()
    await verifier.aclose()
    assert elapsed < 4
