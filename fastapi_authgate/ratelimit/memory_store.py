"""The in-process rate-limit store, the default: nothing to install, one process only.

A GCRA bucket is a single number, its theoretical arrival time (TAT). A key whose TAT is at or
before *now* behaves exactly like a key never seen, so it can be forgotten without changing any
answer. That gives the memory bound without an LRU (which would forget *live* buckets and so let a
flood of fresh keys reset a limited client):

* Buckets are kept in one insertion-ordered map per period (an ``OrderedDict``: O(1) at both
  ends). A charged bucket moves to the back.
* Each call looks at up to :data:`SWEEP_PER_CALL` entries at the front of the map it touches:
  a drained one is deleted, a live one is moved to the back to be looked at again later. A call
  adds at most one entry and advances the front by up to eight, so a drained entry is reached
  within ``size / 8`` calls.

**Memory bound:** the drained entries still held are at most those that drained during the last
``size / 8`` calls, which gives a size of at most about twice the keys live at once (``2 L`` with a
factor ``8/7`` of slack), or :data:`SWEEP_ABOVE` per period, whichever is larger. A key is live
while its TAT is ahead of now, which is at most one period after its last allowed request, and a
single request keeps it live only ``period / limit`` seconds: live keys are bounded by rate of
arrival x period. A flood of a million one-off addresses against ``5/minute`` at 1,000 per second
keeps about 12,000 of them live (each lives 12 s), not a million; against ``100/day`` it keeps far
more, which is what correctness requires: forgetting any live one would hand that caller a fresh
quota.

Every step runs under one short :class:`threading.Lock` with no ``await`` inside, so it is atomic
for coroutines of one event loop and for threads alike; all rules of one request are decided under
the same lock, all-or-nothing.

The store never waits, so it declares itself in-process (``in_process = True``, see
:class:`~fastapi_authgate.protocols.InProcessStore`): the limiter calls the synchronous
:meth:`MemoryStore.hit_now` / :meth:`MemoryStore.hit_many_now` directly, with no deadline and no
coroutine. ``hit`` and ``hit_many`` are the same steps behind the async store protocol.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

from fastapi_authgate.context import Decision
from fastapi_authgate.protocols import Clock
from fastapi_authgate.ratelimit.rules import gcra_step

__all__ = ["MemoryStore", "SWEEP_ABOVE", "SWEEP_PER_CALL"]

SWEEP_PER_CALL = 8
"""Entries looked at (deleted when drained, else moved back) at the front of a map per call."""

SWEEP_ABOVE = 64
"""Maps this small are not swept: a few entries cost less than looking at them per request."""


class MemoryStore:
    """GCRA buckets in a dict, bounded by live keys (see the module docstring).

    Args:
        clock: returns the current UNIX time in seconds; inject a fixed clock in tests.
    """

    in_process: bool = True
    """Answers without waiting: the limiter calls :meth:`hit_now` with no deadline around it."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._maps: dict[float, OrderedDict[str, float]] = {}

    def __len__(self) -> int:
        """Number of buckets held (live ones plus drained ones not yet swept)."""
        return sum(len(m) for m in self._maps.values())

    async def hit(self, key: str, *, limit: int, period: float, cost: int = 1) -> Decision:
        """One GCRA step for ``key``; ``cost`` 0 asks without charging."""
        return self.hit_now(key, limit, period, cost)

    async def hit_many(
        self, buckets: Sequence[tuple[str, int, float]], *, cost: int = 1
    ) -> list[Decision]:
        """One GCRA step over several ``(key, limit, period)`` rules: all are charged or none."""
        return self.hit_many_now(buckets, cost)

    def hit_now(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        """:meth:`hit`, synchronously (the store never waits)."""
        with self._lock:
            now = self._clock()
            buckets = self._maps.get(period)
            if buckets is None:
                buckets = self._maps[period] = OrderedDict()
            decision, new_tat = gcra_step(buckets.get(key, 0.0), now, limit, period, cost)
            if new_tat is not None:
                buckets[key] = new_tat
                buckets.move_to_end(key)
            if len(buckets) > SWEEP_ABOVE:
                self._sweep(buckets, now)
            return decision

    def hit_many_now(
        self, buckets: Sequence[tuple[str, int, float]], cost: int = 1
    ) -> list[Decision]:
        """:meth:`hit_many`, synchronously (the store never waits)."""
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
                if len(m) > SWEEP_ABOVE:
                    self._sweep(m, now)
            return decisions

    @staticmethod
    def _sweep(buckets: OrderedDict[str, float], now: float) -> None:
        """Look at the front entries of a map larger than :data:`SWEEP_ABOVE`."""
        for _ in range(SWEEP_PER_CALL):
            key = next(iter(buckets))
            if buckets[key] > now:
                buckets.move_to_end(key)
            else:
                del buckets[key]

    async def aclose(self) -> None:
        """Forget every bucket."""
        with self._lock:
            self._maps.clear()
