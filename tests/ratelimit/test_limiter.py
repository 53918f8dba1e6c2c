"""The limiter's deadline, failure modes, settings and in-process fast path."""

from __future__ import annotations

import logging

import anyio
import pytest

from fastapi_authgate.context import Decision
from fastapi_authgate.errors import ConfigurationError, ProviderError
from fastapi_authgate.ratelimit.limiter import RateLimiter
from fastapi_authgate.ratelimit.memory_store import MemoryStore
from fastapi_authgate.ratelimit.rules import parse_rule
from fastapi_authgate.settings import AuthGateSettings
from tests.conftest import FixedClock


class BrokenStore:
    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.calls = 0

    async def hit(self, key: str, *, limit: int, period: float, cost: int = 1) -> Decision:
        self.calls += 1
        if self.hang:
            await anyio.sleep(10)
        raise ProviderError("store down")

    async def hit_many(self, buckets: object, *, cost: int = 1) -> list[Decision]:
        return [await self.hit("k", limit=1, period=1)]

    async def aclose(self) -> None:
        pass


@pytest.mark.anyio
async def test_fail_open_lets_requests_through_counts_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = BrokenStore()
    limiter = RateLimiter(store, failure_mode="open", breaker_failures=10)
    rates = parse_rule("1/minute")
    with caplog.at_level(logging.WARNING, logger="fastapi_authgate.ratelimit.limiter"):
        for _ in range(5):
            assert await limiter.check("k", rates) == []
    assert limiter.stats.store_failures == 5 and store.calls == 5
    lines = [r for r in caplog.records if "rate-limit store" in r.getMessage()]
    assert len(lines) == 1
    assert "letting requests through" in lines[0].getMessage()


@pytest.mark.anyio
async def test_fail_closed_raises_provider_error() -> None:
    limiter = RateLimiter(BrokenStore(), failure_mode="closed")
    with pytest.raises(ProviderError) as info:
        await limiter.check("k", parse_rule("1/minute;5/second"))
    assert info.value.retry_after >= 1
    assert limiter.stats.store_failures == 1


@pytest.mark.anyio
async def test_a_slow_store_misses_its_deadline() -> None:
    limiter = RateLimiter(BrokenStore(hang=True), failure_mode="open", store_timeout=0.01)
    with anyio.fail_after(2):
        assert await limiter.check("k", parse_rule("1/minute")) == []
    assert limiter.stats.store_failures == 1
    assert limiter.stats.deadline_misses == 1


def test_limiter_validates_its_settings() -> None:
    with pytest.raises(ConfigurationError, match="FAILURE_MODE"):
        RateLimiter(failure_mode="sideways")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="TIMEOUT"):
        RateLimiter(store_timeout=0)


def test_from_settings_defaults_to_memory() -> None:
    limiter = RateLimiter.from_settings(
        AuthGateSettings(rate_limit_failure_mode="closed", rate_limit_store_timeout_seconds=0.2)
    )
    assert isinstance(limiter.store, MemoryStore)
    assert limiter.failure_mode == "closed"
    assert limiter.store_timeout == 0.2


@pytest.mark.anyio
async def test_limiter_uses_its_clock_for_the_default_store(clock: FixedClock) -> None:
    limiter = RateLimiter(clock=clock)
    rates = parse_rule("1/minute")
    assert (await limiter.check("k", rates))[0].allowed
    assert not (await limiter.check("k", rates))[0].allowed
    clock.advance(60)
    assert (await limiter.check("k", rates))[0].allowed
    await limiter.aclose()


@pytest.mark.anyio
async def test_an_in_process_store_is_called_without_a_deadline_or_coroutine(
    clock: FixedClock,
) -> None:
    limiter = RateLimiter(clock=clock, store_timeout=1e-9)
    assert limiter.in_process
    rates = parse_rule("1/minute")
    assert limiter.check_now("k", rates)[0].allowed
    assert not (await limiter.check("k", rates))[0].allowed  # no deadline to miss
    assert limiter.stats.store_failures == 0


@pytest.mark.anyio
async def test_assigning_a_store_rereads_whether_it_is_in_process(clock: FixedClock) -> None:
    limiter = RateLimiter(clock=clock)
    limiter.store = BrokenStore()
    assert not limiter.in_process
    with pytest.raises(TypeError, match="await check"):
        limiter.check_now("k", parse_rule("1/minute"))
    assert (await limiter.check("k", parse_rule("1/minute")))[0].allowed  # local fallback
    assert limiter.stats.local_decisions == 1
    limiter.store = MemoryStore(clock=clock)
    assert limiter.in_process and limiter.check_now("k", parse_rule("1/minute"))[0].allowed


def test_a_failing_in_process_store_fails_open_or_closed() -> None:
    def broken_clock() -> float:
        raise OSError("no clock")

    rates = parse_rule("1/minute")
    assert RateLimiter(MemoryStore(clock=broken_clock)).check_now("k", rates) == []
    closed = RateLimiter(MemoryStore(clock=broken_clock), failure_mode="closed")
    with pytest.raises(ProviderError):
        closed.check_now("k", rates)
    assert closed.stats.store_failures == 1
