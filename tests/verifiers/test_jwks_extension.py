"""The provider extension points of JWKSVerifier, against a real fake issuer on 127.0.0.1.

* ``context_builder``: a provider turns verified claims into its own AuthContext;
* ``refetch_on_bad_signature``: a key rotated under an old ``kid`` is accepted after one refetch,
  behind the unknown-kid cooldown and single flight;
* key retirement compares RFC 7638 thumbprints, so a rotation that keeps the ``kid`` evicts the
  old key's tokens from the token cache (issue #12 item 13).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import anyio
import pytest

from fastapi_authgate._jose import JoseKey, public_jwk
from fastapi_authgate.context import AuthContext, CredentialKind, Credentials, User
from fastapi_authgate.errors import AuthenticationError, ProviderError
from fastapi_authgate.verifiers.jwks import JWKSVerifier
from fastapi_authgate.verifiers.jwt_context import (
    claim_expiry,
    claim_scopes,
    claim_str,
    scope_context_builder,
)
from tests.conftest import FixedClock
from tests.fakes.issuer import FakeIssuer
from tests.tokens import (
    RSA_KID,
    TokenIssuer,
    build_unknown_kid_token,
    build_valid_token,
    build_wrong_key_token,
    compact,
    ec_jwk,
    header,
    private_jwk,
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


def rotated_rsa_jwk() -> dict[str, Any]:
    """A new RSA key published under the old ``kid`` (an issuer that reuses kids)."""
    return {**private_jwk("RS256", "rotated"), "kid": RSA_KID}


def publish_rotated(issuer: FakeIssuer) -> dict[str, Any]:
    new = rotated_rsa_jwk()
    issuer.rotate(public_jwk(new), public_jwk(ec_jwk()))
    return new


# ------------------------------------------------------------------------- context builder


def inai_context(claims: Mapping[str, Any], credential: CredentialKind) -> AuthContext:
    return AuthContext(
        subject=claims["sub"],
        provider="inai",
        credential=credential,
        scopes=claim_scopes(claims, ("roles", "permissions")),
        session_id=claim_str(claims, "sid"),
        claims=claims,
        expires_at=claim_expiry(claims),
        user=User(
            id=claims["sub"],
            email=claim_str(claims, "email"),
            metadata={"org_id": claims.get("org_id"), "org_role": claims.get("org_role")},
        ),
    )


@pytest.mark.anyio
async def test_context_builder_maps_provider_claims(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    calls: list[CredentialKind] = []

    def builder(claims: Mapping[str, Any], credential: CredentialKind) -> AuthContext:
        calls.append(credential)
        return inai_context(claims, credential)

    verifier = make_verifier(issuer, clock, provider="inai", context_builder=builder)
    token = build_valid_token(
        minter,
        alg="ES256",
        scope="ignored-by-this-builder",
        roles=["admin", 7],
        permissions=["billing:read"],
        email="ada@example.com",
        org_id="org_1",
        org_role="owner",
        sid="sess-9",
    )
    context = await verifier.verify(bearer(token))
    assert context is not None
    assert context.provider == "inai"
    assert context.scopes == {"admin", "billing:read"}
    assert context.session_id == "sess-9"
    assert context.user is not None
    assert context.user.email == "ada@example.com"
    assert context.user.metadata == {"org_id": "org_1", "org_role": "owner"}
    assert context.claims["org_id"] == "org_1"
    assert context.expires_at is not None
    assert context.expires_at.timestamp() == int(clock()) + 300
    # a repeated token is served from the cache: the builder ran once
    assert await verifier.verify(bearer(token)) is context
    assert verifier.cached_bearer(token.encode()) is context
    assert calls == ["bearer"]
    await verifier.aclose()


@pytest.mark.anyio
async def test_torii_style_builder_keeps_extra_claims(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    default = scope_context_builder("torii")
    verifier = make_verifier(issuer, clock, provider="torii", context_builder=default)
    token = build_valid_token(minter, sid="sess_1", environment_id="env_1", email_verified=True)
    context = await verifier.verify(Credentials(cookies={"authgate_session": token}))
    assert context is not None
    assert (context.provider, context.credential, context.session_id) == (
        "torii",
        "cookie",
        "sess_1",
    )
    assert context.claims["environment_id"] == "env_1"
    assert context.claims["email_verified"] is True
    await verifier.aclose()


@pytest.mark.anyio
async def test_builder_may_refuse_a_token(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    def only_app_users(claims: Mapping[str, Any], credential: CredentialKind) -> AuthContext:
        if claims.get("type") != "app_user":
            raise AuthenticationError("The token is not an app user's")
        return inai_context(claims, credential)

    verifier = make_verifier(issuer, clock, context_builder=only_app_users)
    assert await verifier.verify(bearer(build_valid_token(minter, type="app_user"))) is not None
    platform = build_valid_token(minter, type="platform")
    with pytest.raises(AuthenticationError, match="not an app user"):
        await verifier.verify(bearer(platform))
    # a refusal is not cached as a success
    assert verifier.cached_bearer(platform.encode()) is None
    await verifier.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "builder",
    [
        lambda claims, credential: claims["no-such-claim"],
        lambda claims, credential: {"subject": claims["sub"]},
        lambda claims, credential: AuthContext(subject="", provider="x", credential=credential),
    ],
    ids=["raises", "not-a-context", "empty-subject"],
)
async def test_broken_builder_is_a_503_with_a_log_line(
    issuer: FakeIssuer,
    clock: FixedClock,
    minter: TokenIssuer,
    builder: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    verifier = make_verifier(issuer, clock, context_builder=builder)
    with pytest.raises(ProviderError):
        await verifier.verify(bearer(build_valid_token(minter)))
    assert "context builder" in caplog.text
    await verifier.aclose()


def test_builder_must_be_callable(issuer: FakeIssuer) -> None:
    from fastapi_authgate.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="context_builder"):
        JWKSVerifier(jwks_url=issuer.jwks_url, context_builder="inai")  # type: ignore[arg-type]


# ---------------------------------------------------------------- refetch on bad signature


@pytest.mark.anyio
async def test_key_rotated_under_the_same_kid_is_accepted_after_one_refetch(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    verifier = make_verifier(issuer, clock, refetch_on_bad_signature=True)
    assert await verifier.verify(bearer(build_valid_token(minter))) is not None
    assert issuer.jwks_hits == 1
    new = publish_rotated(issuer)
    clock.advance(31)  # past the cooldown, well inside the JWKS lifetime (300 s)
    token = compact(header(kid=RSA_KID), minter.claims(sub="after-rotation"), jwk=new)
    context = await verifier.verify(bearer(token))
    assert context is not None and context.subject == "after-rotation"
    assert issuer.jwks_hits == 2
    # the next token of the new key needs no fetch
    again = compact(header(kid=RSA_KID), minter.claims(sub="second"), jwk=new)
    assert await verifier.verify(bearer(again)) is not None
    assert issuer.jwks_hits == 2
    await verifier.aclose()


@pytest.mark.anyio
async def test_without_the_option_a_bad_signature_never_refetches(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    verifier = make_verifier(issuer, clock)
    assert await verifier.verify(bearer(build_valid_token(minter))) is not None
    new = publish_rotated(issuer)
    clock.advance(31)
    token = compact(header(kid=RSA_KID), minter.claims(), jwk=new)
    with pytest.raises(AuthenticationError, match="signature is invalid"):
        await verifier.verify(bearer(token))
    assert issuer.jwks_hits == 1
    await verifier.aclose()


@pytest.mark.anyio
async def test_within_the_cooldown_a_bad_signature_does_not_refetch(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    verifier = make_verifier(issuer, clock, refetch_on_bad_signature=True)
    assert await verifier.verify(bearer(build_valid_token(minter))) is not None
    new = publish_rotated(issuer)
    token = compact(header(kid=RSA_KID), minter.claims(), jwk=new)
    with pytest.raises(AuthenticationError, match="signature is invalid"):
        await verifier.verify(bearer(token))  # the first fetch was just now
    assert issuer.jwks_hits == 1
    clock.advance(31)
    assert await verifier.verify(bearer(token)) is not None
    assert issuer.jwks_hits == 2
    await verifier.aclose()


@pytest.mark.anyio
async def test_forged_signature_flood_costs_one_fetch_per_cooldown(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    """Hundreds of concurrent forgeries under a known kid, mixed with unknown kids: one fetch."""
    verifier = make_verifier(issuer, clock, refetch_on_bad_signature=True)
    assert await verifier.verify(bearer(build_valid_token(minter))) is not None
    clock.advance(31)
    issuer.delay = 0.3  # every forgery arrives while the refetch is in flight
    forged = [build_wrong_key_token(minter) for _ in range(4)]
    unknown = [build_unknown_kid_token(minter, kid=f"forged-{n}") for n in range(4)]
    refused = 0

    async def attack(token: str) -> None:
        nonlocal refused
        with pytest.raises(AuthenticationError):
            await verifier.verify(bearer(token))
        refused += 1

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:
            for index in range(400):
                pool = forged if index % 2 else unknown
                tasks.start_soon(attack, pool[index % 4])
    assert refused == 400
    assert issuer.jwks_hits == 2  # the first fetch and one refetch
    issuer.delay = 0
    # still inside the cooldown: more forgeries of either kind fetch nothing
    for token in forged + unknown:
        with pytest.raises(AuthenticationError):
            await verifier.verify(bearer(token))
    assert issuer.jwks_hits == 2
    clock.advance(31)
    for token in forged + unknown:
        with pytest.raises(AuthenticationError):
            await verifier.verify(bearer(token))
    assert issuer.jwks_hits == 3
    await verifier.aclose()


@pytest.mark.anyio
async def test_static_keys_never_refetch(clock: FixedClock, minter: TokenIssuer) -> None:
    verifier = JWKSVerifier.from_jwks(
        {"keys": [public_jwk(private_jwk("RS256", RSA_KID))]},
        issuer=minter.iss,
        audience=AUDIENCE,
        clock=clock,
        refetch_on_bad_signature=True,
    )
    with pytest.raises(AuthenticationError, match="signature is invalid"):
        await verifier.verify(bearer(build_wrong_key_token(minter)))


# ------------------------------------------------------------ retirement by thumbprint (#13)


def test_thumbprint_is_rfc7638() -> None:
    # RFC 7638 section 3.1's example key and thumbprint
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
            "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
            "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
            "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert JoseKey.from_jwk(jwk).thumbprint == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.anyio
async def test_rotation_keeping_the_kid_evicts_old_key_tokens_from_the_cache(
    issuer: FakeIssuer, clock: FixedClock, minter: TokenIssuer
) -> None:
    verifier = make_verifier(issuer, clock)
    old_token = build_valid_token(minter, exp=int(clock()) + 3600)
    assert await verifier.verify(bearer(old_token)) is not None  # verified and cached
    assert verifier.cached_bearer(old_token.encode()) is not None
    new = publish_rotated(issuer)  # same kid, another key: the old one is retired
    clock.advance(301)  # the JWKS lifetime ends; the next miss refetches
    fresh = compact(header(kid=RSA_KID), minter.claims(), jwk=new)
    assert await verifier.verify(bearer(fresh)) is not None
    assert issuer.jwks_hits == 2
    assert verifier.cached_bearer(old_token.encode()) is None
    with pytest.raises(AuthenticationError, match="signature is invalid"):
        await verifier.verify(bearer(old_token))
    await verifier.aclose()


# ------------------------------------------------- discovery downgrade and URL redaction (#14)


def test_redact_url() -> None:
    from fastapi_authgate._redact import redact_url

    assert (
        redact_url("https://user:pa55@idp.example:8443/jwks?key=s3cret&v=2#frag")
        == "https://***@idp.example:8443/jwks?key=***&v=***"
    )
    assert redact_url("https://idp.example/jwks.json") == "https://idp.example/jwks.json"
    assert redact_url(None) == "-"


@pytest.mark.anyio
async def test_jwks_urls_are_logged_redacted(
    issuer: FakeIssuer,
    clock: FixedClock,
    minter: TokenIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG", logger="fastapi_authgate")
    port = issuer.base_url.rsplit(":", 1)[1]
    url = f"http://ops:hunter2@127.0.0.1:{port}/jwks.json?api_key=s3cr3t-query"
    verifier = make_verifier(issuer, clock, jwks_url=url)
    assert await verifier.verify(bearer(build_valid_token(minter))) is not None
    issuer.mode = "no_keys"
    clock.advance(301)
    assert await verifier.verify(bearer(build_valid_token(minter, sub="later"))) is not None
    assert "JWKS fetched from" in caplog.text and "JWKS fetch from" in caplog.text
    for secret in ("hunter2", "ops:", "s3cr3t-query"):
        assert secret not in caplog.text
    assert f"http://***@127.0.0.1:{port}/jwks.json?api_key=***" in caplog.text
    await verifier.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("jwks_uri", "accepted"),
    [("https://login.example/jwks.json", True), ("http://login.example/jwks.json", False)],
)
async def test_discovered_jwks_uri_may_not_downgrade_to_http(
    clock: FixedClock, jwks_uri: str, accepted: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # TLS on loopback is more than this needs: a MockTransport plays the https issuer
    import httpx

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(
                200, json={"issuer": "https://login.example", "jwks_uri": jwks_uri}
            )
        return httpx.Response(200, json={"keys": [public_jwk(private_jwk("RS256", RSA_KID))]})

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    minter = TokenIssuer(iss="https://login.example", audience=AUDIENCE, clock=clock)
    verifier = JWKSVerifier(
        issuer="https://login.example",
        discovery=True,
        audience=AUDIENCE,
        clock=clock,
        http_client=client,
    )
    token = build_valid_token(minter)
    if accepted:
        assert await verifier.verify(bearer(token)) is not None
    else:
        with pytest.raises(ProviderError):
            await verifier.verify(bearer(token))
        assert "downgrades to plain http" in caplog.text
    await client.aclose()
