"""JWKSVerifier and its key manager against a real fake issuer on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import pytest

from fastapi_authgate._http import build_client
from fastapi_authgate._jose import generate_private_jwk, public_jwk
from fastapi_authgate.context import AuthContext, Credentials
from fastapi_authgate.errors import AuthenticationError, ConfigurationError, ProviderError
from fastapi_authgate.verifiers.jwks import JWKSVerifier
from fastapi_authgate.verifiers.token_cache import TokenCache
from tests.conftest import FixedClock
from tests.fakes.issuer import FakeIssuer
from tests.tokens import (
    EC_KID,
    RSA_KID,
    TokenIssuer,
    build_unknown_kid_token,
    build_valid_token,
    build_wrong_issuer_token,
    compact,
    ec_jwk,
    header,
    private_jwk,
    rsa_jwk,
)

AUDIENCE = "api://test"


@pytest.fixture(scope="module")
def served_issuer() -> Iterator[FakeIssuer]:
    with FakeIssuer().running() as issuer:
        yield issuer


@pytest.fixture
def issuer(served_issuer: FakeIssuer) -> FakeIssuer:
    served_issuer.reset()
    return served_issuer


@pytest.fixture
def minter(issuer: FakeIssuer, clock: FixedClock) -> TokenIssuer:
    return TokenIssuer(iss=issuer.issuer, audience=AUDIENCE, clock=clock)


def make_verifier(issuer: FakeIssuer, clock: FixedClock, **kwargs: Any) -> JWKSVerifier:
    options: dict[str, Any] = {
        "jwks_url": issuer.jwks_url,
        "issuer": issuer.issuer,
        "audience": AUDIENCE,
        "clock": clock,
    }
    options.update(kwargs)
    return JWKSVerifier(**options)


def bearer(token: str) -> Credentials:
    return Credentials(bearer=token)


# ------------------------------------------------------------------------------ verification


@pytest.mark.anyio
@pytest.mark.parametrize("library", ["jose", "pyjwt", "joserfc"])
@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_valid_tokens_from_three_libraries(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer, library: Any, alg: str
) -> None:
    verifier = make_verifier(issuer, clock)
    token = build_valid_token(minter, alg=alg, library=library, sid="sess-1")
    context = await verifier.verify(bearer(token))
    assert context is not None
    assert context.subject == "user-1"
    assert context.provider == "jwks"
    assert context.credential == "bearer"
    assert context.scopes == {"read", "write"}
    assert context.session_id == "sess-1"
    assert context.expires_at == datetime.fromtimestamp(int(clock()) + 300, tz=UTC)
    assert context.claims["iss"] == issuer.issuer
    await verifier.aclose()


@pytest.mark.anyio
async def test_scopes_from_scp_and_permissions(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    verifier = make_verifier(issuer, clock)
    token = build_valid_token(minter, scope="a", scp=["b", 7, ""], permissions=["c:read"], sid="")
    context = await verifier.verify(bearer(token))
    assert context is not None
    assert context.scopes == {"a", "b", "c:read"}
    assert context.session_id is None
    await verifier.aclose()


@pytest.mark.anyio
async def test_cookie_is_read_when_there_is_no_bearer(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    verifier = make_verifier(issuer, clock)
    token = build_valid_token(minter)
    context = await verifier.verify(Credentials(cookies={"authgate_session": token}))
    assert context is not None and context.credential == "cookie"
    # the same token as a bearer is a different cache entry with its own credential kind
    again = await verifier.verify(bearer(token))
    assert again is not None and again.credential == "bearer"
    assert await verifier.verify(Credentials(cookies={"other": token})) is None
    assert await verifier.verify(Credentials()) is None
    no_cookie = make_verifier(issuer, clock, session_cookie=None)
    assert await no_cookie.verify(Credentials(cookies={"authgate_session": token})) is None
    await verifier.aclose()


@pytest.mark.anyio
async def test_another_issuers_token_is_not_recognised(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    verifier = make_verifier(issuer, clock)
    assert await verifier.verify(bearer(build_wrong_issuer_token(minter))) is None
    assert issuer.jwks_hits == 0
    with pytest.raises(AuthenticationError):
        await verifier.verify(bearer("not-a-jwt"))
    with pytest.raises(AuthenticationError):
        await verifier.verify(Credentials(cookies={"authgate_session": "a.b"}))


@pytest.mark.anyio
async def test_disallowed_algorithm_never_triggers_a_fetch(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    verifier = make_verifier(issuer, clock, algorithms=["ES256"])
    with pytest.raises(AuthenticationError, match="algorithm"):
        await verifier.verify(bearer(build_valid_token(minter, alg="RS256")))
    assert issuer.jwks_hits == 0


@pytest.mark.anyio
async def test_token_without_kid(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    no_kid = compact(header(kid=None), minter.claims())
    verifier = make_verifier(issuer, clock)
    with pytest.raises(AuthenticationError, match="does not name"):
        await verifier.verify(bearer(no_kid))
    issuer.rotate(public_jwk(rsa_jwk()))
    single = make_verifier(issuer, clock)
    assert await single.verify(bearer(no_kid)) is not None


# ------------------------------------------------------------------------------- key manager


@pytest.mark.anyio
async def test_key_rotation(issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer) -> None:
    verifier = make_verifier(issuer, clock)
    assert await verifier.verify(bearer(build_valid_token(minter))) is not None
    new = private_jwk("RS256", "rsa-2")
    issuer.rotate(public_jwk(new))
    token = compact(header(kid="rsa-2"), minter.claims(), jwk=new)
    clock.advance(31)  # past the unknown-kid cooldown, well within the JWKS TTL
    context = await verifier.verify(bearer(token))
    assert context is not None
    assert issuer.jwks_hits == 2


@pytest.mark.anyio
async def test_tokens_of_a_retired_key_are_not_served_from_the_cache(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    verifier = make_verifier(issuer, clock)
    old_token = build_valid_token(minter)
    assert await verifier.verify(bearer(old_token)) is not None  # verified and cached
    new = private_jwk("RS256", "rsa-3")
    issuer.rotate(public_jwk(new))  # the old key is retired (e.g. compromised)
    clock.advance(31)
    assert await verifier.verify(bearer(compact(header(kid="rsa-3"), minter.claims(), jwk=new)))
    with pytest.raises(AuthenticationError, match="signing key is unknown"):
        await verifier.verify(bearer(old_token))


@pytest.mark.anyio
async def test_a_cached_token_outlives_neither_its_keys_nor_a_retired_key(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    """No fresh token arrives to trigger the refetch that forgets a retired key's tokens: the
    cached one still stops being answered from the cache once its key set is due for a refetch,
    and is then refused (its ``exp``, a day away, does not keep it)."""
    issuer.cache_control = "max-age=60"
    verifier = make_verifier(issuer, clock)
    old_token = build_valid_token(minter, exp=int(clock()) + 86_400)
    raw = old_token.encode()
    assert await verifier.verify(bearer(old_token)) is not None
    clock.advance(59)
    assert verifier.cached_bearer(raw) is not None  # within the key set's 60 s
    issuer.rotate(public_jwk(private_jwk("RS256", "rsa-3")))  # the old key is retired
    clock.advance(1)
    assert verifier.cached_bearer(raw) is None
    with pytest.raises(AuthenticationError, match="signing key is unknown"):
        await verifier.verify(bearer(old_token))
    assert issuer.jwks_hits == 2


@pytest.mark.anyio
async def test_a_cached_token_is_verified_once_per_key_set_life(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    """Keys unchanged: past the key set's life the token is verified again (one refetch) and
    cached again under the new life, never refused and never re-verified within a life."""
    issuer.cache_control = "max-age=60"
    verifier = make_verifier(issuer, clock)
    token = build_valid_token(minter, exp=int(clock()) + 86_400)
    first = await verifier.verify(bearer(token))
    assert first is not None
    clock.advance(60)
    assert verifier.cached_bearer(token.encode()) is None
    second = await verifier.verify(bearer(token))
    assert second is not None and second is not first and second.subject == first.subject
    assert issuer.jwks_hits == 2
    clock.advance(59)
    assert verifier.cached_bearer(token.encode()) is second
    assert issuer.jwks_hits == 2


@pytest.mark.anyio
async def test_unknown_kid_flood_is_throttled(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    verifier = make_verifier(issuer, clock)
    for index in range(50):
        with pytest.raises(AuthenticationError, match="signing key is unknown"):
            await verifier.verify(bearer(build_unknown_kid_token(minter, kid=f"forged-{index}")))
        clock.advance(0.1)
    assert issuer.jwks_hits <= 2
    clock.advance(30)
    with pytest.raises(AuthenticationError):
        await verifier.verify(bearer(build_unknown_kid_token(minter, kid="after-cooldown")))
    assert issuer.jwks_hits <= 3


@pytest.mark.anyio
async def test_issuer_down_before_first_use(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    issuer.mode = "error"
    verifier = make_verifier(issuer, clock)
    token = build_valid_token(minter)
    with pytest.raises(ProviderError) as raised:
        await verifier.verify(bearer(token))
    assert raised.value.retry_after >= 1
    assert isinstance(raised.value.__cause__, ProviderError)
    with pytest.raises(ProviderError):  # within the back-off: no new request to the issuer
        await verifier.verify(bearer(token))
    assert issuer.jwks_hits == 1
    issuer.mode = "ok"
    clock.advance(5)
    assert await verifier.verify(bearer(token)) is not None
    assert issuer.jwks_hits == 2


@pytest.mark.anyio
async def test_issuer_down_after_keys_were_fetched(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = make_verifier(issuer, clock, token_cache_size=0)
    assert await verifier.verify(bearer(build_valid_token(minter))) is not None
    issuer.mode = "garbage"
    clock.advance(301)  # the cached JWKS is now stale
    with caplog.at_level(logging.WARNING, logger="fastapi_authgate"):
        assert await verifier.verify(bearer(build_valid_token(minter))) is not None
    assert issuer.jwks_hits == 2
    assert "stale-if-error" in caplog.text
    assert "not JSON" in caplog.text
    assert await verifier.verify(bearer(build_valid_token(minter))) is not None
    assert issuer.jwks_hits == 2  # back-off: the stale keys serve without asking again


@pytest.mark.anyio
async def test_slow_issuer_hits_the_deadline(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    issuer.delay = 3
    verifier = make_verifier(issuer, clock, fetch_deadline=0.3)
    started = time.monotonic()
    with pytest.raises(ProviderError):
        await verifier.verify(bearer(build_valid_token(minter)))
    assert time.monotonic() - started < 2.5  # the issuer would take 3 s
    issuer.delay = 0
    await verifier.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [
        ("public, max-age=120", 120),
        ("max-age=5", 60),
        ("max-age=999999", 86400),
        (None, 300),
        ("no-store", 60),
        ("max-age=abc", 300),
    ],
)
async def test_cache_control_sets_the_jwks_lifetime(
    issuer: FakeIssuer,
    clock: FixedClock,
    minter: TokenIssuer,
    cache_control: str | None,
    ttl: int,
) -> None:
    issuer.cache_control = cache_control
    verifier = make_verifier(issuer, clock, token_cache_size=0)
    assert await verifier.verify(bearer(build_valid_token(minter))) is not None
    clock.advance(ttl - 1)
    assert await verifier.verify(bearer(build_valid_token(minter))) is not None
    assert issuer.jwks_hits == 1
    clock.advance(2)
    assert await verifier.verify(bearer(build_valid_token(minter))) is not None
    assert issuer.jwks_hits == 2


@pytest.mark.anyio
async def test_single_flight_on_a_cold_cache(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    issuer.delay = 0.1
    verifier = make_verifier(issuer, clock)
    tokens = [build_valid_token(minter, sub=f"user-{i}") for i in range(20)]
    results: list[AuthContext | None] = []

    async def one(token: str) -> None:
        results.append(await verifier.verify(bearer(token)))

    async with anyio.create_task_group() as group:
        for token in tokens:
            group.start_soon(one, token)
    assert len(results) == 20 and all(result is not None for result in results)
    assert issuer.jwks_hits == 1
    await verifier.aclose()


@pytest.mark.anyio
async def test_single_flight_when_the_issuer_is_down(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    issuer.mode = "error"
    issuer.delay = 0.1
    verifier = make_verifier(issuer, clock)
    failures: list[BaseException] = []

    async def one() -> None:
        try:
            await verifier.verify(bearer(build_valid_token(minter)))
        except ProviderError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(one)
    assert len(failures) == 20
    assert issuer.jwks_hits == 1


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["error", "garbage", "not_object", "no_keys", "huge", "redirect"])
async def test_bad_jwks_answers_are_provider_errors(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer, mode: Any
) -> None:
    issuer.mode = mode
    verifier = make_verifier(issuer, clock)
    with pytest.raises(ProviderError):
        await verifier.verify(bearer(build_valid_token(minter)))
    await verifier.aclose()


@pytest.mark.anyio
async def test_one_bad_key_does_not_break_the_set(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.rotate(
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
        "not an object",
        public_jwk(rsa_jwk()),
    )
    with caplog.at_level(logging.WARNING, logger="fastapi_authgate"):
        verifier = make_verifier(issuer, clock)
        assert await verifier.verify(bearer(build_valid_token(minter))) is not None
    assert caplog.text.count("skipped") == 3


@pytest.mark.anyio
async def test_discovery(issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer) -> None:
    verifier = JWKSVerifier(issuer=issuer.issuer, discovery=True, audience=AUDIENCE, clock=clock)
    assert await verifier.verify(bearer(build_valid_token(minter))) is not None
    assert issuer.hits["/.well-known/openid-configuration"] == 1
    await verifier.startup()  # keys are warm already: nothing to do
    assert issuer.jwks_hits == 1
    await verifier.aclose()


@pytest.mark.anyio
async def test_discovery_with_a_lying_issuer(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    issuer.discovered_issuer = "https://evil.example"
    verifier = JWKSVerifier(issuer=issuer.issuer, discovery=True, clock=clock, audience=AUDIENCE)
    with pytest.raises(ProviderError):
        await verifier.verify(bearer(build_valid_token(minter)))
    assert issuer.jwks_hits == 0


@pytest.mark.anyio
async def test_startup_prefetches_and_never_raises(issuer: FakeIssuer, clock: FixedClock) -> None:
    verifier = make_verifier(issuer, clock)
    await verifier.startup()
    assert issuer.jwks_hits == 1
    issuer.mode = "error"
    down = make_verifier(issuer, clock)
    await down.startup()
    await verifier.aclose()
    await down.aclose()


@pytest.mark.anyio
async def test_shared_client_is_not_closed(issuer: FakeIssuer, clock: FixedClock) -> None:
    client = build_client()
    verifier = make_verifier(issuer, clock, http_client=client)
    await verifier.startup()
    await verifier.aclose()
    assert not client.is_closed
    await client.aclose()


# ----------------------------------------------------------------------------- token cache


@pytest.mark.anyio
async def test_token_cache_hit_skips_parsing_and_crypto(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    verifier = make_verifier(issuer, clock, leeway=0)
    token = build_valid_token(minter, exp=int(clock()) + 60)
    first = await verifier.verify(bearer(token))
    issuer.mode = "error"
    clock.advance(59)
    # the very object built by the first verification: nothing was parsed or verified again
    assert await verifier.verify(bearer(token)) is first
    clock.advance(1)
    with pytest.raises(AuthenticationError, match="expired"):
        await verifier.verify(bearer(token))


@pytest.mark.anyio
async def test_token_cache_can_be_disabled(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    verifier = make_verifier(issuer, clock, token_cache_size=0)
    token = build_valid_token(minter)
    first = await verifier.verify(bearer(token))
    assert first is not None
    assert await verifier.verify(bearer(token)) is not first


def context(subject: str = "u") -> AuthContext:
    return AuthContext(subject=subject, provider="p", credential="bearer")


def test_token_cache_honours_nbf_and_exp() -> None:
    cache = TokenCache(10)
    key = cache.key("token")
    assert key == TokenCache.key("token") != TokenCache.key("token", b"cookie:")
    cache.put(key, context(), expires_at=200, now=100, not_before=150)
    assert cache.get(key, 120) is None  # not valid yet
    assert cache.get(key, 150) is not None
    assert cache.get(key, 200) is None  # expired entries are dropped
    assert len(cache) == 0
    cache.put(key, context(), expires_at=100, now=100)
    assert len(cache) == 0  # never stores what has already expired


def test_token_cache_is_bounded() -> None:
    cache = TokenCache(3)
    keys = [cache.key(str(i)) for i in range(5)]
    for key in keys:
        cache.put(key, context(), expires_at=1000, now=0)
    assert len(cache) == 3
    assert cache.get(keys[0], 1) is None and cache.get(keys[4], 1) is not None
    cache.put(keys[4], context("again"), expires_at=1000, now=0)
    assert len(cache) == 3
    cache.clear()
    assert len(cache) == 0
    disabled = TokenCache(0)
    disabled.put(keys[0], context(), expires_at=1000, now=0)
    assert len(disabled) == 0
    with pytest.raises(ConfigurationError):
        TokenCache(-1)


# --------------------------------------------------------------------------- static keys


@pytest.mark.anyio
async def test_from_jwks_needs_no_http(clock: FixedClock) -> None:
    minter = TokenIssuer(iss="https://static.example", audience=None, clock=clock)
    verifier = JWKSVerifier.from_jwks(
        {"keys": [public_jwk(rsa_jwk()), public_jwk(ec_jwk())]},
        issuer="https://static.example",
        clock=clock,
        provider="dev",
    )
    context = await verifier.verify(bearer(build_valid_token(minter, alg="ES256")))
    assert context is not None and context.provider == "dev"
    with pytest.raises(AuthenticationError, match="unknown"):
        await verifier.verify(bearer(build_unknown_kid_token(minter)))
    await verifier.startup()
    await verifier.aclose()
    assert verifier.issuer == "https://static.example"


@pytest.mark.anyio
async def test_hmac_only_static_issuer(clock: FixedClock) -> None:
    secret = generate_private_jwk("HS256", kid="hs")
    minter = TokenIssuer(iss="https://hs.example", audience=None, clock=clock)
    verifier = JWKSVerifier.from_jwks({"keys": [secret]}, algorithms=["HS256"], clock=clock)
    from fastapi_authgate._jose import JoseKey, sign

    token = sign(minter.claims(), JoseKey.from_jwk(secret))
    assert await verifier.verify(bearer(token)) is not None
    with pytest.raises(AuthenticationError):
        await verifier.verify(bearer(build_valid_token(minter)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs jwks_url"),
        ({"issuer": "https://i"}, "needs jwks_url"),
        ({"jwks_url": "ftp://x/jwks"}, "http"),
        ({"jwks_url": "https://x", "algorithms": ["RS256", "HS256"]}, "mixed"),
        ({"jwks_url": "https://x", "algorithms": ["none"]}, "unsupported"),
        ({"jwks_url": "https://x", "algorithms": ["PS256"]}, "unsupported"),
        ({"jwks_url": "https://x", "algorithms": []}, "empty"),
        ({"jwks_url": "https://x", "leeway": 301}, "leeway"),
        ({"jwks_url": "https://x", "leeway": -1}, "leeway"),
        ({"jwks_url": "https://x", "audience": ""}, "audience"),
        ({"jwks_url": "https://x", "issuer": ""}, "issuer"),
        ({"jwks_url": "https://x", "min_cache_ttl": 10, "max_cache_ttl": 5}, "cache"),
        ({"jwks_url": "https://x", "fetch_deadline": 0}, "fetch_deadline"),
        ({"jwks_url": "https://x", "token_cache_size": -1}, "cache size"),
        ({"jwks": {"keys": []}}, "no key"),
        ({"jwks": {"nope": 1}}, "keys"),
        ({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0"}]}}, "no key"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        JWKSVerifier(**kwargs)


def test_audience_may_be_a_list() -> None:
    verifier = JWKSVerifier(jwks_url="https://x", audience=["a", "b"])
    assert verifier.provider == "jwks"


@pytest.mark.anyio
async def test_unreachable_issuer_is_a_provider_error(clock: FixedClock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    verifier = JWKSVerifier(jwks_url="https://idp.invalid/jwks", http_client=client, clock=clock)
    minter = TokenIssuer(iss="https://idp.invalid", clock=clock)
    with pytest.raises(ProviderError):
        await verifier.verify(bearer(build_valid_token(minter)))
    await client.aclose()


def test_kid_constants() -> None:
    assert {RSA_KID, EC_KID} == {key["kid"] for key in (rsa_jwk(), ec_jwk())}


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://keys.example.com/jwks.json", True),
        ("http://10.1.2.3/jwks.json", True),
        ("https://keys.example.com/jwks.json", False),
        ("http://127.0.0.1:8080/jwks.json", False),
        ("http://[::1]/jwks.json", False),
        ("http://localhost/jwks.json", False),
    ],
)
def test_plain_http_key_source_off_this_machine_is_warned_about(
    url: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="fastapi_authgate.verifiers.jwks"):
        JWKSVerifier(jwks_url=url, issuer="https://issuer.example")
    assert ("over plain http" in caplog.text) is warned
