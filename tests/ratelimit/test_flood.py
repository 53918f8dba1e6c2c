"""A flood on two uvicorn workers sharing Redis: the limit holds at hundreds of connections.

256 keep-alive connections from one client IP (loopback) hammer ``100/minute`` on two worker
processes for a few seconds, with the shipped defaults (deadline 0.5 s, failure mode ``local``).
The number allowed must stay within what GCRA allows for the elapsed time (a burst of 100 plus one
per 0.6 s), plus one per worker, and nothing may answer 5xx. Loopback only, bounded in time; the
client is a minimal HTTP/1.1 one on raw asyncio streams so that it, not the servers, stays cheap.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter

import httpx
import pytest

from tests.ratelimit.support import REDIS_URL, uvicorn_workers

pytestmark = [pytest.mark.redis, pytest.mark.load]

CONNECTIONS = 256
SECONDS = 3.0
LIMIT, PERIOD = 100, 60.0


async def _connection(port: int, stop_at: float, statuses: Counter[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET /flood HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    try:
        while time.monotonic() < stop_at:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            statuses[status] += 1
    finally:
        writer.close()


async def _flood(ports: list[int]) -> tuple[Counter[int], float]:
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(
            *(
                _connection(ports[i % len(ports)], started + SECONDS, statuses)
                for i in range(CONNECTIONS)
            )
        ),
        timeout=SECONDS + 20,
    )
    return statuses, time.monotonic() - started


def test_the_limit_holds_under_a_flood_on_two_workers(redis_prefix: str) -> None:
    env = {
        "WORKER_REDIS_PREFIX": redis_prefix,
        "AUTHGATE_REDIS_URL": REDIS_URL,
        "WORKER_STORE_TIMEOUT": "0.5",  # the shipped default
    }
    with uvicorn_workers(2, env) as ports:
        statuses, elapsed = asyncio.run(_flood(ports))
        stats = [httpx.get(f"http://127.0.0.1:{port}/stats").json() for port in ports]
    total = sum(statuses.values())
    allowed = statuses[200]
    allowance = LIMIT + math.floor(elapsed / (PERIOD / LIMIT)) + 1 + len(ports)
    print(f"{total} requests in {elapsed:.1f} s, {allowed} allowed (at most {allowance}); {stats}")
    assert total > 2 * LIMIT  # the flood really went past the limit
    assert set(statuses) <= {200, 429}, statuses  # no 5xx, nothing else
    assert LIMIT <= allowed <= allowance
    for worker in stats:
        assert worker["decisions"] > 0  # both workers took part
        assert worker["decisions_per_round_trip"] > 1  # and batched their decisions
