"""Rule parsing, header building and the limiter's deadline and failure modes."""

from __future__ import annotations

import logging

import anyio
import pytest

from fastapi_authgate.context import Decision
from fastapi_authgate.errors import ConfigurationError, ProviderError
from fastapi_authgate.ratelimit.limiter import (
    HeaderTemplate,
    Rate,
    RateLimiter,
    gcra_step,
    parse_rule,
    rate_limit_headers,
    retry_after_seconds,
)
from fastapi_authgate.ratelimit.memory_store import MemoryStore
from fastapi_authgate.settings import AuthGateSettings
from tests.conftest import FixedClock


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10/minute", (Rate(10, 60),)),
        ("10 / Minute", (Rate(10, 60),)),
        ("10 per minute", (Rate(10, 60),)),
        ("100/hour;5/second", (Rate(100, 3600), Rate(5, 1))),
        ("100/hour, 5/second", (Rate(100, 3600), Rate(5, 1))),
        ("5/30 seconds", (Rate(5, 30),)),
        ("5/30s", (Rate(5, 30),)),
        ("1000/day", (Rate(1000, 86400),)),
        ("3/2 hours", (Rate(3, 7200),)),
        ("7/week", (Rate(7, 604800),)),
        ("5/second;5/second", (Rate(5, 1),)),
    ],
)
def test_rules_parse(text: str, expected: tuple[Rate, ...]) -> None:
    assert parse_rule(text) == expected
    assert RateLimiter.parse_rule(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "ten/minute",
        "10",
        "10/",
        "/minute",
        "10/fortnight",
        "0/minute",
        "5/0 seconds",
        "10/minute;",
        "-1/minute",
        "10//minute",
        "10 every minute",
        "1.5/second",
        "10/minute extra",
    ],
)
def test_bad_rules_raise_configuration_error(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"rule|unit|at least"):
        parse_rule(text)


def test_rate_names() -> None:
    assert [r.name for r in parse_rule("1/second;2/minute;3/hour;4/day;5/30s;6/2 hours")] == [
        "1/second",
        "2/minute",
        "3/hour",
        "4/day",
        "5/30s",
        "6/7200s",
    ]


def _decision(**kwargs: float) -> Decision:
    values: dict[str, float] = {
        "allowed": True,
        "limit": 10,
        "remaining": 5,
        "reset_after": 30,
        "retry_after": 0,
        "period": 60,
    }
    values.update(kwargs)
    return Decision(
        allowed=bool(values["allowed"]),
        limit=int(values["limit"]),
        remaining=int(values["remaining"]),
        reset_after=values["reset_after"],
        retry_after=values["retry_after"],
        period=values["period"],
    )


def test_headers_for_one_rule() -> None:
    assert rate_limit_headers([_decision(limit=100, remaining=50, reset_after=30)]) == {
        "RateLimit-Policy": '"default";q=100;w=60',
        "RateLimit": '"default";r=50;t=30',
    }


def test_headers_round_up_and_add_retry_after_on_refusal() -> None:
    refused = _decision(allowed=False, remaining=0, reset_after=59.2, retry_after=0.4)
    assert rate_limit_headers([refused]) == {
        "RateLimit-Policy": '"default";q=10;w=60',
        "RateLimit": '"default";r=0;t=60',
        "Retry-After": "1",
    }
    # Float noise does not push a whole second up.
    noisy = _decision(allowed=False, remaining=0, reset_after=60.0000002, retry_after=6.0000002)
    assert rate_limit_headers([noisy])["Retry-After"] == "6"
    assert rate_limit_headers([noisy])["RateLimit"] == '"default";r=0;t=60'


def test_headers_for_several_rules_name_each_and_report_the_tightest() -> None:
    hourly = _decision(limit=100, period=3600, remaining=95, reset_after=180)
    burst = _decision(allowed=False, limit=5, period=1, remaining=0, reset_after=1, retry_after=0.2)
    headers = rate_limit_headers([hourly, burst])
    assert headers == {
        "RateLimit-Policy": '"100/hour";q=100;w=3600, "5/second";q=5;w=1',
        "RateLimit": '"5/second";r=0;t=1',
        "Retry-After": "1",
    }
    assert rate_limit_headers([]) == {}


def test_retry_after_is_the_longest_wait_and_at_least_one() -> None:
    assert retry_after_seconds([_decision(allowed=False, retry_after=0.01)]) == 1
    assert (
        retry_after_seconds(
            [_decision(allowed=False, retry_after=2.5), _decision(allowed=False, retry_after=7)]
        )
        == 7
    )
    assert retry_after_seconds([_decision()]) == 1


def test_gcra_step_is_pure() -> None:
    decision, tat = gcra_step(0.0, 100.0, 10, 60, 1)
    assert decision.allowed and decision.remaining == 9 and tat == 106.0
    refused, untouched = gcra_step(160.0, 100.0, 10, 60, 1)
    assert not refused.allowed and untouched is None and refused.retry_after == 6.0


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
    limiter = RateLimiter(BrokenStore(), failure_mode="open")
    rates = parse_rule("1/minute")
    with caplog.at_level(logging.WARNING, logger="fastapi_authgate.ratelimit.limiter"):
        for _ in range(5):
            assert await limiter.check("k", rates) == []
    assert limiter.stats.store_failures == 5
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
    limiter = RateLimiter(BrokenStore(hang=True), store_timeout=0.01)
    with anyio.fail_after(2):
        assert await limiter.check("k", parse_rule("1/minute")) == []
    assert limiter.stats.store_failures == 1


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


@pytest.mark.parametrize("rule", ["10/minute", "100/hour;5/second", "1000000000/second"])
def test_header_template_matches_rate_limit_headers(rule: str) -> None:
    rates = parse_rule(rule)
    store = MemoryStore(clock=FixedClock())
    limiter = RateLimiter(store)
    for _ in range(3):
        decisions = limiter.check_now("k", rates)
        assert all(d.allowed for d in decisions)
        expected = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in rate_limit_headers(decisions).items()
        ]
        assert HeaderTemplate(rates).allowed(decisions) == expected


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
    assert await limiter.check("k", parse_rule("1/minute")) == []
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
