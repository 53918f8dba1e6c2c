"""Rule parsing, rule names and the pure GCRA step."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastapi_authgate.errors import ConfigurationError
from fastapi_authgate.ratelimit.limiter import RateLimiter
from fastapi_authgate.ratelimit.rules import Rate, gcra_step, parse_rule


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


def test_gcra_step_is_pure() -> None:
    decision, tat = gcra_step(0.0, 100.0, 10, 60, 1)
    assert decision.allowed and decision.remaining == 9 and tat == 106.0
    refused, untouched = gcra_step(160.0, 100.0, 10, 60, 1)
    assert not refused.allowed and untouched is None and refused.retry_after == 6.0


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_rule_text_parses_or_is_a_configuration_error(text: str) -> None:
    try:
        rates = parse_rule(text)
    except ConfigurationError:
        return
    assert rates
    for rate in rates:
        assert rate.limit >= 1
        assert rate.period > 0


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=10_000),
    unit=st.sampled_from(["second", "minute", "hour", "day"]),
    spaces=st.sampled_from(["", " ", "  "]),
)
def test_well_formed_rules_round_trip(limit: int, unit: str, spaces: str) -> None:
    periods = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
    assert parse_rule(f"{limit}{spaces}/{spaces}{unit}") == (Rate(limit, periods[unit]),)
