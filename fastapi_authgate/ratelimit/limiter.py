"""Rate-limit rules, the GCRA arithmetic, the limiter and the rate-limit headers.

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

The limiter decides what to do around the store (deadlines, failing open or closed, logging); the
store runs :func:`gcra_step` atomically (the Lua script in ``lua/gcra.lua`` is the same arithmetic).

Headers follow draft-ietf-httpapi-ratelimit-headers-11: ``RateLimit-Policy`` lists every rule of a
route (``"default";q=10;w=60`` for a single rule; several rules are named after themselves, e.g.
``"100/hour";q=100;w=3600, "5/second";q=5;w=1``) and ``RateLimit`` reports the most restrictive one
(fewest remaining, then the longest wait): ``r`` is the remaining quota and ``t`` the whole seconds
until the quota is fully restored. A refusal adds ``Retry-After``: whole seconds, rounded up, >= 1.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, cast

import anyio

from fastapi_authgate.context import Decision
from fastapi_authgate.errors import ConfigurationError, ProviderError
from fastapi_authgate.protocols import Clock, RateLimitStore

if TYPE_CHECKING:
    from fastapi_authgate.settings import AuthGateSettings

__all__ = [
    "EPSILON",
    "FailureMode",
    "HeaderTemplate",
    "InProcessStore",
    "LimiterStats",
    "Rate",
    "RateLimiter",
    "gcra_step",
    "parse_rule",
    "rate_limit_headers",
    "retry_after_seconds",
]

logger = logging.getLogger(__name__)

FailureMode = Literal["open", "closed"]

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


def _rule_name(limit: int, period: float) -> str:
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
        object.__setattr__(self, "name", _rule_name(self.limit, self.period))


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
    asks whether one more request would fit, without charging.
    """
    interval = period / limit
    used = tat - now if tat > now else 0.0
    if cost <= 0:
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
            names = tuple(_rule_name(limit, period) for limit, period in shape)
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


@dataclass(slots=True)
class LimiterStats:
    """Counters an operator can export: they only ever rise."""

    store_failures: int = 0
    refusals: int = 0
    shadow_refusals: int = 0


class _ThrottledLog:
    """At most one line per ``interval`` seconds; the lines in between are counted, not lost."""

    __slots__ = ("interval", "last", "suppressed")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = -math.inf
        self.suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            self.suppressed += 1
            return
        suppressed, self.suppressed, self.last = self.suppressed, 0, now
        if suppressed:
            logger.warning(message + " (%d similar lines suppressed)", *args, suppressed)
        else:
            logger.warning(message, *args)


class InProcessStore(RateLimitStore, Protocol):
    """A :class:`RateLimitStore` that answers without waiting, as the memory store does.

    A store declares it with a true ``in_process`` attribute and the two synchronous methods
    below (same arguments and answers as ``hit``/``hit_many``). The limiter then calls them
    directly: no deadline (an in-process step cannot be slow, so ``anyio.fail_after`` around it
    would be pure overhead) and no coroutine per call.
    """

    in_process: bool

    def hit_now(self, key: str, limit: int, period: float, cost: int = 1) -> Decision: ...

    def hit_many_now(
        self, buckets: Sequence[tuple[str, int, float]], cost: int = 1
    ) -> list[Decision]: ...


def _in_process(store: RateLimitStore) -> InProcessStore | None:
    if getattr(store, "in_process", False) is True:
        return cast(InProcessStore, store)
    return None


