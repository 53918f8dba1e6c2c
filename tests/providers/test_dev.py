"""DevIssuer: its tokens verify with its own verifier and with independent JOSE libraries."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from joserfc import jwk as joserfc_jwk
from joserfc import jwt as joserfc_jwt

from fastapi_authgate.context import Credentials
from fastapi_authgate.errors import AuthenticationError
from fastapi_authgate.providers.dev import DEFAULT_DEV_ISSUER, DevIssuer
from tests.conftest import FixedClock

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def bearer(token: str) -> Credentials:
    return Credentials(bearer=token)


@pytest.mark.anyio
@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_tokens_verify_with_own_verifier(algorithm: Any, clock: FixedClock) -> None:
    issuer = DevIssuer(algorithm=algorithm, audience="api://example", clock=clock)
    token = issuer.issue("alice", scopes=["write", "read"], tenant="t1")

    context = await issuer.verifier().verify(bearer(token))

    assert context is not None
    assert context.subject == "alice"
    assert context.scopes == frozenset({"read", "write"})
    assert context.provider == "dev"
    assert context.session_id is None
    assert context.claims["tenant"] == "t1"


@pytest.mark.anyio
async def test_session_token_carries_sid_and_verifies_from_cookie(clock: FixedClock) -> None:
    issuer = DevIssuer(clock=clock)
    session_id, token = issuer.new_session("bob", ["read"])

    context = await issuer.verifier().verify(Credentials(cookies={"authgate_session": token}))

    assert context is not None
    assert context.subject == "bob"
    assert context.session_id == session_id
    assert session_id.startswith("sess_")


def test_claims_are_complete(clock: FixedClock) -> None:
    issuer = DevIssuer(audience="api://example", clock=clock)
    token = issuer.issue("alice", scopes=["b", "a", "a"], ttl=120, session_id="s-1")

    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})

    assert header == {"alg": "RS256", "typ": "JWT", "kid": issuer.kid}
    now = int(clock())
    assert claims["iss"] == DEFAULT_DEV_ISSUER
    assert claims["aud"] == "api://example"
    assert claims["sub"] == "alice"
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (now, now, now + 120)
    assert claims["scope"] == "a b"
    assert claims["sid"] == "s-1"
    assert len(claims["jti"]) == 32
    assert (
        jwt.decode(issuer.issue("x"), options={"verify_signature": False})["jti"] != claims["jti"]
    )
    assert "aud" not in jwt.decode(DevIssuer().issue("x"), options={"verify_signature": False})


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_pyjwt_verifies_with_the_published_jwks(algorithm: str) -> None:
    issuer = DevIssuer(algorithm=algorithm, audience="api://example")  # type: ignore[arg-type]
    token = issuer.issue("alice", scopes=["read"])
    (public,) = issuer.jwks["keys"]

    key = jwt.PyJWK(public)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=[algorithm],
        audience="api://example",
        issuer=issuer.issuer,
        options={"require": ["exp", "iat", "nbf", "sub"]},
    )
    assert claims["sub"] == "alice"
    assert claims["scope"] == "read"


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_joserfc_verifies_and_kid_is_the_rfc7638_thumbprint(algorithm: str) -> None:
    issuer = DevIssuer(algorithm=algorithm)  # type: ignore[arg-type]
    key_set = joserfc_jwk.KeySet.import_key_set(issuer.jwks)  # type: ignore[arg-type]

    token = joserfc_jwt.decode(issuer.issue("carol"), key_set, algorithms=[algorithm])

    assert token.claims["sub"] == "carol"
    (key,) = key_set.keys
    assert key.thumbprint() == issuer.kid
    assert token.header["kid"] == issuer.kid


def test_jwks_holds_no_private_members() -> None:
    for algorithm in ("RS256", "ES256"):
        issuer = DevIssuer(algorithm=algorithm)
        (public,) = issuer.jwks["keys"]
        assert not PRIVATE_MEMBERS & set(public)
        assert public["kid"] == issuer.kid
        assert public["alg"] == algorithm
        assert public["use"] == "sig"


def test_jwks_is_a_copy() -> None:
    issuer = DevIssuer()
    issuer.jwks["keys"][0]["kid"] = "tampered"
    assert issuer.jwks["keys"][0]["kid"] == issuer.kid


@pytest.mark.anyio
async def test_expiry_follows_the_injected_clock(clock: FixedClock) -> None:
    issuer = DevIssuer(clock=clock)
    verifier = issuer.verifier()
    token = issuer.issue("alice", ttl=60)

    clock.advance(59)
    assert await verifier.verify(bearer(token)) is not None

    clock.advance(2)
    with pytest.raises(AuthenticationError):
        await verifier.verify(bearer(token))


@pytest.mark.anyio
async def test_negative_ttl_mints_an_expired_token(clock: FixedClock) -> None:
    issuer = DevIssuer(clock=clock)
    with pytest.raises(AuthenticationError):
        await issuer.verifier().verify(bearer(issuer.issue("alice", ttl=-1)))


@pytest.mark.anyio
async def test_other_issuers_tokens_are_refused(clock: FixedClock) -> None:
    mine, theirs = DevIssuer(clock=clock), DevIssuer(clock=clock)
    with pytest.raises(AuthenticationError):
        await mine.verifier().verify(bearer(theirs.issue("mallory")))


@pytest.mark.anyio
async def test_wrong_audience_is_refused(clock: FixedClock) -> None:
    issuer = DevIssuer(audience="api://one", clock=clock)
    token = issuer.issue("alice", aud="api://other")
    with pytest.raises(AuthenticationError):
        await issuer.verifier().verify(bearer(token))


@pytest.mark.anyio
async def test_verifier_overrides_are_applied(clock: FixedClock) -> None:
    issuer = DevIssuer(clock=clock)
    verifier = issuer.verifier(provider="custom")
    context = await verifier.verify(bearer(issuer.issue("alice")))
    assert context is not None
    assert context.provider == "custom"


@pytest.mark.anyio
async def test_a_given_private_key_is_reused(clock: FixedClock) -> None:
    first = DevIssuer(clock=clock)
    second = DevIssuer(clock=clock, private_jwk=first._key_jwk)
    assert second.kid == first.kid
    assert await first.verifier().verify(bearer(second.issue("alice"))) is not None


def test_invalid_input_is_refused() -> None:
    issuer = DevIssuer()
    with pytest.raises(ValueError):
        issuer.issue("")
    with pytest.raises(ValueError):
        issuer.issue("alice", scopes=["two words"])
    with pytest.raises(ValueError):
        issuer.issue("alice", scopes=['quo"te'])
    with pytest.raises(TypeError):
        issuer.issue("alice", scopes="admin")
    with pytest.raises(ValueError):
        DevIssuer(algorithm="HS256")  # type: ignore[arg-type]


def test_openid_configuration_points_at_the_routes() -> None:
    issuer = DevIssuer(issuer="http://testserver")
    document = issuer.openid_configuration("http://testserver/")
    assert document["issuer"] == "http://testserver"
    assert document["jwks_uri"] == "http://testserver/.well-known/jwks.json"
    assert document["token_endpoint"] == "http://testserver/dev/token"
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]


def test_repr_shows_no_key_material() -> None:
    issuer = DevIssuer()
    text = repr(issuer)
    assert issuer.kid in text
    assert issuer._key_jwk["d"] not in text
