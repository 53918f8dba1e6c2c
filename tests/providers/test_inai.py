"""The InAI verifier against the fake InAI's JWKS over real HTTP: claims, algorithms, rotation."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import jwt as pyjwt
import pytest
from fastapi import FastAPI, Security

from fastapi_authgate import AuthContext, AuthGate, require_user
from fastapi_authgate._jose import JoseKey, generate_private_jwk, public_jwk, sign
from fastapi_authgate.context import Credentials
from fastapi_authgate.errors import (
    AuthenticationError,
    ConfigurationError,
    ProviderError,
)
from fastapi_authgate.providers.inai import (
    InAIAuthClient,
    auth_object,
    build_auth_object_from_token,
    inai_verifier,
    verifier_from_settings,
)
from fastapi_authgate.settings import AuthGateSettings
from fastapi_authgate.testing import FakeInAI
from fastapi_authgate.verifiers.jwks import JWKSVerifier
from tests.conftest import FixedClock
from tests.servers import serve

JWKS_PATH = "/.well-known/jwks.json"


@pytest.fixture
def fake(clock: FixedClock) -> FakeInAI:
    return FakeInAI(clock=clock)


@pytest.fixture
def base_url(fake: FakeInAI) -> Iterator[str]:
    with serve(fake.app) as url:
        yield url


@pytest.fixture
async def verifier(base_url: str, clock: FixedClock) -> AsyncIterator[JWKSVerifier]:
    verifier = inai_verifier(jwks_url=base_url + JWKS_PATH, clock=clock, refetch_cooldown=30)
    yield verifier
    await verifier.aclose()


def bearer(token: str) -> Credentials:
    return Credentials(bearer=token)


def pyjwt_token(private_jwk: dict[str, Any], claims: dict[str, Any], alg: str = "ES256") -> str:
    key = pyjwt.PyJWK(private_jwk).key
    return pyjwt.encode(claims, key, algorithm=alg, headers={"kid": private_jwk["kid"]})


def claims(clock: FixedClock, **extra: Any) -> dict[str, Any]:
    now = int(clock())
    return {"sub": "u_9", "iat": now, "exp": now + 600, "type": "app_user", **extra}


@pytest.mark.anyio
async def test_context_carries_user_org_roles_and_permissions(
    fake: FakeInAI, verifier: JWKSVerifier
) -> None:
    token = fake.issue(
        "u_1",
        email="ada@example.com",
        org_id="org_7",
        org_role="owner",
        roles=["admin"],
        permissions=["users:read", "users:write"],
    )
    context = await verifier.verify(bearer(token))
    assert context is not None
    assert (context.subject, context.provider, context.credential) == ("u_1", "inai", "bearer")
    assert context.scopes == {"admin", "users:read", "users:write"}
    assert context.session_id is None and context.expires_at is not None
    assert context.user is not None and context.user.email == "ada@example.com"
    assert dict(context.user.metadata) == {
        "org_id": "org_7",
        "org_role": "owner",
        "type": "app_user",
    }
    obj = auth_object(context)
    assert (obj.user_id, obj.email, obj.org_id, obj.org_role) == (
        "u_1",
        "ada@example.com",
        "org_7",
        "owner",
    )
    assert obj.roles == ("admin",) and obj.permissions == ("users:read", "users:write")


@pytest.mark.anyio
async def test_tokens_minted_by_pyjwt_are_accepted(
    fake: FakeInAI, verifier: JWKSVerifier, clock: FixedClock
) -> None:
    token = pyjwt_token(fake._private[0], claims(clock, email="py@example.com", roles=["r"]))
    context = await verifier.verify(bearer(token))
    assert context is not None and context.user is not None
    assert context.user.email == "py@example.com" and context.scopes == {"r"}


@pytest.mark.anyio
async def test_other_algorithms_are_refused_before_any_key_lookup(
    fake: FakeInAI, verifier: JWKSVerifier, clock: FixedClock
) -> None:
    kid = fake._private[0]["kid"]
    rsa = {**generate_private_jwk("RS256", kid=kid)}
    fake.extra_public_keys.append(public_jwk(rsa))  # even a published RSA key under our kid
    hs = {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA", "kid": kid}
    tokens = [
        pyjwt_token(rsa, claims(clock), alg="RS256"),
        sign(claims(clock), JoseKey.from_jwk(rsa)),
        pyjwt.encode(claims(clock), b"secret-secret-secret-secret-secret", algorithm="HS256"),
        pyjwt_token(hs, claims(clock), alg="HS256"),
        pyjwt_token(generate_private_jwk("ES384", kid=kid), claims(clock), alg="ES384"),
    ]
    for token in tokens:
        with pytest.raises(AuthenticationError, match="algorithm is not allowed"):
            await verifier.verify(bearer(token))
    assert fake.jwks_fetches == 0


@pytest.mark.anyio
async def test_token_type_and_claims_are_checked(
    fake: FakeInAI, verifier: JWKSVerifier, base_url: str, clock: FixedClock
) -> None:
    for token in (
        fake.issue("u_1", type="platform"),  # an administrator's token is not an app user's
        fake.issue("u_1", type="service"),
        fake.issue("u_1", type=None),
        fake.issue("u_1", ttl=-100),
    ):
        with pytest.raises(AuthenticationError):
            await verifier.verify(bearer(token))
    both = inai_verifier(
        jwks_url=base_url + JWKS_PATH, clock=clock, token_types=("app_user", "platform")
    )
    context = await both.verify(bearer(fake.issue("pu_1", type="platform")))
    assert context is not None and context.user is not None
    assert context.user.metadata["type"] == "platform"
    await both.aclose()
    with pytest.raises(ConfigurationError):
        inai_verifier(token_types=("root",))


@pytest.mark.anyio
async def test_forged_signature_flood_costs_one_fetch_per_cooldown(
    fake: FakeInAI, base_url: str, clock: FixedClock
) -> None:
    """Hundreds of concurrent forgeries through a served app: one JWKS fetch per cooldown."""
    verifier = inai_verifier(jwks_url=base_url + JWKS_PATH, clock=clock, refetch_cooldown=30)
    gate = AuthGate(verifier)
    app = FastAPI()
    gate.install(app)

    @app.get("/me")
    async def me(auth: AuthContext = Security(require_user)) -> dict[str, str]:
        return {"subject": auth.subject}

    kid = fake._private[0]["kid"]
    attacker = {**generate_private_jwk("ES256", kid="x"), "kid": kid}
    forged = [sign(claims(clock, sub=f"u_{n}"), JoseKey.from_jwk(attacker)) for n in range(300)]
    unknown = [
        sign(claims(clock), JoseKey.from_jwk(generate_private_jwk("ES256", kid=f"k{n}")))
        for n in range(3)
    ]
    with serve(app) as app_url:
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        async with httpx.AsyncClient(base_url=app_url, limits=limits, timeout=60) as http:
            good = await http.get("/me", headers={"Authorization": f"Bearer {fake.issue('u_ok')}"})
            assert good.status_code == 200 and fake.jwks_fetches == 1

            async def wave() -> list[int]:
                statuses: list[int] = []

                async def one(token: str) -> None:
                    headers = {"Authorization": f"Bearer {token}"}
                    try:
                        answer = await http.get("/me", headers=headers)
                    except httpx.TransportError:  # a loaded loopback may reset one of 300 sockets
                        answer = await http.get("/me", headers=headers)
                    statuses.append(answer.status_code)

                async with anyio.create_task_group() as group:
                    for token in forged + unknown:
                        group.start_soon(one, token)
                return statuses

            clock.advance(31)  # the cooldown has passed: one refetch is allowed
            statuses = await wave()
            assert statuses == [401] * len(forged + unknown)
            assert fake.jwks_fetches == 2
            clock.advance(10)  # inside the new cooldown: nothing at all
            assert await wave() == [401] * len(forged + unknown)
            assert fake.jwks_fetches == 2
            good = await http.get("/me", headers={"Authorization": f"Bearer {fake.issue('u_2')}"})
            assert good.status_code == 200


@pytest.mark.anyio
async def test_rotation_under_the_same_kid_is_accepted_after_one_refetch(
    fake: FakeInAI, verifier: JWKSVerifier, clock: FixedClock
) -> None:
    before = fake.issue("u_old")
    assert await verifier.verify(bearer(before)) is not None
    assert fake.jwks_fetches == 1
    kid = fake._private[0]["kid"]
    assert fake.rotate_keys(same_kid=True) == kid
    after = fake.issue("u_new")
    with pytest.raises(AuthenticationError, match="signature"):  # inside the cooldown
        await verifier.verify(bearer(after))
    assert fake.jwks_fetches == 1
    clock.advance(31)
    context = await verifier.verify(bearer(after))
    assert context is not None and context.subject == "u_new"
    assert fake.jwks_fetches == 2
    # the old key is gone, so the token it signed is no longer served from the token cache
    with pytest.raises(AuthenticationError):
        await verifier.verify(bearer(before))
    assert fake.jwks_fetches == 2
    assert (await verifier.verify(bearer(fake.issue("u_again")))) is not None
    assert fake.jwks_fetches == 2


@pytest.mark.anyio
async def test_keys_are_cached_five_minutes(
    fake: FakeInAI, verifier: JWKSVerifier, clock: FixedClock
) -> None:
    assert await verifier.verify(bearer(fake.issue("u_1"))) is not None
    clock.advance(299)
    assert await verifier.verify(bearer(fake.issue("u_2"))) is not None
    assert fake.jwks_fetches == 1
    clock.advance(2)
    assert await verifier.verify(bearer(fake.issue("u_3"))) is not None
    assert fake.jwks_fetches == 2


@pytest.mark.anyio
async def test_jwks_down_is_a_provider_error(
    fake: FakeInAI, verifier: JWKSVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail("GET /.well-known/jwks.json", 503)
    token = fake.issue("u_1")
    with caplog.at_level(logging.WARNING), pytest.raises(ProviderError):
        await verifier.verify(bearer(token))
    assert "JWKS fetch from" in caplog.text and "answering 503" in caplog.text
    assert token not in caplog.text
    fake.reset()
    fake.fail("GET /.well-known/jwks.json", 200, body=b"<html>")
    with pytest.raises(ProviderError):
        await verifier.verify(bearer(token))


@pytest.mark.anyio
async def test_build_auth_object_from_token(
    fake: FakeInAI, verifier: JWKSVerifier, clock: FixedClock
) -> None:
    token = fake.issue("u_5", email="e@example.com", org_id="org_1", roles=["member"])
    obj = await build_auth_object_from_token(token, verifier)
    assert obj is not None
    assert (obj.user_id, obj.email, obj.org_id, obj.org_role, obj.roles) == (
        "u_5",
        "e@example.com",
        "org_1",
        "member",
        ("member",),
    )
    assert obj.token_type == "app_user"
    assert await build_auth_object_from_token("not-a-token", verifier) is None
    assert await build_auth_object_from_token(fake.issue("u_5", ttl=-60), verifier) is None
    forged = fake.issue("u_5")[:-6] + "AAAAAA"
    assert await build_auth_object_from_token(forged, verifier) is None
    down = inai_verifier(jwks_url="http://127.0.0.1:9/jwks.json", clock=clock)
    with pytest.raises(ProviderError):  # an outage is not folded into "no user"
        await build_auth_object_from_token(token, down)
    await down.aclose()


def settings(**inai: str) -> AuthGateSettings:
    return AuthGateSettings(provider="inai", inai=inai)  # type: ignore[arg-type]


def test_settings_fail_at_startup_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="AUTHGATE_INAI__PUBLISHABLE_KEY"):
        verifier_from_settings(settings())
    with pytest.raises(ConfigurationError, match="AUTHGATE_INAI__PUBLISHABLE_KEY"):
        verifier_from_settings(settings(publishable_key="sk_live_oops12345"))
    with pytest.raises(ConfigurationError, match="AUTHGATE_INAI__JWKS_URL"):
        verifier_from_settings(settings(publishable_key="pk_test_abcdefgh", jwks_url="file:///k"))
    with pytest.raises(ConfigurationError, match="AUTHGATE_INAI__API_URL"):
        verifier_from_settings(settings(publishable_key="pk_test_abcdefgh", api_url="ftp://x"))


def test_settings_build_the_verifier(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AUTHGATE_PROVIDER", "inai")
    monkeypatch.setenv("AUTHGATE_INAI__PUBLISHABLE_KEY", "pk_live_abcdefgh1234")
    with caplog.at_level(logging.WARNING):
        gate = AuthGate.from_settings()
    assert gate.verifier.provider == "inai" and gate.dev_issuer is None
    assert "whichever InAI application" in caplog.text
    monkeypatch.setenv("AUTHGATE_INAI__ISSUER", "https://apiauth.inai.dev")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        AuthGate.from_settings()
    assert "whichever InAI application" not in caplog.text


@pytest.mark.anyio
async def test_issuer_is_checked_when_configured(
    fake: FakeInAI, base_url: str, clock: FixedClock
) -> None:
    bound = inai_verifier(
        jwks_url=base_url + JWKS_PATH, clock=clock, issuer="https://apiauth.inai.dev"
    )
    fake.issuer = "https://apiauth.inai.dev"
    assert await bound.verify(bearer(fake.issue("u_1"))) is not None
    fake.issuer = None
    with pytest.raises(AuthenticationError):  # no iss at all
        await bound.verify(bearer(fake.issue("u_2")))
    await bound.aclose()


@pytest.fixture
def live_fake() -> Iterator[tuple[FakeInAI, str]]:
    """A fake on the wall clock, for apps whose verifier reads the real time."""
    fake = FakeInAI()
    with serve(fake.app) as url:
        yield fake, url


@pytest.mark.anyio
async def test_example_app_switches_to_inai(
    live_fake: tuple[FakeInAI, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from example_app.main import create_app

    fake, base_url = live_fake
    monkeypatch.setenv("AUTHGATE_PROVIDER", "inai")
    monkeypatch.setenv("AUTHGATE_INAI__PUBLISHABLE_KEY", "pk_test_fakeinai00000000")
    monkeypatch.setenv("AUTHGATE_INAI__JWKS_URL", base_url + JWKS_PATH)
    monkeypatch.setenv("AUTHGATE_INAI__API_URL", base_url)
    app = create_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (await http.post("/dev/token", json={"sub": "x"})).status_code in (404, 405)
        user = {"Authorization": f"Bearer {fake.issue('u_1', permissions=['read'])}"}
        me = await http.get("/api/me", headers=user)
        assert me.status_code == 200
        assert me.json() == {
            "subject": "u_1",
            "scopes": ["read"],
            "provider": "inai",
            "session_id": None,
        }
        assert (await http.get("/api/admin", headers=user)).status_code == 403
        admin = {"Authorization": f"Bearer {fake.issue('u_2', roles=['admin'])}"}
        assert (await http.get("/api/admin", headers=admin)).status_code == 200
        hs = pyjwt.encode({"sub": "u_1", "exp": 4_000_000_000}, "k" * 32, algorithm="HS256")
        refused = await http.get("/api/me", headers={"Authorization": f"Bearer {hs}"})
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    async with InAIAuthClient(publishable_key="pk_test_fakeinai00000000", api_url=base_url) as c:
        fake.add_account("demo@example.com", "pw-123456")
        assert (await c.login("demo@example.com", "pw-123456")) is not None


def kid_of(token: str) -> str:
    return str(pyjwt.get_unverified_header(token)["kid"])


@pytest.mark.anyio
async def test_rotation_to_a_new_kid_while_the_old_key_is_still_published(
    fake: FakeInAI, verifier: JWKSVerifier, clock: FixedClock
) -> None:
    before = fake.issue("u_old")
    assert await verifier.verify(bearer(before)) is not None
    clock.advance(31)
    new_kid = fake.rotate_keys(keep_old=True)
    after = fake.issue("u_new")
    assert kid_of(after) == new_kid != kid_of(before)
    assert await verifier.verify(bearer(after)) is not None  # unknown kid: one refetch
    assert fake.jwks_fetches == 2
    assert await verifier.verify(bearer(before)) is not None  # the old key is still published
    assert await verifier.verify(bearer(fake.issue("u_again"))) is not None
    assert fake.jwks_fetches == 2


@pytest.mark.anyio
async def test_a_failure_for_a_number_of_times_then_recovery(
    fake: FakeInAI, base_url: str, clock: FixedClock
) -> None:
    fake.fail("GET /.well-known/jwks.json", 502, times=1)
    token = fake.issue("u_1")
    first = inai_verifier(jwks_url=base_url + JWKS_PATH, clock=clock)
    with pytest.raises(ProviderError):
        await first.verify(bearer(token))
    await first.aclose()
    second = inai_verifier(jwks_url=base_url + JWKS_PATH, clock=clock)
    assert await second.verify(bearer(token)) is not None  # the knob ran out: keys are served
    await second.aclose()
    assert fake.jwks_fetches == 2
