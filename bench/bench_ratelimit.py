"""Rate-limit throughput, side by side in one process, as ratios; then the memory bound.

Routes (all return the same plain dict the same way, so only the dependency differs):

- ``bare``     no dependency
- ``noop``     a no-op dependency taking ``(HTTPConnection, Response)``, the signature of the
               dependency ``rate_limited`` returns: FastAPI's own floor for such a dependency
- ``memory``   ``rate_limited("1000000000/second", key="ip")`` on the default in-process store:
               it never refuses (the driver raises on any non-200) but counts every request and
               sends the ``RateLimit`` headers, so the whole hot path runs
- ``redis``    the same rule on a :class:`RedisStore` (database 15, a unique key prefix deleted
               afterwards, ``store_timeout=1.0``); skipped with the reason when no Redis answers

Then the memory bound: one :class:`MemoryStore` fed a million distinct random IPv4 keys against
``10/second`` with an injected clock that advances 1 ms per key (so they span 1,000 s), printing
the size at the end, the largest size seen and the bound the store's docstring promises.

Run: ``.venv/bin/python -m bench.bench_ratelimit`` (add ``--quick`` for a short run).
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import sys
import time
import uuid
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.requests import HTTPConnection
from starlette.responses import Response

from bench._apps import one_route_app
from bench._driver import Headers, make_scope, measure, print_table, ratio
from fastapi_authgate import AuthGate, rate_limited
from fastapi_authgate.providers.dev import DevIssuer
from fastapi_authgate.ratelimit.limiter import RateLimiter
from fastapi_authgate.ratelimit.memory_store import SWEEP_ABOVE, SWEEP_PER_CALL, MemoryStore

REDIS_URL = "redis://127.0.0.1:6379/15"
NEVER_REFUSES = "1000000000/second"
FLOOD_RULE = (10, 1)  # 10/second: one hit keeps a key live for 0.1 s
FLOOD_STEP = 0.001  # seconds of injected clock per key


async def noop(request: HTTPConnection, response: Response) -> None:
    """FastAPI's floor for a dependency with the signature of ``rate_limited``'s."""
    return None


def _gate(limiter: RateLimiter | None = None) -> AuthGate:
    return AuthGate(DevIssuer().verifier(), limiter=limiter)


def redis_down_reason(url: str = REDIS_URL) -> str | None:
    """``None`` when a Redis server answers PING at ``url``, else why not."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return None
            return f"the server on {host}:{port} did not answer PING"
    except OSError as exc:
        return f"no Redis server on {host}:{port} ({exc})"


def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (synchronous client); returns how many."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


def build(with_redis: bool) -> tuple[dict[str, FastAPI], RateLimiter | None, str | None]:
    """The apps by variant name, the Redis limiter and its key prefix (``None`` without Redis)."""
    apps = {
        "bare": one_route_app(_gate(), None),
        "noop": one_route_app(_gate(), noop),
        "memory": one_route_app(_gate(), rate_limited(NEVER_REFUSES, key="ip")),
    }
    limiter = prefix = None
    if with_redis:
        from fastapi_authgate.ratelimit.redis_store import RedisStore

        prefix = f"authgate-bench:{uuid.uuid4().hex}:"
        store = RedisStore.from_url(REDIS_URL, prefix=prefix)
        limiter = RateLimiter(store, store_timeout=1.0)
        apps["redis"] = one_route_app(_gate(limiter), rate_limited(NEVER_REFUSES, key="ip"))
    return apps, limiter, prefix


def check_headers(app: FastAPI) -> None:
    """One request outside the timed rounds: a 200 that carries the rate-limit headers."""
    started: dict[str, Any] = {}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    asyncio.run(app(make_scope("/r", [], ("10.0.0.1", 5555)), receive, send))
    names = {name for name, _ in started.get("headers", [])}
    if started.get("status") != 200 or not {b"ratelimit", b"ratelimit-policy"} <= names:
        raise RuntimeError(f"the limited route answered {started} without rate-limit headers")


