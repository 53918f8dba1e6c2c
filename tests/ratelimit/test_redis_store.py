"""The Redis store against a real server: server clock, expiry, NOSCRIPT, outages, two workers."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from fastapi_authgate import rate_limited
from fastapi_authgate.errors import ConfigurationError, ProviderError
from fastapi_authgate.ratelimit.limiter import RateLimiter
from fastapi_authgate.ratelimit.rules import parse_rule
from fastapi_authgate.settings import AuthGateSettings
from tests.ratelimit.support import REDIS_URL, TCPProxy, build_app

aioredis = pytest.importorskip("redis.asyncio", reason="the [redis] extra is not installed")

from fastapi_authgate.ratelimit.redis_store import RedisStore  # noqa: E402

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]


async def test_server_clock_and_expiry_set_in_the_script(redis_prefix: str) -> None:
    store = RedisStore.from_url(REDIS_URL, prefix=redis_prefix)
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


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_connection_cut_mid_run(redis_prefix: str, mode: str) -> None:
    proxy = TCPProxy()
    await proxy.start()
    store = RedisStore(
        aioredis.Redis(host="127.0.0.1", port=proxy.port, retry=None, socket_connect_timeout=0.2),
        prefix=redis_prefix,
        close_client=True,
    )
    limiter = RateLimiter(store, failure_mode=mode, store_timeout=0.5)  # type: ignore[arg-type]
    app, _ = build_app(limiter, [("/r", rate_limited("3/hour"))])
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/r")).status_code == 200
            await proxy.cut()
            during = [await client.get("/r") for _ in range(5)]
            if mode == "open":
                assert [r.status_code for r in during] == [200] * 5
                assert all("ratelimit" not in r.headers for r in during)
            else:
                assert [r.status_code for r in during] == [503] * 5
                assert all(int(r.headers["retry-after"]) >= 1 for r in during)
                assert during[0].json()["error"] == "provider_unavailable"
            assert limiter.stats.store_failures == 5
            await proxy.restore()
            # The store comes back and remembers the one request it counted before the cut.
            after = [(await client.get("/r")).status_code for _ in range(3)]
            assert after == [200, 200, 429]
    finally:
        await limiter.aclose()
        if proxy.server is not None:
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
        assert limiter.stats.store_failures == 0
    finally:
        await limiter.aclose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_worker_processes_share_one_limit(redis_prefix: str) -> None:
    ports = [_free_port(), _free_port()]
    env = {**os.environ, "WORKER_REDIS_PREFIX": redis_prefix, "AUTHGATE_REDIS_URL": REDIS_URL}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.ratelimit.worker_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        for port in ports
    ]
    try:
        deadline = time.monotonic() + 20
        for port in ports:
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
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
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=10)


def test_rules_fit_in_one_script_call() -> None:
    assert len(parse_rule("100/hour;5/second;1000/day")) == 3
