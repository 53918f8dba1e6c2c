"""Redis made slow, then cut, then back, under concurrent requests: each failure mode as documented.

A loopback TCP proxy sits between the store and Redis. Slow: each reply is held back longer than
the deadline. Cut: every connection is closed and new ones are refused. Each phase fires its
requests concurrently, so the store's batching, its deadline and the circuit breaker all run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Depends
from starlette.responses import JSONResponse

from fastapi_authgate import rate_limited
from fastapi_authgate.ratelimit.limiter import FailureMode, RateLimiter
from tests.ratelimit.support import TCPProxy, build_app

aioredis = pytest.importorskip("redis.asyncio", reason="the [redis] extra is not installed")

from fastapi_authgate.ratelimit.redis_store import RedisStore  # noqa: E402

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

DEADLINE = 0.5  # wide: the machine may be loaded, and a healthy phase must not miss it
COOLDOWN = 0.3


@pytest.fixture
async def proxy() -> AsyncIterator[TCPProxy]:
    proxy = TCPProxy()
    await proxy.start()
    yield proxy
    if proxy.server is not None:
        await proxy.cut()


async def _fire(client: httpx.AsyncClient, method: str, path: str, n: int) -> list[httpx.Response]:
    return list(await asyncio.gather(*(client.request(method, path) for _ in range(n))))


def _statuses(responses: list[httpx.Response]) -> list[int]:
    return sorted(r.status_code for r in responses)


@pytest.mark.parametrize("mode", ["local", "open", "closed"])
async def test_slow_then_cut_then_back(
    redis_prefix: str, proxy: TCPProxy, mode: FailureMode, caplog: pytest.LogCaptureFixture
) -> None:
    client_ = aioredis.Redis(host="127.0.0.1", port=proxy.port, socket_connect_timeout=0.2)
    store = RedisStore(client_, prefix=redis_prefix, close_client=True)
    limiter = RateLimiter(
        store,
        failure_mode=mode,
        store_timeout=DEADLINE,
        breaker_failures=2,
        breaker_cooldown=COOLDOWN,
    )
    app, _ = build_app(
        limiter,
        [("/r", rate_limited("5/hour")), ("/shadow", rate_limited("2/hour", shadow=True))],
    )

    @app.post("/login", dependencies=[Depends(rate_limited("3/hour", count="failures"))])
    async def login() -> JSONResponse:
        await asyncio.sleep(0.01)
        return JSONResponse({"error": "wrong password"}, status_code=401)

    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1))
    caplog.set_level(logging.WARNING, logger="fastapi_authgate.ratelimit.limiter")
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            healthy = await client.get("/r")
            assert healthy.status_code == 200 and "ratelimit" in healthy.headers

            # Slow: every reply comes 2.5 s late, five times the deadline.
            proxy.latency = 2.5
            slow = await _fire(client, "GET", "/r", 20)
            shadow = await _fire(client, "GET", "/shadow", 5)
            guesses = await _fire(client, "POST", "/login", 10)
            assert limiter.stats.deadline_misses >= 1
            assert limiter.degraded  # the breaker opened: Redis is not asked any more
            assert "is unavailable after 2 consecutive failed round trips" in caplog.text
            # Shadow rules never refuse and never answer 503, in any mode.
            assert _statuses(shadow) == [200] * 5
            if mode == "local":
                # Enforced in process: a fresh local bucket of 5 (Redis saw one request).
                assert _statuses(slow) == [200] * 5 + [429] * 15
                assert all("ratelimit" in r.headers for r in slow)
                assert _statuses(guesses) == [401] * 3 + [429] * 7
                assert limiter.stats.shadow_refusals == 3
            elif mode == "open":
                assert _statuses(slow) == [200] * 20
                assert all("ratelimit" not in r.headers for r in slow)
                assert _statuses(guesses) == [401] * 10
            else:
                assert _statuses(slow) == [503] * 20
                assert slow[0].json()["error"] == "provider_unavailable"
                assert all(int(r.headers["retry-after"]) >= 1 for r in slow)
                assert _statuses(guesses) == [503] * 10

            # Cut: connections closed, new ones refused; a trial after the cooldown fails too.
            await proxy.cut()
            await asyncio.sleep(COOLDOWN)
            cut = await _fire(client, "GET", "/r", 10)
            assert limiter.degraded
            expected = {"local": [429] * 10, "open": [200] * 10, "closed": [503] * 10}[mode]
            assert _statuses(cut) == expected

            # Back: the first trial after the cooldown closes the breaker, and Redis counts again.
            proxy.latency = 0.0
            await proxy.restore()
            for _ in range(20):  # a trial every cooldown, until one answers in time
                await asyncio.sleep(COOLDOWN)
                back = await client.get("/r")
                if not limiter.degraded:
                    break
            assert not limiter.degraded
            assert back.status_code in (200, 429) and "ratelimit" in back.headers
            assert "answers again" in caplog.text
            assert limiter.stats.mode_switches == 2
            fresh = await client.get("/shadow")  # its Redis bucket never saw the outage
            assert fresh.status_code == 200
    finally:
        await limiter.aclose()
    stats = limiter.stats
    assert stats.store_failures >= 2 and stats.round_trips >= 3
    assert stats.decisions >= 1 + 20 + 5 + 10 + 10 + 2
    if mode == "local":
        assert stats.local_decisions >= 20 + 5 + 10 + 10
