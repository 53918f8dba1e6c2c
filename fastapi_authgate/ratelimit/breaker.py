"""A circuit breaker over a rate-limit store: stop asking a store that keeps failing.

A store that misses its deadline once may be having a slow moment; one that fails several round
trips in a row is unwell, and asking it on every request only adds its timeout to every request's
latency. After ``failures`` consecutive failed round trips the breaker *opens*: the limiter stops
calling the store and applies its failure mode at once. After ``cooldown`` seconds it lets calls
through again as a trial; the first success *closes* it, a failure keeps it open for another
cooldown. Both switches are logged (not throttled: they are rare and an operator wants each one).

Failures are counted per round trip, not per decision: a batching store fails every decision of a
round trip together, and the exception it raises carries the round trip's number
(``round_trip``), so one bad round trip of a hundred decisions counts once.

Kept apart from the limiter because it is pure bookkeeping over a monotonic clock, testable with
an injected one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

__all__ = ["CircuitBreaker"]

logger = logging.getLogger("fastapi_authgate.ratelimit.limiter")


class CircuitBreaker:
    """Consecutive-failure breaker with a cooldown (see the module docstring).

    Args:
        failures: consecutive failed round trips that open the breaker (>= 1).
        cooldown: seconds the breaker stays open before calls are tried again.
        monotonic: the clock, for tests.
    """

    __slots__ = (
        "_last_round_trip",
        "consecutive",
        "cooldown",
        "failures",
        "monotonic",
        "opened_at",
        "retry_at",
        "switches",
    )

    def __init__(
        self,
        *,
        failures: int = 3,
        cooldown: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self.monotonic = monotonic
        self.consecutive = 0
        self.opened_at: float | None = None
        self.retry_at = -math.inf
        self.switches = 0
        self._last_round_trip: object = None

    @property
    def is_open(self) -> bool:
        """True while the store is treated as down."""
        return self.opened_at is not None

    def allows(self) -> bool:
        """Whether to call the store now: closed, or open with its cooldown over (a trial)."""
        return self.opened_at is None or self.monotonic() >= self.retry_at

    def success(self, store: str) -> None:
        """A round trip answered: reset the count, and close (logging it) when open."""
        self.consecutive = 0
        if self.opened_at is not None:
            down_for = self.monotonic() - self.opened_at
            self.opened_at = None
            self.switches += 1
            logger.warning(
                "rate-limit store %s answers again after %.1f s; limits are shared again",
                store,
                down_for,
            )

    def failure(self, store: str, exc: BaseException, *, reason: str, action: str) -> None:
        """A round trip failed: count it once, and open (logging it) at the threshold."""
        round_trip = getattr(exc, "round_trip", None)
        if round_trip is not None and round_trip == self._last_round_trip:
            return  # another decision of a round trip already counted
        self._last_round_trip = round_trip
        self.consecutive += 1
        now = self.monotonic()
        if self.opened_at is not None:
            self.retry_at = now + self.cooldown  # the trial failed: another cooldown
            return
        if self.consecutive >= self.failures:
            self.opened_at = now
            self.retry_at = now + self.cooldown
            self.switches += 1
            logger.warning(
                "rate-limit store %s is unavailable after %d consecutive failed round trips "
                "(last: %s); %s until it answers again (retrying every %g s)",
                store,
                self.consecutive,
                reason,
                action,
                self.cooldown,
            )
