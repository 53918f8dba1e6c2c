"""The memory store stays bounded under a flood of distinct keys and never forgets a live one."""

from __future__ import annotations

import asyncio
import threading

import pytest

from fastapi_authgate.ratelimit.memory_store import SWEEP_ABOVE, SWEEP_PER_CALL, MemoryStore
from tests.conftest import FixedClock

pytestmark = pytest.mark.anyio


async def test_a_flood_of_distinct_keys_stays_bounded(clock: FixedClock) -> None:
    store = MemoryStore(clock=clock)
    # 5/minute: a single hit leaves a key live for 12 s. 200,000 addresses, one per millisecond,
    # so at most 12,000 are live at any time, and the store holds at most about twice that.
    for i in range(200_000):
        clock.advance(0.001)
        await store.hit(f"ip:{i}", limit=5, period=60)
        if i % 10_000 == 0:
            assert len(store) <= 2 * 12_000
    assert len(store) <= 2 * 12_000
    # Once the flood stops, further traffic sweeps the drained keys away.
    clock.advance(60)
    for _ in range(12_000 // (SWEEP_PER_CALL - 1) + 1):
        await store.hit("steady", limit=5, period=60)
        clock.advance(0.001)
    assert len(store) <= SWEEP_ABOVE + 1


async def test_a_flood_never_evicts_a_live_bucket(clock: FixedClock) -> None:
    store = MemoryStore(clock=clock)
    for _ in range(5):
        await store.hit("attacker", limit=5, period=60)
    assert not (await store.hit("attacker", limit=5, period=60)).allowed
    for i in range(10_000):  # 10 s of one-off keys, swept as they drain
        clock.advance(0.001)
        await store.hit(f"ip:{i}", limit=5, period=60)
    refused = await store.hit("attacker", limit=5, period=60)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(2.0, abs=1e-2)  # one refill every 12 s
    for i in range(40_000):
        clock.advance(0.001)
        await store.hit(f"ip2:{i}", limit=5, period=60)
    # 50 s in: four requests have refilled, the bucket still remembers the fifth.
    later = await store.hit("attacker", limit=5, period=60)
    assert later.allowed and later.remaining == 3
    assert later.reset_after == pytest.approx(22.0, abs=1e-2)
    # A long-lived bucket at the front does not stop the sweep behind it.
    assert len(store) <= 2 * 12_000


async def test_buckets_of_different_periods_are_swept_independently(clock: FixedClock) -> None:
    store = MemoryStore(clock=clock)
    await store.hit("daily", limit=1, period=86400)
    for i in range(1000):
        clock.advance(1)
        await store.hit(f"s:{i}", limit=1, period=1)
    assert len(store) <= SWEEP_ABOVE + 2
    assert not (await store.hit("daily", limit=1, period=86400)).allowed


async def test_threads_sharing_a_store_get_exact_counts(clock: FixedClock) -> None:
    store = MemoryStore(clock=clock)
    allowed: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        async def run() -> list[bool]:
            return [(await store.hit("shared", limit=100, period=3600)).allowed for _ in range(50)]

        results = asyncio.run(run())
        with lock:
            allowed.extend(results)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 100
    await store.aclose()
    assert len(store) == 0
