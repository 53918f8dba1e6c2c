"""RemoteVerificationCache over the real Redis: shared by workers, hashed, expiring, optional."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from fastapi_authgate.context import AuthContext
from fastapi_authgate.verifiers.remote import RemoteVerificationCache
from fastapi_authgate.verifiers.remote_store import RedisResultStore
from tests.conftest import FixedClock
from tests.ratelimit.support import REDIS_URL
from tests.verifiers.test_remote import TOKEN, Upstream, context

aioredis = pytest.importorskip("redis.asyncio", reason="the [redis] extra is not installed")

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    redis_client = aioredis.Redis.from_url(REDIS_URL)
    yield redis_client
    await redis_client.aclose()


async def test_one_worker_verifies_and_another_is_served_from_redis(
    prefix: str, client: Any, clock: FixedClock
) -> None:
    store = RedisResultStore(client, prefix=prefix)
    worker_a = RemoteVerificationCache(namespace="tiun:live", ttl=30, clock=clock, store=store)
    worker_b = RemoteVerificationCache(namespace="tiun:live", ttl=30, clock=clock, store=store)
    upstream = Upstream()
    key = worker_a.key(TOKEN)
    first = await worker_a.verify(key, upstream, not_after=clock() + 20)
    second = await worker_b.verify(worker_b.key(TOKEN), upstream)
    assert upstream.calls == 1
    assert second == first and second is not first  # rebuilt from JSON, not shared memory

    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    assert keys == [(prefix + "tiun:live:" + key.hex()).encode()]
    value = await client.get(keys[0])
    assert TOKEN.encode() not in keys[0] and TOKEN.encode() not in value
    assert value.startswith(b"{")  # JSON, never pickle
    ttl_ms = await client.pttl(keys[0])
    assert 19_000 < ttl_ms <= 20_000  # bounded by not_after, not the 30 s ttl


async def test_a_stored_entry_dies_with_its_expiry_even_on_a_skewed_worker(
    prefix: str, client: Any, clock: FixedClock
) -> None:
    store = RedisResultStore(client, prefix=prefix)
    writer = RemoteVerificationCache(namespace="n", ttl=30, clock=clock, store=store)
    await writer.verify(writer.key(TOKEN), Upstream())
    late_clock = FixedClock(clock() + 31)  # Redis still holds the key; its clock says it is dead
    reader = RemoteVerificationCache(namespace="n", ttl=30, clock=late_clock, store=store)
    upstream = Upstream()
    await reader.verify(reader.key(TOKEN), upstream)
    assert upstream.calls == 1


async def test_garbage_in_the_store_is_a_miss(prefix: str, client: Any) -> None:
    store = RedisResultStore(client, prefix=prefix)
    cache = RemoteVerificationCache(namespace="n", store=store)
    key = cache.key(TOKEN)
    await client.set(prefix + "n:" + key.hex(), b"\x80\x04not-json", px=30_000)
    upstream = Upstream()
    assert await cache.verify(key, upstream) is upstream.answer
    assert upstream.calls == 1
    stored = await client.get(prefix + "n:" + key.hex())
    assert stored.startswith(b"{")  # overwritten with a good entry


async def test_namespaces_do_not_share_entries(prefix: str, client: Any) -> None:
    store = RedisResultStore(client, prefix=prefix)
    live = RemoteVerificationCache(namespace="tiun:live", store=store)
    sandbox = RemoteVerificationCache(namespace="tiun:sandbox", store=store)
    upstream = Upstream()
    await live.verify(live.key(TOKEN), upstream)
    await sandbox.verify(sandbox.key(TOKEN), upstream)
    assert upstream.calls == 2


async def test_redis_down_is_a_miss_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", retry=None)
    cache = RemoteVerificationCache(
        namespace="n", store=RedisResultStore(dead, close_client=True), store_timeout=2
    )
    upstream = Upstream()
    with caplog.at_level(logging.WARNING, logger="fastapi_authgate.verifiers.remote"):
        for n in range(3):
            await cache.verify(cache.key(f"{TOKEN}{n}"), upstream)
    assert upstream.calls == 3
    lines = [r.getMessage() for r in caplog.records if "shared store" in r.getMessage()]
    assert len(lines) == 1 and "asking the provider directly" in lines[0]
    await cache.aclose()


class _HangingClient:
    async def get(self, name: str) -> Any:
        await anyio.sleep(60)

    async def set(self, name: str, value: str, *, px: int) -> Any:
        await anyio.sleep(60)


async def test_a_hanging_store_costs_at_most_its_timeout() -> None:
    cache = RemoteVerificationCache(
        namespace="n", store=RedisResultStore(_HangingClient()), store_timeout=0.05
    )
    upstream = Upstream()
    with anyio.fail_after(5):
        assert await cache.verify(cache.key(TOKEN), upstream) is upstream.answer
    assert upstream.calls == 1


async def test_load_through_redis_one_call_per_key(prefix: str, client: Any) -> None:
    """Four workers, 400 concurrent lookups over 10 keys: at most one call per key per worker,
    and with the store warm, none."""
    store = RedisResultStore(client, prefix=prefix)
    workers = [RemoteVerificationCache(namespace="n", store=store) for _ in range(4)]
    calls: dict[str, int] = {}

    def call_for(subject: str) -> Any:
        async def call() -> AuthContext:
            calls[subject] = calls.get(subject, 0) + 1
            await asyncio.sleep(0.05)
            return context(subject)

        return call

    async def lookup(i: int) -> bool:
        worker = workers[i % 4]
        subject = f"user{i % 10}"
        result = await worker.verify(worker.key("t-" + subject), call_for(subject))
        return result.subject == subject

    with anyio.fail_after(60):
        assert all(await asyncio.gather(*(lookup(i) for i in range(400))))
    assert set(calls) == {f"user{n}" for n in range(10)}
    assert all(1 <= count <= 4 for count in calls.values())
    late = RemoteVerificationCache(namespace="n", store=store)
    before = dict(calls)
    with anyio.fail_after(60):
        await asyncio.gather(
            *(late.verify(late.key(f"t-user{n}"), call_for("x")) for n in range(10))
        )
    assert calls == before
