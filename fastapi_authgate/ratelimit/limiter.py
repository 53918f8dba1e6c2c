"""The rate limiter: runs rule checks against a store, and degrades (never vanishes) when it fails.

The limiter decides, the store counts: a store runs one atomic
:func:`~fastapi_authgate.ratelimit.rules.gcra_step` per bucket, and the limiter decides what to do
around it, which is everything a store cannot know: building bucket keys (one per rule, with a
Redis Cluster hash tag so all rules of a key share a slot), the deadline of a store call, what to
do when the store breaks, and counting and logging failures and refusals without flooding the log.
The rules themselves live in :mod:`~fastapi_authgate.ratelimit.rules` and the headers in
:mod:`~fastapi_authgate.ratelimit.headers`.

**The deadline means "the store is unwell", not "we are busy".** A store that batches its own
round trips (:class:`~fastapi_authgate.protocols.DeadlineStore`, as the Redis store does) is
handed the deadline and times only the round trip itself; the limiter puts no timer around the
call, which under load would measure the event loop's backlog and the wait for a connection, so
that every decision missed it exactly when the limit mattered. Other stores get the deadline
around each call. The default is half a second: a loopback Redis answers in well under a
millisecond, so only a store that is really unwell misses it.

**Failure modes.** When the store fails (or its circuit breaker is open, see
:mod:`~fastapi_authgate.ratelimit.breaker`):

* ``"local"`` (the default): every rule keeps being enforced by an in-process
  :class:`MemoryStore` until the store answers again. Each worker then counts on its own, so
  ``N`` workers let up to ``N`` times a rule's quota through during an outage: degraded, never
  gone;
* ``"open"``: requests go through, with no rate-limit headers;
* ``"closed"``: a 503 (:class:`ProviderError`) with ``Retry-After``.

Shadow rules never refuse and never answer 503: in every mode they fall back to the in-process
count, so their refusal counts keep meaning something. The switch to degraded and back is logged
once each way; individual failures are logged at most once per ``log_interval``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

import anyio

from fastapi_authgate.context import Decision
from fastapi_authgate.errors import ConfigurationError, ProviderError
from fastapi_authgate.protocols import Clock, DeadlineStore, InProcessStore, RateLimitStore
from fastapi_authgate.ratelimit.breaker import CircuitBreaker
from fastapi_authgate.ratelimit.memory_store import MemoryStore
from fastapi_authgate.ratelimit.rules import Rate, parse_rule

if TYPE_CHECKING:
    from fastapi_authgate.settings import AuthGateSettings

__all__ = ["FailureMode", "LimiterStats", "RateLimiter", "hash_tag"]

logger = logging.getLogger(__name__)

FailureMode = Literal["local", "open", "closed"]
_MODES = ("local", "open", "closed")


@dataclass(slots=True)
class LimiterStats:
    """Counters an operator can export (``gate.limiter.stats``): they only ever rise.

    ``round_trips`` and ``batched_decisions`` come from a store that batches (the Redis store):
    read ``decisions_per_round_trip`` to see how many decisions shared one round trip.
    """

    decisions: int = 0
    """Decisions asked of the limiter (each rule set of a request is one; refunds included)."""
    store_failures: int = 0
    """Decisions whose store call failed or missed its deadline."""
    deadline_misses: int = 0
    """Of ``store_failures``, those that missed the deadline."""
    local_decisions: int = 0
    """Decisions taken by the in-process fallback store (mode ``local``, and shadow rules)."""
    mode_switches: int = 0
    """Times the limiter switched to its failure mode (breaker opened) or back."""
    refusals: int = 0
    shadow_refusals: int = 0
    round_trips: int = 0
    """Round trips to the store (a batching store only)."""
    batched_decisions: int = 0
    """Decisions sent in those round trips."""

    @property
    def decisions_per_round_trip(self) -> float:
        """Average decisions per round trip (0 before the first one)."""
        return self.batched_decisions / self.round_trips if self.round_trips else 0.0


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


def hash_tag(key: str) -> str:
    """``{key}``: the Redis Cluster hash tag of a bucket key, with braces inside escaped.

    Redis Cluster hashes only what lies between the first ``{`` and the first ``}`` after it, so
    a raw ``{rl:GET /users/{id}:ip:...}`` would hash ``rl:GET /users/{id`` and put every caller of
    that route in one slot (one hot shard). ``%``, ``{`` and ``}`` are percent-escaped, which
    keeps the mapping injective: two keys never share a bucket by escaping.
    """
    if "{" in key or "}" in key or "%" in key:
        key = key.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return "{" + key + "}"


def _in_process(store: RateLimitStore) -> InProcessStore | None:
    if getattr(store, "in_process", False) is True:
        return cast(InProcessStore, store)
    return None


def _buckets(key: str, rates: Sequence[Rate]) -> list[tuple[str, int, float]]:
    tag = hash_tag(key)
    return [(f"{tag}:{rate.name}", rate.limit, rate.period) for rate in rates]


class RateLimiter:
    """Runs rate-limit checks against a store; degrades to a failure mode when it fails.

    Args:
        store: where buckets live; default a fresh :class:`MemoryStore` using ``clock``.
        failure_mode: ``"local"``, ``"open"`` or ``"closed"`` (see the module docstring).
        store_timeout: deadline in seconds of one store round trip (not applied to a store that
            declares itself in-process, see :class:`~fastapi_authgate.protocols.InProcessStore`,
            which never waits).
        clock: the time source of the default store and of the in-process fallback.
        log_interval: minimum seconds between two log lines about store failures or shadow
            refusals.
        breaker_failures: consecutive failed round trips after which the store is not asked
            until ``breaker_cooldown`` seconds have passed (see
            :class:`~fastapi_authgate.ratelimit.breaker.CircuitBreaker`).
        breaker_cooldown: seconds between two trials of a store that is down.

    Raises:
        ConfigurationError: a bad ``failure_mode``, a non-positive ``store_timeout`` or bad
            breaker settings.
    """

    def __init__(
        self,
        store: RateLimitStore | None = None,
        *,
        failure_mode: FailureMode = "local",
        store_timeout: float = 0.5,
        clock: Clock = time.time,
        log_interval: float = 10.0,
        breaker_failures: int = 3,
        breaker_cooldown: float = 1.0,
    ) -> None:
        if failure_mode not in _MODES:
            raise ConfigurationError(
                "AUTHGATE_RATE_LIMIT_FAILURE_MODE must be 'local', 'open' or 'closed', "
                f"not {failure_mode!r}"
            )
        if not store_timeout > 0:
            raise ConfigurationError("AUTHGATE_RATE_LIMIT_STORE_TIMEOUT_SECONDS must be positive")
        if breaker_failures < 1 or not breaker_cooldown > 0:
            raise ConfigurationError(
                "RateLimiter needs breaker_failures >= 1 and a positive breaker_cooldown"
            )
        self.failure_mode: FailureMode = failure_mode
        self.store_timeout = store_timeout
        self._local: InProcessStore | None = None
        self._timed_by_store = False
        self.in_process = False
        """True when the store answers without waiting, so :meth:`check_now` may be used."""
        self.store = MemoryStore(clock=clock) if store is None else store
        self.fallback = MemoryStore(clock=clock)
        """The in-process store that takes over while the store is down (see failure modes)."""
        self.breaker = CircuitBreaker(failures=breaker_failures, cooldown=breaker_cooldown)
        self._stats = LimiterStats()
        self._failure_log = _ThrottledLog(log_interval)
        self._shadow_log = _ThrottledLog(log_interval)
        self._action = {
            "local": "enforcing every rule in process",
            "open": "letting requests through",
            "closed": "answering 503",
        }[failure_mode]

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
        set_deadline = getattr(store, "set_deadline", None)
        self._timed_by_store = callable(set_deadline)
        if self._timed_by_store:
            cast(DeadlineStore, store).set_deadline(self.store_timeout)

    @property
    def stats(self) -> LimiterStats:
        """The live counters, with the store's round-trip counters brought up to date."""
        stats = self._stats
        store_stats = getattr(self._store, "stats", None)
        if store_stats is not None:
            stats.round_trips = int(getattr(store_stats, "round_trips", 0))
            stats.batched_decisions = int(getattr(store_stats, "batched_decisions", 0))
        stats.mode_switches = self.breaker.switches
        return stats

    @property
    def degraded(self) -> bool:
        """True while the store is treated as down (its circuit breaker is open)."""
        return self.breaker.is_open

    async def check(
        self, key: str, rates: Sequence[Rate], *, cost: int = 1, shadow: bool = False
    ) -> list[Decision]:
        """Charge ``cost`` to every rule of ``key`` (all or none); one decision per rule.

        ``cost`` 0 asks without charging; a negative ``cost`` refunds. When the store fails the
        failure mode decides: ``local`` and shadow rules (``shadow=True``) answer from the
        in-process fallback, ``open`` returns an empty list (let the request through, with no
        headers to report).

        Raises:
            ProviderError: the store failed and ``failure_mode`` is ``"closed"``.
        """
        if self._local is not None:
            return self.check_now(key, rates, cost=cost)
        self._stats.decisions += 1
        breaker = self.breaker
        if not breaker.allows():
            return self._degraded(key, rates, cost, shadow, None)
        try:
            if self._timed_by_store:
                decisions = await self._hit(key, rates, cost)
            else:
                with anyio.fail_after(self.store_timeout):
                    decisions = await self._hit(key, rates, cost)
        except Exception as exc:
            self._store_failed(exc)
            return self._degraded(key, rates, cost, shadow, exc)
        if breaker.consecutive or breaker.opened_at is not None:
            breaker.success(type(self._store).__name__)
        return decisions

    def check_now(self, key: str, rates: Sequence[Rate], *, cost: int = 1) -> list[Decision]:
        """:meth:`check` without a coroutine, for an in-process store (see :attr:`in_process`).

        Raises:
            ProviderError: the store failed and ``failure_mode`` is ``"closed"``.
            TypeError: the store is not in-process.
        """
        store = self._local
        if store is None:
            raise TypeError(f"{type(self._store).__name__} is not in-process: await check()")
        self._stats.decisions += 1
        try:
            if len(rates) == 1:
                rate = rates[0]
                return [
                    store.hit_now(f"{hash_tag(key)}:{rate.name}", rate.limit, rate.period, cost)
                ]
            return store.hit_many_now(_buckets(key, rates), cost)
        except Exception as exc:
            self._store_failed(exc)
            if self.failure_mode == "closed":
                raise ProviderError("The rate-limit store is unavailable") from exc
            return []

    async def _hit(self, key: str, rates: Sequence[Rate], cost: int) -> list[Decision]:
        if len(rates) == 1:
            rate = rates[0]
            decision = await self.store.hit(
                f"{hash_tag(key)}:{rate.name}", limit=rate.limit, period=rate.period, cost=cost
            )
            return [decision]
        return await self.store.hit_many(_buckets(key, rates), cost=cost)

    def _degraded(
        self,
        key: str,
        rates: Sequence[Rate],
        cost: int,
        shadow: bool,
        exc: Exception | None,
    ) -> list[Decision]:
        if self.failure_mode == "local" or shadow:
            self._stats.local_decisions += 1
            return self.fallback.hit_many_now(_buckets(key, rates), cost)
        if self.failure_mode == "closed":
            raise ProviderError("The rate-limit store is unavailable") from exc
        return []

    def _store_failed(self, exc: Exception) -> None:
        self._stats.store_failures += 1
        if isinstance(exc, TimeoutError):
            self._stats.deadline_misses += 1
            reason = f"no answer within {self.store_timeout * 1000:g} ms"
        else:
            cause = exc.__cause__ if isinstance(exc, ProviderError) else None
            shown = cause if cause is not None else exc
            reason = f"{type(shown).__name__}: {shown}"
        store = type(self.store).__name__
        self._failure_log.warning(
            "rate-limit store %s failed: %s; %s (failure mode %s)",
            store,
            reason,
            self._action,
            self.failure_mode,
        )
        self.breaker.failure(
            store, exc, reason=reason, action=f"{self._action} (failure mode {self.failure_mode})"
        )

    def record_refusal(self, name: str, *, shadow: bool) -> None:
        """Count a refusal; a shadow refusal (not enforced) is also logged, throttled."""
        if shadow:
            self._stats.shadow_refusals += 1
            self._shadow_log.warning("rate limit %s would refuse a request (shadow mode)", name)
        else:
            self._stats.refusals += 1

    async def aclose(self) -> None:
        """Close the store (connections of a Redis store, the buckets of a memory store)."""
        await self.store.aclose()
        await self.fallback.aclose()