class RateLimiter:
    """Runs rate-limit checks against a store, within a deadline, failing open or closed.

    Args:
        store: where buckets live; default a fresh :class:`MemoryStore` using ``clock``.
        failure_mode: ``"open"`` lets requests through when the store fails or misses its deadline
            (counted in ``stats.store_failures`` and logged at most once per ``log_interval``);
            ``"closed"`` raises :class:`ProviderError` instead (a 503 with ``Retry-After``).
        store_timeout: deadline in seconds for one store call (not applied to a store that
            declares itself in-process, see :class:`InProcessStore`, which never waits).
        clock: the time source of the default memory store.
        log_interval: minimum seconds between two log lines about store failures or shadow
            refusals.

    Raises:
        ConfigurationError: a bad ``failure_mode`` or a non-positive ``store_timeout``.
    """

    def __init__(
        self,
        store: RateLimitStore | None = None,
        *,
        failure_mode: FailureMode = "open",
        store_timeout: float = 0.05,
        clock: Clock = time.time,
        log_interval: float = 10.0,
    ) -> None:
        from fastapi_authgate.ratelimit.memory_store import MemoryStore

        if failure_mode not in ("open", "closed"):
            raise ConfigurationError(
                f"AUTHGATE_RATE_LIMIT_FAILURE_MODE must be 'open' or 'closed', not {failure_mode!r}"
            )
        if not store_timeout > 0:
            raise ConfigurationError("AUTHGATE_RATE_LIMIT_STORE_TIMEOUT_SECONDS must be positive")
        self._local: InProcessStore | None = None
        self.in_process = False
        """True when the store answers without waiting, so :meth:`check_now` may be used."""
        self.store = MemoryStore(clock=clock) if store is None else store
        self.failure_mode: FailureMode = failure_mode
        self.store_timeout = store_timeout
        self.stats = LimiterStats()
        self._failure_log = _ThrottledLog(log_interval)
        self._shadow_log = _ThrottledLog(log_interval)

    @classmethod
    def from_settings(cls, settings: AuthGateSettings) -> RateLimiter:
        """Redis when ``AUTHGATE_REDIS_URL`` is set, else memory; failure mode and deadline too.

        Raises:
            ConfigurationError: Redis is configured but the ``redis`` extra is not installed.
        """
        store: RateLimitStore | None = None
        if settings.redis_url is not None:
            from fastapi_authgate.ratelimit.redis_store import RedisStore

            store = RedisStore.from_url(settings.redis_url.get_secret_value())
        return cls(
            store,
            failure_mode=settings.rate_limit_failure_mode,
            store_timeout=settings.rate_limit_store_timeout_seconds,
        )

    parse_rule = staticmethod(parse_rule)

    @property
    def store(self) -> RateLimitStore:
        """Where buckets live; assigning a new store re-reads whether it is in-process."""
        return self._store

    @store.setter
    def store(self, store: RateLimitStore) -> None:
        self._store = store
        self._local = _in_process(store)
        self.in_process = self._local is not None

    async def check(self, key: str, rates: Sequence[Rate], *, cost: int = 1) -> list[Decision]:
        """Charge ``cost`` to every rule of ``key`` (all or none); one decision per rule.

        ``cost`` 0 asks without charging. An empty list means the store failed and the limiter
        fails open: let the request through, with no headers to report.

        Raises:
            ProviderError: the store failed and ``failure_mode`` is ``"closed"``.
        """
        if self._local is not None:
            return self.check_now(key, rates, cost=cost)
        try:
            with anyio.fail_after(self.store_timeout):
                return await self._hit(key, rates, cost)
        except Exception as exc:
            return self._store_failed(exc)

    def check_now(self, key: str, rates: Sequence[Rate], *, cost: int = 1) -> list[Decision]:
        """:meth:`check` without a coroutine, for an in-process store (see :attr:`in_process`).

        Raises:
            ProviderError: the store failed and ``failure_mode`` is ``"closed"``.
            TypeError: the store is not in-process.
        """
        store = self._local
        if store is None:
            raise TypeError(f"{type(self._store).__name__} is not in-process: await check()")
        try:
            if len(rates) == 1:
                rate = rates[0]
                return [store.hit_now(f"{{{key}}}:{rate.name}", rate.limit, rate.period, cost)]
            return store.hit_many_now(
                [(f"{{{key}}}:{rate.name}", rate.limit, rate.period) for rate in rates], cost
            )
        except Exception as exc:
            return self._store_failed(exc)

    async def _hit(self, key: str, rates: Sequence[Rate], cost: int) -> list[Decision]:
        if len(rates) == 1:
            rate = rates[0]
            decision = await self.store.hit(
                f"{{{key}}}:{rate.name}", limit=rate.limit, period=rate.period, cost=cost
            )
            return [decision]
        return await self.store.hit_many(
            [(f"{{{key}}}:{rate.name}", rate.limit, rate.period) for rate in rates], cost=cost
        )

    def _store_failed(self, exc: Exception) -> list[Decision]:
        self.stats.store_failures += 1
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {self.store_timeout * 1000:g} ms"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        action = "letting requests through" if self.failure_mode == "open" else "answering 503"
        self._failure_log.warning(
            "rate-limit store %s failed: %s; %s (failure mode %s)",
            type(self.store).__name__,
            reason,
            action,
            self.failure_mode,
        )
        if self.failure_mode == "closed":
            raise ProviderError("The rate-limit store is unavailable") from exc
        return []

    def record_refusal(self, name: str, *, shadow: bool) -> None:
        """Count a refusal; a shadow refusal (not enforced) is also logged, throttled."""
        if shadow:
            self.stats.shadow_refusals += 1
            self._shadow_log.warning("rate limit %s would refuse a request (shadow mode)", name)
        else:
            self.stats.refusals += 1

    async def aclose(self) -> None:
        """Close the store (connections of a Redis store, the buckets of a memory store)."""
        await self.store.aclose()
