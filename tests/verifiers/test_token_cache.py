"""TokenCache regressions: unambiguous keys, and never an entry outside ``[nbf, exp)``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastapi_authgate._jose import public_jwk
from fastapi_authgate.context import AuthContext, Credentials
from fastapi_authgate.errors import AuthenticationError
from fastapi_authgate.verifiers.jwks import JWKSVerifier
from fastapi_authgate.verifiers.token_cache import TokenCache
from tests.conftest import FixedClock
from tests.tokens import TokenIssuer, build_valid_token, rsa_jwk


def context() -> AuthContext:
    return AuthContext(subject="u", provider="p", credential="cookie")


def test_namespaces_cannot_be_forged_by_prefixing_the_token() -> None:
    assert TokenCache.key("cookie:" + "T") != TokenCache.key("T", b"cookie:")
    assert TokenCache.key("T", b"cookie") != TokenCache.key(":T", b"cookie:")


@pytest.mark.anyio
async def test_a_cached_cookie_is_not_a_bearer_token_with_a_prefix(clock: FixedClock) -> None:
    minter = TokenIssuer(iss="https://static.example", audience=None, clock=clock)
    verifier = JWKSVerifier.from_jwks(
        {"keys": [public_jwk(rsa_jwk())]}, issuer="https://static.example", clock=clock
    )
    token = build_valid_token(minter)
    cached = await verifier.verify(Credentials(cookies={"authgate_session": token}))
    assert cached is not None and cached.credential == "cookie"
    # "cookie:<jws>" is no JWS: it must be parsed (and refused), never served from the cache
    for prefix in ("cookie:", "cookie\0"):
        with pytest.raises(AuthenticationError):
            await verifier.verify(Credentials(bearer=prefix + token))


@given(
    not_before=st.floats(-1e6, 1e6),
    lifetime=st.floats(0, 1e6),
    put_at=st.floats(-1e6, 1e6),
    get_at=st.floats(-2e6, 2e6),
)
def test_never_serves_an_entry_outside_its_window(
    not_before: float, lifetime: float, put_at: float, get_at: float
) -> None:
    cache = TokenCache(4)
    key = cache.key("t")
    expires_at = not_before + lifetime
    cache.put(key, context(), expires_at=expires_at, now=put_at, not_before=not_before)
    hit = cache.get(key, get_at)
    if hit is not None:
        assert not_before <= get_at < expires_at and put_at < expires_at
