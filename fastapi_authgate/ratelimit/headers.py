"""The ``RateLimit``, ``RateLimit-Policy`` and ``Retry-After`` headers of rate-limit decisions.

Headers follow draft-ietf-httpapi-ratelimit-headers-11: ``RateLimit-Policy`` lists every rule of a
route (``"default";q=10;w=60`` for a single rule; several rules are named after themselves, e.g.
``"100/hour";q=100;w=3600, "5/second";q=5;w=1``) and ``RateLimit`` reports the most restrictive one
(fewest remaining, then the longest wait): ``r`` is the remaining quota and ``t`` the whole seconds
until the quota is fully restored. A refusal adds ``Retry-After``: whole seconds, rounded up, >= 1.

This is kept apart from the limiter because it is pure formatting of :class:`Decision` objects
(the limiter never looks at headers, and the dependency that sends them never touches a store),
and named after the draft it implements so the wire format has one home.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fastapi_authgate.context import Decision
from fastapi_authgate.ratelimit.rules import EPSILON, Rate, rule_name

__all__ = ["HeaderTemplate", "rate_limit_headers", "retry_after_seconds"]


def _ceil(seconds: float) -> int:
    return max(0, math.ceil(seconds - EPSILON))


def retry_after_seconds(decisions: Sequence[Decision]) -> int:
    """Whole seconds (>= 1) until every refusing rule lets a request through again."""
    return max(1, max((_ceil(d.retry_after) for d in decisions if not d.allowed), default=1))


_policy_cache: dict[tuple[tuple[int, float], ...], tuple[str, tuple[str, ...]]] = {}
_POLICY_CACHE_MAX = 1024


def _policies(decisions: Sequence[Decision]) -> tuple[str, tuple[str, ...]]:
    return _policies_of(tuple((d.limit, d.period) for d in decisions))


def _policies_of(shape: tuple[tuple[int, float], ...]) -> tuple[str, tuple[str, ...]]:
    cached = _policy_cache.get(shape)
    if cached is None:
        if len(shape) == 1:
            names: tuple[str, ...] = ("default",)
        else:
            names = tuple(rule_name(limit, period) for limit, period in shape)
        header = ", ".join(
            f'"{name}";q={limit};w={_ceil(period)}'
            for name, (limit, period) in zip(names, shape, strict=True)
        )
        cached = (header, names)
        if len(_policy_cache) < _POLICY_CACHE_MAX:
            _policy_cache[shape] = cached
    return cached


def _severity(decision: Decision) -> tuple[int, float, float]:
    return (decision.remaining, -decision.retry_after, -decision.reset_after)


def rate_limit_headers(decisions: Sequence[Decision]) -> dict[str, str]:
    """``RateLimit-Policy`` and ``RateLimit`` (plus ``Retry-After`` on refusal) for one request.

    Returns an empty dict for no decisions (a store that failed open has nothing to report).
    """
    if not decisions:
        return {}
    policy, names = _policies(decisions)
    if len(decisions) == 1:
        index = 0
    else:
        index = min(range(len(decisions)), key=lambda i: _severity(decisions[i]))
    worst = decisions[index]
    headers = {
        "RateLimit-Policy": policy,
        "RateLimit": f'"{names[index]}";r={worst.remaining};t={_ceil(worst.reset_after)}',
    }
    for decision in decisions:
        if not decision.allowed:
            headers["Retry-After"] = str(retry_after_seconds(decisions))
            break
    return headers


class HeaderTemplate:
    """The headers of one route's rules with their fixed parts built once, for the hot path.

    :meth:`allowed` gives exactly the (lower-cased, encoded) headers :func:`rate_limit_headers`
    gives for an allowed request, without building a dict per request: ``RateLimit-Policy`` depends
    only on the rules, so it is encoded here, and the rule names of ``RateLimit`` are looked up
    from the same table.
    """

    __slots__ = ("_names", "_policy")

    def __init__(self, rates: Sequence[Rate]) -> None:
        policy, self._names = _policies_of(tuple((rate.limit, rate.period) for rate in rates))
        self._policy = (b"ratelimit-policy", policy.encode("latin-1"))

    def allowed(self, decisions: Sequence[Decision]) -> list[tuple[bytes, bytes]]:
        """``RateLimit-Policy`` and ``RateLimit`` for an allowed request (one decision per rule)."""
        if len(decisions) == 1:
            index = 0
        else:
            index = min(range(len(decisions)), key=lambda i: _severity(decisions[i]))
        worst = decisions[index]
        reset = max(0, math.ceil(worst.reset_after - EPSILON))  # _ceil, inlined
        value = f'"{self._names[index]}";r={worst.remaining};t={reset}'
        return [self._policy, (b"ratelimit", value.encode("latin-1"))]
