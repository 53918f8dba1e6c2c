"""The Redis store against a real server: server clock, expiry, NOSCRIPT, outages, two workers."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from fastapi_authgate import rate_limited
from fastapi_authgate.errors import ConfigurationError, ProviderError
from fastapi_authgate.ratelimit.limiter import RateLimiter
from fastapi_authgate.ratelimit.rules import parse_rule
from fastapi_authgate.settings import AuthGateSettings
from tests.ratelimit.support import REDIS_URL, TCPProxy, build_app, uvicorn_workers

aioredis = pytest.importorskip("redis.asyncio", reason="the [redis] extra is not installed")

from fastapi_authgate.ratelimit.redis_store import RedisStore, StoreDeadlineMissed  # noqa: E402

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]


async def test_server_clock_and_expiry_set_in_the_script(redis_prefix: str) -> None:
    store = RedisStore.from_url(REDIS_URL, prefix=redis_prefix)
    store.set_deadline(5)
    try:
        decision = await store.hit("k", limit=10, period=60)
        assert decision.allowed and decision.remaining == 9
        assert decision.reset_after == pytest.approx(6.0, abs=0.05)
        ttl = await store.client.pttl(redis_prefix + "k")
        assert 5_900 <= ttl <= 6_000
    finally:
        await store.aclose()


async def test_script_is_reloaded_after_noscript(redis_prefix: str) -> None:
    store = RedisStore.from_url(REDIS_URL, prefix=redis_prefix)
    store.set_deadline(5)
    try:
        await store.hit("k", limit=5, period=60)
        await store.client.script_flush()
        decision = await store.hit("k", limit=5, period=60)
        assert decision.allowed and decision.remaining == 3
    finally:
        await store.aclose()


async def test_unreachable_server_is_a_provider_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", retry=None)
    try:
        with pytest.raises(ProviderError) as info:
            await store.hit("k", limit=1, period=1)
        assert info.value.__cause__ is not None
    finally:
        await store.aclose()


def test_from_settings_builds_a_redis_store() -> None:
    limiter = RateLimiter.from_settings(AuthGateSettings(redis_url=SecretStr(REDIS_URL)))
    assert isinstance(limiter.store, RedisStore)
    with pytest.raises(ConfigurationError, match="AUTHGATE_REDIS_URL"):
        RedisStore.from_url("http://not-redis")


async def test_a_missed_deadline_keeps_its_connection(redis_prefix: str) -> None:
    proxy = TCPProxy()
    await proxy.start()
    store = RedisStore(
        aioredis.Redis(host="127.0.0.1", port=proxy.port), prefix=redis_prefix, close_client=True
    )
    store.set_deadline(0.1)
    try:
        await asyncio.gather(*(store.hit(f"k{i}", limit=5, period=60) for i in range(8)))
        opened = store.stats.reconnections
        assert 1 <= opened <= 4
        proxy.latency = 0.3
        with pytest.raises(StoreDeadlineMissed):
            await store.hit("k0", limit=5, period=60)
        await asyncio.sleep(0.5)  # the late reply arrives and is read, not cut off
        assert store.stats.late_replies == 1 and store.stats.deadline_misses == 1
        proxy.latency = 0.0
        answers = await asyncio.gather(*(store.hit("k1", limit=5, period=60) for _ in range(20)))
        assert sum(d.allowed for d in answers) == 4
        assert store.stats.reconnections == opened  # no connection was dropped for the miss
        assert store.stats.failures == 0
    finally:
        await store.aclose()
        await proxy.cut()


async def test_200_concurrent_requests_through_redis(redis_prefix: str) -> None:
    # 200 requests open their pool connections at once: on a loaded machine a connect can take
    # longer than the store's 1 s default, and a failed connect fails open (more than 50 pass)
    store = RedisStore.from_url(REDIS_URL, prefix=redis_prefix, socket_connect_timeout=5)
    limiter = RateLimiter(store, store_timeout=5)
    app, _ = build_app(limiter, [("/hot", rate_limited("50/hour"))])
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            responses = await asyncio.gather(*(client.get("/hot") for _ in range(200)))
        statuses = [r.status_code for r in responses]
        assert (statuses.count(200), statuses.count(429)) == (50, 150)
        stats = limiter.stats
        assert stats.store_failures == 0
        # Decisions of one tick share a round trip: far fewer round trips than decisions.
        assert stats.batched_decisions == stats.decisions == 200
        assert stats.round_trips < 100 and stats.decisions_per_round_trip > 2
    finally:
        await limiter.aclose()


def test_two_worker_processes_share_one_limit(redis_prefix: str) -> None:
    env = {"WORKER_REDIS_PREFIX": redis_prefix, "AUTHGATE_REDIS_URL": REDIS_URL}
    with uvicorn_workers(2, env) as ports:
        pids = {httpx.get(f"http://127.0.0.1:{p}/healthz").json()["pid"] for p in ports}
        assert len(pids) == 2

        async def fire() -> list[int]:
            async with httpx.AsyncClient() as client:
                responses = await asyncio.gather(
                    *(client.get(f"http://127.0.0.1:{ports[i % 2]}/limited") for i in range(40))
                )
            return [r.status_code for r in responses]

        statuses = asyncio.run(fire())
    assert statuses.count(200) == 10
    assert statuses.count(429) == 30


def test_rules_fit_in_one_script_call() -> None:
    assert len(parse_rule("100/hour;5/second;1000/day")) == 3
