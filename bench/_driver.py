"""A minimal in-process ASGI driver: it calls the app directly, so the numbers measure the app.

An HTTP client (even httpx over ``ASGITransport``) would add more per-request cost than the guards
being measured and flatten every ratio towards 1. Each variant is its own application with one
route at the same path (a router matches routes in order, so the fifth route of one app pays for
four failed matches that the first does not). Variants are measured in interleaved rounds and the
ratio is taken per round, then the median across rounds, so machine drift on a shared host
affects both sides of each ratio alike.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Headers = list[tuple[bytes, bytes]]


def make_scope(path: str, headers: Headers, client: tuple[str, int]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": client,
        "server": ("127.0.0.1", 8000),
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def call(
    app: Any, path: str, headers: Headers, client: tuple[str, int] = ("10.0.0.1", 5555)
) -> tuple[int, bytes]:
    """One request; returns (status, body)."""
    status = 0
    body = b""

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    await app(make_scope(path, headers, client), _receive, send)
    return status, body


async def _run(
    app: Any, path: str, headers_for: Callable[[int], Headers], n: int, pass_loop: bool = False
) -> float:
    sent = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    start = time.perf_counter()
    if pass_loop:
        for i in range(n):
            await app(make_scope(path, headers_for(i), ("10.0.0.1", 5555)), _receive, send)
            await asyncio.sleep(0)  # one trip through the loop: ready tasks run
    else:
        for i in range(n):
            await app(make_scope(path, headers_for(i), ("10.0.0.1", 5555)), _receive, send)
    elapsed = time.perf_counter() - start
    bad = [s for s in sent if s != 200]
    if bad:
        raise RuntimeError(f"{path}: {len(bad)} non-200 responses (first {bad[0]})")
    return n / elapsed


def measure(
    routes: Sequence[tuple[str, Any, str, Callable[[int], Headers]]],
    *,
    requests_per_round: int,
    rounds: int,
    start: Callable[[], Awaitable[None]] | None = None,
    stop: Callable[[], Awaitable[None]] | None = None,
    pass_loop: bool = False,
) -> dict[str, list[float]]:
    """Throughput (requests/s) per route name, one entry per round, routes interleaved.

    ``start`` and ``stop`` are awaited in the measuring event loop before the warm-up and after
    the last round (background workers an app needs, as its lifespan would run them).

    ``pass_loop`` hands control to the event loop after every request, as a server does between
    requests (it waits on sockets), so background tasks run *during* a round, charged to the
    variant that gave them work. Without it a request that awaits no I/O never suspends, and a
    background worker would run only between rounds, doing its work unmeasured. Every variant
    of a run pays the same hand-over, so ratios stay like with like.
    """
    results: dict[str, list[float]] = {name: [] for name, _, _, _ in routes}

    async def main() -> None:
        if start is not None:
            await start()
        for _name, app, path, headers_for in routes:  # warm-up: caches and allocator
            await _run(app, path, headers_for, max(50, requests_per_round // 10), pass_loop)
        gc.collect()
        gc.disable()  # a collection landing in one route's slice would be charged to that route
        try:
            for round_no in range(rounds):
                order = routes if round_no % 2 == 0 else list(reversed(routes))
                for name, app, path, headers_for in order:
                    results[name].append(
                        await _run(app, path, headers_for, requests_per_round, pass_loop)
                    )
                gc.collect()
        finally:
            gc.enable()
            if stop is not None:
                await stop()

    asyncio.run(main())
    return results


def ratio(results: dict[str, list[float]], name: str, base: str) -> float:
    """Median over rounds of (route throughput / base throughput) measured in the same round."""
    return statistics.median(a / b for a, b in zip(results[name], results[base], strict=True))


def print_table(results: dict[str, list[float]]) -> None:
    """Median throughput per variant and its ratios to ``bare`` and ``noop``, in run order."""
    print(f"{'route':<12} {'req/s (median)':>15} {'x bare':>8} {'x noop':>8}")
    for name, rounds in results.items():
        print(
            f"{name:<12} {statistics.median(rounds):>15,.0f} {ratio(results, name, 'bare'):>8.3f}"
            f" {ratio(results, name, 'noop'):>8.3f}"
        )
