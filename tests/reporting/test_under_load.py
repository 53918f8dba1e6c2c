"""Over real HTTP: a down or hanging sink changes no status and no latency; hundreds of clients.

Each app is served by uvicorn on 127.0.0.1 (``tests.servers.serve``), so the reporter runs in the
server's lifespan exactly as in production, and the shutdown flush happens when the server stops.
Timing assertions have wide margins: the machine is shared, and speed is measured in ``bench/``.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections import Counter
from collections.abc import Sequence

import httpx
import pytest
from fastapi import Depends, FastAPI

from fastapi_authgate import AuthContext, AuthGate, require_user
from fastapi_authgate.events import Event
from fastapi_authgate.reporting import CallableSink, Reporter
from fastapi_authgate.testing import DevIssuer
from tests.fakes.sink import FakeSinkServer, HTTPSink
from tests.servers import serve

pytestmark = pytest.mark.anyio

CONNECTIONS = 300
REQUESTS = 600


def build_app(issuer: DevIssuer, reporter: Reporter | None) -> FastAPI:
    app = FastAPI()
    AuthGate(issuer.verifier(), reporter=reporter).install(app)

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, str]:
        return {"user": auth.subject}

    return app


async def hammer(
    url: str, token: str, *, total: int, connections: int
) -> tuple[Counter[int], list[float]]:
    """``total`` requests over ``connections`` concurrent connections; half carry a token."""
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    next_index = iter(range(total))

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            for i in next_index:
                headers = {"Authorization": f"Bearer {token}"} if i % 2 == 0 else {}
                started = time.perf_counter()
                response = await client.get("/me", headers=headers)
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    return statuses, latencies


def unused_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connections are refused
    return f"http://127.0.0.1:{port}"


async def test_hundreds_of_connections_every_request_reported_once() -> None:
    issuer = DevIssuer()
    token = issuer.issue("alice")
    server = FakeSinkServer()
    with server.running() as sink_url:
        reporter = Reporter(HTTPSink(sink_url), batch_size=200, flush_seconds=0.2)
        with serve(build_app(issuer, reporter), timeout_keep_alive=120) as url:
            statuses, _ = await hammer(url, token, total=REQUESTS, connections=CONNECTIONS)
        # the server has stopped: its lifespan flushed the reporter into the fake sink
    assert statuses == Counter({200: REQUESTS // 2, 401: REQUESTS // 2})
    reported = Counter(e["status"] for e in server.received)
    assert reported == statuses
    assert Counter(e["subject"] for e in server.received) == Counter(
        {"alice": REQUESTS // 2, None: REQUESTS // 2}
    )
    counters = reporter.counters
    assert counters.queued == counters.sent == REQUESTS
    assert counters.dropped == counters.failed == 0


async def test_a_hanging_sink_keeps_status_and_latency_and_bounds_memory() -> None:
    issuer = DevIssuer()
    token = issuer.issue("alice")

    async def hang(events: Sequence[Event]) -> None:
        await asyncio.sleep(3600)

    with serve(build_app(issuer, None), timeout_keep_alive=120) as url:
        base_statuses, base_latencies = await hammer(url, token, total=200, connections=100)
    reporter = Reporter(
        CallableSink(hang), queue_size=100, batch_size=50, send_timeout=3600, shutdown_deadline=0.5
    )
    with serve(build_app(issuer, reporter), timeout_keep_alive=120) as url:
        statuses, latencies = await hammer(url, token, total=200, connections=100)
        counters = reporter.counters
        assert counters.pending <= 100 + 50  # the queue, plus the batch stuck in the sink
    assert statuses == base_statuses == Counter({200: 100, 401: 100})
    # Nothing waited on the sink: that would take an hour. The machine is shared and loaded,
    # so the comparison with the same app without reporting only rules out a gross slowdown.
    assert max(latencies) < 60
    assert statistics.median(latencies) < 3 * statistics.median(base_latencies) + 1.0
    counters = reporter.counters
    assert counters.queued == 200 and counters.sent == 0
    assert counters.dropped + counters.failed == 200  # every event is accounted for
    assert counters.dropped >= 200 - 150


async def test_a_down_sink_keeps_status_and_counts_the_loss() -> None:
    issuer = DevIssuer()
    token = issuer.issue("alice")
    reporter = Reporter(
        HTTPSink(unused_port_url()),
        batch_size=50,
        flush_seconds=0.05,
        backoff=0.01,
        max_retries=1,
        shutdown_deadline=2,
    )
    with serve(build_app(issuer, reporter), timeout_keep_alive=120) as url:
        statuses, latencies = await hammer(url, token, total=100, connections=50)
    assert statuses == Counter({200: 50, 401: 50})
    assert max(latencies) < 60  # a refused connection per batch never reaches a request
    counters = reporter.counters
    assert counters.sent == 0 and counters.queued == 100
    assert counters.failed + counters.dropped == 100
    assert counters.retried > 0  # connection refused is worth a retry
