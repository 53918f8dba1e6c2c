"""The RateLimit, RateLimit-Policy and Retry-After headers, and their hot-path template."""

from __future__ import annotations

import pytest

from fastapi_authgate.context import Decision
from fastapi_authgate.ratelimit.headers import (
    HeaderTemplate,
    rate_limit_headers,
    retry_after_seconds,
)
from fastapi_authgate.ratelimit.limiter import RateLimiter
from fastapi_authgate.ratelimit.memory_store import MemoryStore
from fastapi_authgate.ratelimit.rules import parse_rule
from tests.conftest import FixedClock


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
