"""The in-process rate-limit store, the default: nothing to install, one process only.

A GCRA bucket is a single number, its theoretical arrival time (TAT). A key whose TAT is at or
before *now* behaves exactly like a key never seen, so it can be forgotten without changing any
answer. That gives the memory bound without an LRU (which would forget *live* buckets and so let a
flood of fresh keys reset a limited client):

* Buckets are kept in one insertion-ordered map per period, moved to the end whenever they are
  charged. An allowed charge leaves ``TAT <= now + period``, so along each map the entries are
  ordered by last charge and every entry behind a live front was charged less than one period ago.
* Each call sweeps up to :data:`SWEEP_PER_CALL` entries from the front of the map it touches, while
  they are drained. Each call adds at most one entry per rule, so the sweep keeps up with any flood.

**Memory bound:** at any time the store holds at most the distinct keys charged within the last
period of their rule (arrival rate x period) plus the few drained entries the sweep has not reached
yet. A flood of a million one-off addresses against a ``5/second`` rule keeps about five seconds'
worth of them, not a million; against ``100/day`` it keeps a day's worth, which is what correctness
requires: forgetting any of them would hand that caller a fresh quota.

Every step runs under one short :class:`threading.Lock` with no ``await`` inside, so it is atomic
for coroutines of one event loop and for threads alike; all rules of one request are decided under
the same lock, all-or-nothing.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

from fastapi_authgate.context import Decision
from fastapi_authgate.protocols import Clock
from fastapi_authgate.ratelimit.limiter import gcra_step

__all__ = ["MemoryStore", "SWEEP_PER_CALL"]

SWEEP_PER_CALL = 8
"""Drained entries removed from the front of a map per call (amortised O(1) per request)."""


class MemoryStore:
    """GCRA buckets in a dict, bounded by live keys (see the module docstring).

    Args:
        clock: returns the current UNIX time in seconds; inject a fixed clock in tests.
    """

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._maps: dict[float, OrderedDict[str, float]] = {}

    def __len__(self) -> int:
        """Number of buckets held (live ones plus drained ones not yet swept)."""
        return sum(len(m) for m in self._maps.values())

    async def hit(self, key: str, *, limit: int, period: float, cost: int = 1) -> Decision:
        """One GCRA step for ``key``; ``cost`` 0 asks without charging."""
        with self._lock:
            now = self._clock()
            buckets = self._maps.get(period)
            if buckets is None:
                buckets = self._maps[period] = OrderedDict()
            decision, new_tat = gcra_step(buckets.get(key, 0.0), now, limit, period, cost)
            if new_tat is not None:
                buckets[key] = new_tat
                buckets.move_to_end(key)
            self._sweep(buckets, now)
            return decision

    async def hit_many(
        self, buckets: Sequence[tuple[str, int, float]], *, cost: int = 1
    ) -> list[Decision]:
        """One GCRA step over several ``(key, limit, period)`` rules: all are charged or none."""
        with self._lock:
            now = self._clock()
            maps = []
            for _key, _limit, period in buckets:
                bucket_map = self._maps.get(period)
                if bucket_map is None:
                    bucket_map = self._maps[period] = OrderedDict()
                maps.append(bucket_map)
            steps = [
                gcra_step(m.get(key, 0.0), now, limit, period, cost)
                for m, (key, limit, period) in zip(maps, buckets, strict=True)
            ]
            if all(decision.allowed for decision, _ in steps):
                for m, (key, _l, _p), (_d, new_tat) in zip(maps, buckets, steps, strict=True):
                    if new_tat is not None:
                        m[key] = new_tat
                        m.move_to_end(key)
                decisions = [decision for decision, _ in steps]
            else:
                decisions = [
                    gcra_step(m.get(key, 0.0), now, limit, period, 0)[0]
                    if decision.allowed
                    else decision
                    for m, (key, limit, period), (decision, _) in zip(
                        maps, buckets, steps, strict=True
                    )
                ]
            for m in maps:
                self._sweep(m, now)
            return decisions

    @staticmethod
    def _sweep(buckets: OrderedDict[str, float], now: float) -> None:
        for _ in range(SWEEP_PER_CALL):
            if not buckets:
                return
            key = next(iter(buckets))
            if buckets[key] > now:
                return
            del buckets[key]

    async def aclose(self) -> None:
        """Forget every bucket."""
        with self._lock:
            self._maps.clear()
