"""TokenCache regressions: unambiguous keys, and never an entry outside ``[nbf, exp)``."""

from __future__ import annotations

import math

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


def test_a_full_cache_drops_its_oldest_entries_first() -> None:
    cache = TokenCache(3)
    keys = [cache.key(f"t{i}") for i in range(6)]
    for i, key in enumerate(keys):
        cache.put(key, context(), expires_at=100, now=i)
    assert len(cache) == 3
    assert [cache.get(key, 10) is not None for key in keys] == [False] * 3 + [True] * 3
    cache.put(keys[4], context(), expires_at=200, now=10)  # a refresh keeps its place in line
    cache.put(cache.key("t6"), context(), expires_at=100, now=10)
    assert cache.get(keys[3], 10) is None and cache.get(keys[4], 10) is not None


def test_entries_dropped_on_expiry_do_not_grow_the_queue_without_bound() -> None:
    # every key here expires and is dropped by get() before the cache ever fills: their queued
    # keys must be compacted away, or a long-lived process would keep one per token forever
    cache = TokenCache(8)
    for i in range(10_000):
        key = cache.key(f"short-lived-{i}")
        cache.put(key, context(), expires_at=i + 1, now=i)
        assert cache.get(key, i + 1) is None
    assert len(cache) == 0
    assert len(cache._order) <= 2 * cache.max_size
    fresh = [cache.key(f"kept-{i}") for i in range(8)]
    for key in fresh:
        cache.put(key, context(), expires_at=math.inf, now=0)
    cache.put(cache.key("one-more"), context(), expires_at=math.inf, now=0)
    # the stale keys at the front are skipped: exactly the oldest live entry made room
    assert cache.get(fresh[0], 1) is None
    assert all(cache.get(key, 1) is not None for key in fresh[1:])


def test_clear_forgets_entries_and_their_order() -> None:
    cache = TokenCache(2)
    for name in ("a", "b"):
        cache.put(cache.key(name), context(), expires_at=10, now=0)
    cache.clear()
    assert len(cache) == 0 and not cache._order
    for name in ("c", "d"):
        cache.put(cache.key(name), context(), expires_at=10, now=0)
    assert cache.get(cache.key("c"), 1) is not None and cache.get(cache.key("d"), 1) is not None


def test_lookup_serves_a_token_by_its_bytes_inside_its_window_only() -> None:
    now = [100.0]
    cache = TokenCache(4, clock=lambda: now[0])
    kept = context()
    cache.put(TokenCache.key("tok", b"bearer"), kept, expires_at=200, now=100, not_before=90)
    assert cache.lookup(b"tok") is kept
    assert cache.lookup(b"tok", b"cookie") is None  # another namespace is another key
    now[0] = 80.0
    assert cache.lookup(b"tok") is None and len(cache) == 1  # not yet valid: kept
    now[0] = 200.0
    assert cache.lookup(b"tok") is None and len(cache) == 0  # expired: dropped


def test_a_missed_key_is_handed_over_once_and_only_for_the_same_bytes() -> None:
    cache = TokenCache(4)
    assert cache.lookup(b"fresh") is None
    assert cache.missed_key(b"fresh", b"cookie") is None  # same bytes, other namespace
    assert cache.lookup(b"fresh") is None
    assert cache.missed_key(b"other", b"bearer") is None  # another token: the slot is emptied
    assert cache.missed_key(b"fresh", b"bearer") is None
    assert cache.lookup(b"fresh") is None
    assert cache.missed_key(b"fresh", b"bearer") == TokenCache.key("fresh", b"bearer")
    assert cache.missed_key(b"fresh", b"bearer") is None  # taken once
    cache.put(TokenCache.key("hit", b"bearer"), context(), expires_at=math.inf, now=0)
    assert cache.lookup(b"fresh") is None and cache.lookup(b"hit") is not None
    assert cache.missed_key(b"fresh", b"bearer") is not None  # a hit leaves the last miss
    assert cache.lookup(b"fresh") is None
    cache.clear()
    assert cache.missed_key(b"fresh", b"bearer") is None


@pytest.mark.anyio
async def test_a_miss_on_one_token_never_files_another_token_under_its_key() -> None:
    from fastapi_authgate.providers.dev import DevIssuer

    issuer = DevIssuer()
    verifier = issuer.verifier()
    first, second = issuer.issue("ann"), issuer.issue("bob")
    assert verifier.cached_bearer(first.encode()) is None  # the miss leaves first's digest
    context = await verifier.verify(Credentials(bearer=second))
    assert context is not None and context.subject == "bob"
    assert verifier.cached_bearer(first.encode()) is None
    hit = verifier.cached_bearer(second.encode())
    assert hit is not None and hit.subject == "bob"
