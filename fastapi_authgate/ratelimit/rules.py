"""Rate-limit rules and the GCRA arithmetic: pure functions, no store, no clock, no I/O.

**Why GCRA** (the generic cell rate algorithm, a leaky bucket run as a virtual scheduler): a rule
``N/period`` lets one request through every ``period / N`` seconds with a burst of up to ``N`` at
once. Its whole state per key is one number, the theoretical arrival time (TAT), so a step is a
single read-modify-write that one Lua script or one locked dict update does atomically; it has no
window boundary where a fixed window lets ``2N`` through; a drained key is indistinguishable from a
new one, so stores may forget it; and ``remaining``, ``retry_after`` and ``reset_after`` come out of
the arithmetic exactly, which is what the ``Retry-After`` and ``RateLimit`` headers need.

A worked timeline for ``10/minute`` (one request per 6 s, burst 10), all at t=0 unless stated:
request 1 is allowed with 9 remaining and the bucket drains in 6 s; request 10 is allowed with 0
remaining, draining in 60 s; request 11 is refused with ``Retry-After: 6``; at t=6 one more fits.

This module is kept apart from the limiter because every store runs :func:`gcra_step` atomically
(the memory store calls it under a lock; the Lua script in ``lua/gcra.lua`` is the same
arithmetic), so stores depend on these few lines and not on the limiter around them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from fastapi_authgate.context import Decision
from fastapi_authgate.errors import ConfigurationError

__all__ = ["EPSILON", "Rate", "gcra_step", "parse_rule", "rule_name"]

EPSILON = 1e-5
"""Slack in seconds that absorbs float rounding: times near 1.8e9 s carry ~2.4e-7 s of it."""

_UNITS: dict[str, tuple[int, str]] = {}
for _names, _seconds, _canonical in (
    (("s", "sec", "secs", "second", "seconds"), 1, "second"),
    (("m", "min", "mins", "minute", "minutes"), 60, "minute"),
    (("h", "hr", "hrs", "hour", "hours"), 3600, "hour"),
    (("d", "day", "days"), 86400, "day"),
    (("w", "week", "weeks"), 604800, "week"),
):
    for _name in _names:
        _UNITS[_name] = (_seconds, _canonical)
_CANONICAL_PERIODS = {seconds: canonical for seconds, canonical in _UNITS.values()}

_RULE = re.compile(r"^\s*(\d+)\s*(?:/|per\s)\s*(\d+)?\s*([a-z]+)\s*$", re.IGNORECASE)
_SEPARATORS = re.compile(r"[;,|]")
_RULE_HELP = "expected e.g. '10/minute', '100/hour;5/second', '10 per minute' or '5/30 seconds'"


def rule_name(limit: int, period: float) -> str:
    """The canonical text of a rule: ``10/minute`` for a whole unit, else ``5/30s``."""
    canonical = _CANONICAL_PERIODS.get(int(period)) if period == int(period) else None
    if canonical is not None:
        return f"{limit}/{canonical}"
    return f"{limit}/{period:g}s"


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``limit`` requests per ``period`` seconds, in a burst of up to ``limit``.

    ``name`` is the canonical text, also the policy name in headers (``10/minute``, ``5/30s``);
    it is computed once here because the limiter puts it in every bucket key.
    """

    limit: int
    period: int
    name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", rule_name(self.limit, self.period))


def parse_rule(text: str) -> tuple[Rate, ...]:
    """Parse ``"10/minute"``, ``"100/hour;5/second"``, ``"10 per minute"``, ``"5/30 seconds"``.

    Rules are separated by ``;`` (or ``,``/``|``); units are second, minute, hour, day and week
    (singular, plural or abbreviated). A repeated rule counts once.

    Raises:
        ConfigurationError: the text is empty, a part does not parse, or a number is zero.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError(f"empty rate-limit rule {text!r}: {_RULE_HELP}")
    rates: list[Rate] = []
    for part in _SEPARATORS.split(text):
        match = _RULE.match(part)
        if match is None:
            raise ConfigurationError(
                f"bad rate-limit rule {part.strip()!r} in {text!r}: {_RULE_HELP}"
            )
        limit, multiple, unit = int(match[1]), match[2], match[3].lower()
        if unit not in _UNITS:
            raise ConfigurationError(
                f"unknown time unit {unit!r} in rate-limit rule {text!r}: {_RULE_HELP}"
            )
        count = 1 if multiple is None else int(multiple)
        if limit < 1 or count < 1:
            raise ConfigurationError(f"rate-limit rule {text!r} must use numbers of at least 1")
        rate = Rate(limit, count * _UNITS[unit][0])
        if rate not in rates:
            rates.append(rate)
    return tuple(rates)


def gcra_step(
    tat: float, now: float, limit: int, period: float, cost: int
) -> tuple[Decision, float | None]:
    """One GCRA step on a bucket whose stored TAT is ``tat`` (0 for a new key).

    Returns the decision and the TAT to store (``None``: leave the bucket as it is). ``cost`` 0
    asks whether one more request would fit, without charging; a negative ``cost`` refunds
    (failure-only rules charge up front and give the charge back when the response is not a
    failure), never taking a bucket below empty.
    """
    interval = period / limit
    used = tat - now if tat > now else 0.0
    if cost < 0:  # a refund: give back what an earlier charge took, never below empty
        after = max(0.0, used + cost * interval)
        remaining = min(limit, int((period - after + EPSILON) / interval))
        return Decision(True, limit, remaining, after, 0.0, period), (
            now + after if tat > now else None
        )
    if cost == 0:
        remaining = min(limit, max(0, math.floor((period - used + EPSILON) / interval)))
        if remaining >= 1:
            return Decision(True, limit, remaining, used, 0.0, period), None
        return Decision(False, limit, 0, used, max(0.0, used + interval - period), period), None
    after = used + cost * interval
    if after - period > EPSILON:
        remaining = min(limit, max(0, math.floor((period - used + EPSILON) / interval)))
        return Decision(False, limit, remaining, used, after - period, period), None
    # after <= period + EPSILON here, so the quotient is >= 0 and int() is floor().
    remaining = int((period - after + EPSILON) / interval)
    return Decision(True, limit, remaining, after, 0.0, period), now + after
