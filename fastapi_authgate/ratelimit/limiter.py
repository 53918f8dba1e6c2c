"""The rate limiter: runs rule checks against a store within a deadline, failing open or closed.

The limiter decides, the store counts: a store runs one atomic
:func:`~fastapi_authgate.ratelimit.rules.gcra_step` per bucket, and the limiter decides what to do
around it, which is everything a store cannot know: building bucket keys (one per rule, with a
Redis Cluster hash tag so all rules of a key share a slot), the deadline of a store call, failing
open or closed when the store breaks, and counting and logging failures and refusals without
flooding the log. The rules themselves live in :mod:`~fastapi_authgate.ratelimit.rules` and the
headers in :mod:`~fastapi_authgate.ratelimit.headers`.
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
from fastapi_authgate.protocols import Clock, InProcessStore, RateLimitStore
from fastapi_authgate.ratelimit.memory_store import MemoryStore
from fastapi_authgate.ratelimit.rules import Rate, parse_rule

if TYPE_CHECKING:
    from fastapi_authgate.settings import AuthGateSettings

__all__ = ["FailureMode", "LimiterStats", "RateLimiter", "hash_tag"]

logger = logging.getLogger(__name__)

FailureMode = Literal["open", "closed"]


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


class RateLimiter:
    """Runs rate-limit checks against a store, within a deadline, failing open or closed.

    Args:
        store: where buckets live; default a fresh :class:`MemoryStore` using ``clock``.
        failure_mode: ``"open"`` lets requests through when the store fails or misses its deadline
            (counted in ``stats.store_failures`` and logged at most once per ``log_interval``);
            ``"closed"`` raises :class:`ProviderError` instead (a 503 with ``Retry-After``).
        store_timeout: deadline in seconds for one store call (not applied to a store that
            declares itself in-process, see
            :class:`~fastapi_authgate.protocols.InProcessStore`, which never waits).
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
            tag = hash_tag(key)
            if len(rates) == 1:
                rate = rates[0]
                return [store.hit_now(f"{tag}:{rate.name}", rate.limit, rate.period, cost)]
            return store.hit_many_now(
                [(f"{tag}:{rate.name}", rate.limit, rate.period) for rate in rates], cost
            )
        except Exception as exc:
            return self._store_failed(exc)

    async def _hit(self, key: str, rates: Sequence[Rate], cost: int) -> list[Decision]:
        tag = hash_tag(key)
        if len(rates) == 1:
            rate = rates[0]
            decision = await self.store.hit(
                f"{tag}:{rate.name}", limit=rate.limit, period=rate.period, cost=cost
            )
            return [decision]
        return await self.store.hit_many(
            [(f"{tag}:{rate.name}", rate.limit, rate.period) for rate in rates], cost=cost
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
