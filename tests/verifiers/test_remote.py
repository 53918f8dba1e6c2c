"""RemoteVerificationCache: hashed keys, bounded TTL, single flight, errors never cached."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import anyio
import pytest

from fastapi_authgate.context import AuthContext, User
from fastapi_authgate.errors import AuthenticationError, ConfigurationError, ProviderError
from fastapi_authgate.verifiers.remote import RemoteVerificationCache, UpstreamCall
from fastapi_authgate.verifiers.remote_store import decode_result, encode_result
from tests.conftest import FixedClock

pytestmark = pytest.mark.anyio

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1XzEifQ.c2lnbmF0dXJl"


def context(subject: str = "u_1", *, expires_at: float | None = None) -> AuthContext:
    return AuthContext(
        subject=subject,
        provider="remote-test",
        credential="bearer",
        claims={"userId": subject, "nested": {"a": [1, 2]}},
        expires_at=None if expires_at is None else datetime.fromtimestamp(expires_at, UTC),
        user=User(id=subject, email=f"{subject}@example.com", product_access=frozenset({"pro"})),
    )


class Upstream:
    """Counts calls; answers after ``delay`` seconds, or raises ``error``."""

    def __init__(self, *, delay: float = 0.0, error: Exception | None = None) -> None:
        self.calls = 0
        self.delay = delay
        self.error = error
        self.answer = context()

    async def __call__(self) -> AuthContext:
        self.calls += 1
        if self.delay:
            await anyio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.answer


async def test_hit_miss_and_expiry_with_an_injected_clock(clock: FixedClock) -> None:
    cache = RemoteVerificationCache(namespace="t", ttl=30, clock=clock)
    upstream = Upstream()
    key = cache.key(TOKEN)
    assert cache.peek(key) is None
    first = await cache.verify(key, upstream)
    assert first is upstream.answer and upstream.calls == 1
    clock.advance(29.9)
    assert cache.peek(key) is first
    assert await cache.verify(key, upstream) is first and upstream.calls == 1
    clock.advance(0.1)  # exactly ttl: gone
    assert cache.peek(key) is None
    await cache.verify(key, upstream)
    assert upstream.calls == 2


async def test_never_cached_past_the_credential_or_the_context(clock: FixedClock) -> None:
    cache = RemoteVerificationCache(namespace="t", ttl=30, clock=clock)
    upstream = Upstream()
    key = cache.key(TOKEN)
    await cache.verify(key, upstream, not_after=clock() + 5)
    clock.advance(4.9)
    assert cache.peek(key) is not None
    clock.advance(0.1)
    assert cache.peek(key) is None

    upstream.answer = context(expires_at=clock() + 2)
    other = cache.key(TOKEN + "x")
    await cache.verify(other, upstream)
    clock.advance(2)
    assert cache.peek(other) is None

    # a credential already past its bound is answered but not remembered
    upstream.answer = context()
    late = cache.key(TOKEN + "y")
    await cache.verify(late, upstream, not_after=clock() - 1)
    assert cache.peek(late) is None and len(cache) == 0


async def test_keys_are_hashes_scoped_by_namespace() -> None:
    live = RemoteVerificationCache(namespace="tiun:live")
    sandbox = RemoteVerificationCache(namespace="tiun:sandbox")
    key = live.key(TOKEN)
    assert len(key) == 32 and TOKEN.encode() not in key
    assert key == live.key(TOKEN.encode())
    assert live.lookup(TOKEN.encode()) is None
    assert key != sandbox.key(TOKEN)
    assert live.key("a") != live.key("a\0")
    answer = await live.verify(key, Upstream())
    assert live.lookup(TOKEN.encode()) is answer and sandbox.lookup(TOKEN.encode()) is None
    assert all(TOKEN.encode() not in k for k in live._local._entries)
    with pytest.raises(ConfigurationError):
        RemoteVerificationCache(namespace="bad\0")
    with pytest.raises(ConfigurationError):
        RemoteVerificationCache(namespace="t", ttl=-1)


async def test_ttl_zero_caches_nothing_but_still_shares_calls() -> None:
    cache = RemoteVerificationCache(namespace="t", ttl=0)
    upstream = Upstream(delay=0.05)
    key = cache.key(TOKEN)
    results = await asyncio.gather(*(cache.verify(key, upstream) for _ in range(10)))
    assert upstream.calls == 1 and all(r is upstream.answer for r in results)
    await cache.verify(key, upstream)
    assert upstream.calls == 2


async def test_fifty_concurrent_lookups_make_one_call() -> None:
    cache = RemoteVerificationCache(namespace="t")
    upstream = Upstream(delay=0.05)
    key = cache.key(TOKEN)
    results = await asyncio.gather(*(cache.verify(key, upstream) for _ in range(50)))
    assert upstream.calls == 1
    assert all(result is upstream.answer for result in results)
    assert cache.upstream_calls == 1


@pytest.mark.parametrize("error", [ProviderError(), AuthenticationError("refused")])
async def test_a_failure_wakes_every_waiter_and_is_not_cached(error: Exception) -> None:
    cache = RemoteVerificationCache(namespace="t")
    upstream = Upstream(delay=0.05, error=error)
    key = cache.key(TOKEN)
    outcomes = await asyncio.gather(
        *(cache.verify(key, upstream) for _ in range(20)), return_exceptions=True
    )
    assert upstream.calls == 1
    assert all(isinstance(outcome, type(error)) for outcome in outcomes)
    assert cache.peek(key) is None
    upstream.error = None
    assert await cache.verify(key, upstream) is upstream.answer
    assert upstream.calls == 2


async def test_a_cancelled_waiter_leaves_the_call_running_for_the_others() -> None:
    cache = RemoteVerificationCache(namespace="t")
    release = asyncio.Event()
    calls = 0
    answer = context()

    async def upstream() -> AuthContext:  # answers only once the first waiter has been cancelled
        nonlocal calls
        calls += 1
        await release.wait()
        return answer

    key = cache.key(TOKEN)
    quitter = asyncio.ensure_future(cache.verify(key, upstream))
    stayers = [asyncio.ensure_future(cache.verify(key, upstream)) for _ in range(5)]
    await asyncio.sleep(0.01)
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    release.set()
    with anyio.fail_after(5):
        results = await asyncio.gather(*stayers)
    assert calls == 1 and all(r is answer for r in results)
    assert cache.peek(key) is answer


async def test_a_waiter_with_its_own_deadline_does_not_cut_the_call_short() -> None:
    cache = RemoteVerificationCache(namespace="t")
    upstream = Upstream(delay=0.2)
    key = cache.key(TOKEN)
    patient = asyncio.ensure_future(cache.verify(key, upstream))
    with pytest.raises(TimeoutError), anyio.fail_after(0.02):
        await cache.verify(key, upstream)
    with anyio.fail_after(5):
        assert await patient is upstream.answer
    assert upstream.calls == 1


async def test_all_waiters_gone_still_fills_the_cache_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = RemoteVerificationCache(namespace="t")
    failing = Upstream(delay=0.05, error=ProviderError())
    key = cache.key(TOKEN)
    waiter = asyncio.ensure_future(cache.verify(key, failing))
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.sleep(0.1)
    assert failing.calls == 1 and not cache._flights  # the flight landed and was cleaned up
    assert "never retrieved" not in caplog.text


async def test_bounded_with_oldest_evicted(clock: FixedClock) -> None:
    cache = RemoteVerificationCache(namespace="t", max_size=3, clock=clock)
    upstream = Upstream()
    keys = [cache.key(f"{TOKEN}{i}") for i in range(5)]
    for key in keys:
        await cache.verify(key, upstream)
    assert len(cache) == 3
    assert cache.peek(keys[0]) is None and cache.peek(keys[1]) is None
    assert all(cache.peek(key) is not None for key in keys[2:])


async def test_hundreds_of_lookups_on_a_saturated_loop_make_one_call_per_key() -> None:
    """600 concurrent lookups over 20 keys while another task hogs the loop: 20 calls."""
    cache = RemoteVerificationCache(namespace="t", max_size=10)
    calls: dict[str, int] = {}

    def call_for(subject: str) -> UpstreamCall:
        async def call() -> AuthContext:
            calls[subject] = calls.get(subject, 0) + 1
            await asyncio.sleep(0.05)
            return context(subject)

        return call

    stop = asyncio.Event()

    async def hog() -> None:  # keeps the loop busy in 5 ms slices
        while not stop.is_set():
            end = time.perf_counter() + 0.005
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0)

    hogger = asyncio.ensure_future(hog())
    subjects = [f"user{n}" for n in range(20)]

    async def lookup(i: int) -> tuple[str, AuthContext]:
        subject = subjects[i % len(subjects)]
        await asyncio.sleep(0)
        result = await cache.verify(cache.key("tok-" + subject), call_for(subject))
        return subject, result

    try:
        with anyio.fail_after(60):
            results = await asyncio.gather(*(lookup(i) for i in range(600)))
    finally:
        stop.set()
        await hogger
    assert all(result.subject == subject for subject, result in results)
    assert calls == dict.fromkeys(subjects, 1)
    assert len(cache) <= 10 and not cache._flights


def test_the_json_form_round_trips_and_refuses_what_it_did_not_write() -> None:
    original = context(expires_at=1_900_000_000.0)
    text = encode_result(original, 1_800_000_030.0)
    assert text is not None and TOKEN not in text
    decoded = decode_result(text, 1_800_000_000.0)
    assert decoded is not None
    again, expires = decoded
    assert expires == 1_800_000_030.0
    assert again == original
    assert decode_result(text, 1_800_000_030.0) is None  # dead
    for garbage in ["", "[]", "{}", "null", '{"v": 2}', text.replace('"bearer"', '"root"'), "x"]:
        assert decode_result(garbage, 0) is None
    unserialisable = AuthContext(
        subject="u", provider="p", credential="bearer", claims={"when": datetime.now(UTC)}
    )
    assert encode_result(unserialisable, 1.0) is None