def flood(keys: int) -> dict[str, float]:
    """Drive one MemoryStore with ``keys`` distinct random IPv4 keys, 1 ms of clock apart."""
    limit, period = FLOOD_RULE
    now = [1_800_000_000.0]
    store = MemoryStore(clock=lambda: now[0])
    rng = random.Random(20240601)
    bits = rng.getrandbits
    seen: set[int] = set()
    largest = 0
    started = time.perf_counter()
    i = 0
    while i < keys:
        address = bits(32)
        if address in seen:
            continue
        seen.add(address)
        i += 1
        now[0] += FLOOD_STEP
        ip = f"{address >> 24}.{(address >> 16) & 255}.{(address >> 8) & 255}.{address & 255}"
        coroutine = store.hit(f"{{rl:GET /r:ip:{ip}}}:10/second", limit=limit, period=period)
        try:
            coroutine.send(None)  # the memory store never suspends: no event loop needed
        except StopIteration:
            pass
        else:  # pragma: no cover - a store that awaits something would land here
            raise RuntimeError("MemoryStore.hit suspended")
        size = len(store)
        if size > largest:
            largest = size
    elapsed = time.perf_counter() - started
    live = (period / limit) / FLOOD_STEP  # keys live at once: arrivals per s x life of one hit
    return {
        "keys": keys,
        "final": len(store),
        "largest": largest,
        "live": live,
        "bound": max(math.ceil(2 * live * SWEEP_PER_CALL / (SWEEP_PER_CALL - 1)), SWEEP_ABOVE),
        "seconds": elapsed,
    }


def main() -> None:
    quick = "--quick" in sys.argv
    reason = redis_down_reason()
    apps, redis_limiter, prefix = build(with_redis=reason is None)
    # The Redis client binds its connections to the event loop of the measurement, so only the
    # memory route is probed beforehand; the Redis route is checked by its counters afterwards.
    check_headers(apps["memory"])
    deleted = 0
    try:
        no_headers: Headers = []
        routes = [(name, app, "/r", (lambda i: no_headers)) for name, app in apps.items()]
        results = measure(
            routes, requests_per_round=200 if quick else 400, rounds=15 if quick else 41
        )
    finally:
        if prefix is not None:
            deleted = delete_prefix(REDIS_URL, prefix)
    print_table(results)
    if redis_limiter is None:
        print(f"redis        skipped: {reason}")
    else:
        failures = redis_limiter.stats.store_failures
        if failures:
            raise RuntimeError(f"the Redis route failed open ({failures} store failures)")
        print(
            f"(redis: prefix {prefix} on {REDIS_URL}, no store failure;"
            f" {deleted} leftover keys deleted)"
        )
    print()
    print(f"memory-limited / noop dependency: {ratio(results, 'memory', 'noop'):.3f}")
    print(f"memory-limited / bare route     : {ratio(results, 'memory', 'bare'):.3f}")
    print()
    stats = flood(200_000 if quick else 1_000_000)
    print(
        f"MemoryStore flood: {stats['keys']:,.0f} distinct random IPv4 keys, rule 10/second, "
        f"clock +{FLOOD_STEP * 1000:g} ms per key ({stats['keys'] * FLOOD_STEP:,.0f} s)"
    )
    bound = f"docstring bound max(2 L x 8/7, {SWEEP_ABOVE})"
    verdict = "held" if stats["largest"] <= stats["bound"] else "EXCEEDED"
    print(f"  {'keys live at once (arrivals/s x 0.1 s)':<40}: {stats['live']:,.0f}")
    print(f"  {'store size at the end':<40}: {stats['final']:,.0f}")
    print(f"  {'largest size seen':<40}: {stats['largest']:,.0f}")
    print(f"  {bound:<40}: {stats['bound']:,.0f}  ({verdict})")
    print(
        f"  time: {stats['seconds']:.2f} s ({stats['seconds'] / stats['keys'] * 1e6:.2f} us/key,"
        " including a len() per key)"
    )


if __name__ == "__main__":
    main()
