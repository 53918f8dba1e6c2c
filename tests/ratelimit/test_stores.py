"""The GCRA contract, run against every store (memory and real Redis) with one fixed clock."""

from __future__ import annotations

import anyio
import pytest

from fastapi_authgate.protocols import RateLimitStore
from tests.conftest import FixedClock

pytestmark = pytest.mark.anyio


async def test_burst_then_refusal_with_exact_numbers(store: RateLimitStore) -> None:
    answers = [await store.hit("k", limit=10, period=60) for _ in range(11)]
    assert [d.allowed for d in answers] == [True] * 10 + [False]
    assert [d.remaining for d in answers] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0]
    assert [round(d.reset_after, 6) for d in answers[:10]] == [6.0 * i for i in range(1, 11)]
    refused = answers[-1]
    assert refused.retry_after == pytest.approx(6.0)
    assert refused.reset_after == pytest.approx(60.0)
    assert (refused.limit, refused.period) == (10, 60)
    assert all(d.retry_after == 0 for d in answers[:10])


async def test_one_request_refills_per_interval(store: RateLimitStore, clock: FixedClock) -> None:
    for _ in range(10):
        await store.hit("k", limit=10, period=60)
    clock.advance(5.9)
    refused = await store.hit("k", limit=10, period=60)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.1)
    clock.advance(0.1)
    again = await store.hit("k", limit=10, period=60)
    assert again.allowed and again.remaining == 0
    assert not (await store.hit("k", limit=10, period=60)).allowed


async def test_a_drained_key_is_like_new(store: RateLimitStore, clock: FixedClock) -> None:
    for _ in range(3):
        await store.hit("k", limit=3, period=1)
    clock.advance(1)
    decision = await store.hit("k", limit=3, period=1)
    assert decision.allowed and decision.remaining == 2
    assert decision.reset_after == pytest.approx(1 / 3)


async def test_cost_zero_asks_without_charging(store: RateLimitStore) -> None:
    peek = await store.hit("k", limit=2, period=10, cost=0)
    assert peek.allowed and peek.remaining == 2 and peek.reset_after == 0
    await store.hit("k", limit=2, period=10)
    await store.hit("k", limit=2, period=10)
    exhausted = await store.hit("k", limit=2, period=10, cost=0)
    assert not exhausted.allowed
    assert exhausted.retry_after == pytest.approx(5.0)
    assert exhausted.remaining == 0
    # Asking did not charge: the next refusal still waits 5 s, not more.
    assert (await store.hit("k", limit=2, period=10)).retry_after == pytest.approx(5.0)


async def test_keys_are_independent(store: RateLimitStore) -> None:
    assert (await store.hit("a", limit=1, period=60)).allowed
    assert not (await store.hit("a", limit=1, period=60)).allowed
    assert (await store.hit("b", limit=1, period=60)).allowed


async def test_fractional_intervals_allow_exactly_the_limit(
    store: RateLimitStore, clock: FixedClock
) -> None:
    for _ in range(3):
        allowed = [(await store.hit("k", limit=3, period=1)).allowed for _ in range(4)]
        assert allowed == [True, True, True, False]
        clock.advance(1)


async def test_several_rules_are_charged_all_or_none(
    store: RateLimitStore, clock: FixedClock
) -> None:
    rules = [("{k}:hour", 100, 3600.0), ("{k}:second", 5, 1.0)]
    first = await store.hit_many(rules)
    assert [d.remaining for d in first] == [99, 4]
    for _ in range(4):
        await store.hit_many(rules)
    refused = await store.hit_many(rules)
    assert [d.allowed for d in refused] == [True, False]
    assert refused[1].retry_after == pytest.approx(0.2, abs=1e-6)  # float time near 1.8e9 s
    assert refused[0].remaining == 95  # the hourly rule was not charged for the refusal
    clock.advance(1)
    assert all(d.allowed for d in await store.hit_many(rules))
    assert (await store.hit("{k}:hour", limit=100, period=3600, cost=0)).remaining == 94


async def test_200_concurrent_hits_allow_exactly_the_limit(store: RateLimitStore) -> None:
    results: list[bool] = []

    async def one() -> None:
        results.append((await store.hit("hot", limit=50, period=3600)).allowed)

    async with anyio.create_task_group() as tg:
        for _ in range(200):
            tg.start_soon(one)
    assert results.count(True) == 50
    assert len(results) == 200


async def test_a_negative_cost_refunds_never_below_empty(
    store: RateLimitStore, clock: FixedClock
) -> None:
    for _ in range(3):
        await store.hit("k", limit=3, period=60)
    assert not (await store.hit("k", limit=3, period=60)).allowed
    refund = await store.hit("k", limit=3, period=60, cost=-1)
    assert refund.allowed and refund.remaining == 1
    assert refund.reset_after == pytest.approx(40.0)
    assert (await store.hit("k", limit=3, period=60)).allowed
    assert not (await store.hit("k", limit=3, period=60)).allowed
    clock.advance(50)  # 10 s of the bucket left: a refund of 20 s empties it, no further
    emptied = await store.hit("k", limit=3, period=60, cost=-1)
    assert emptied.remaining == 3 and emptied.reset_after == 0
    assert [(await store.hit("k", limit=3, period=60)).allowed for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    fresh = await store.hit("new", limit=3, period=60, cost=-1)  # nothing to give back
    assert fresh.remaining == 3
    assert (await store.hit("new", limit=3, period=60)).remaining == 2


async def test_a_refund_covers_every_rule_of_a_key(store: RateLimitStore) -> None:
    rules = [("a", 2, 60), ("b", 10, 3600)]
    await store.hit_many(rules)
    back = await store.hit_many(rules, cost=-1)
    assert [d.remaining for d in back] == [2, 10]
