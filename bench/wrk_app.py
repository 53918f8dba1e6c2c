"""The app ``bench_wrk`` serves under uvicorn: one route at ``/r``, its guard from the environment.

``BENCH_VARIANT`` picks what guards ``GET /r``:

- ``bare``    nothing
- ``memory``  ``rate_limited("1000000000/second", key="ip")`` on the in-process store
- ``redis``   the same rule on a :class:`RedisStore` (``BENCH_REDIS_URL``, keys under
              ``BENCH_REDIS_PREFIX``), with the shipped defaults (deadline 0.5 s, mode ``local``)
- ``report_fast``     the bare route with background reporting into a sink that accepts every
                      batch at once (the reporter's worker runs in uvicorn's event loop)
- ``report_hanging``  the same with a sink whose ``send`` never returns (queue of 1,000: every
                      request takes the drop-the-oldest path)

The rule is never reached, so every request runs the whole limited path and answers 200 (``wrk``
reports anything else). At shutdown each worker writes its limiter counters (and, when it
reports, its reporter's counters, read before the shutdown flush) to
``BENCH_STATS_DIR/<pid>.json``, which is how the benchmark reads decisions and round trips.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from bench._apps import one_route_app
from bench.bench_reporting import FastSink, HangingSink
from fastapi_authgate import AuthGate, rate_limited
from fastapi_authgate.providers.dev import DevIssuer
from fastapi_authgate.ratelimit.limiter import RateLimiter
from fastapi_authgate.reporting import Reporter

NEVER_REFUSES = "1000000000/second"
VARIANT = os.environ.get("BENCH_VARIANT", "bare")


limiter: RateLimiter | None = None
reporter: Reporter | None = None
if VARIANT == "report_fast":
    reporter = Reporter(FastSink())
elif VARIANT == "report_hanging":
    reporter = Reporter(HangingSink(), queue_size=1000, send_timeout=3600, shutdown_deadline=0)
    # its shutdown warns that the queue is lost: expected here, and noise in the output
    logging.getLogger("fastapi_authgate.reporting").setLevel(logging.ERROR)
elif VARIANT == "memory":
    limiter = RateLimiter()
elif VARIANT == "redis":
    from fastapi_authgate.ratelimit.redis_store import RedisStore

    limiter = RateLimiter(
        RedisStore.from_url(os.environ["BENCH_REDIS_URL"], prefix=os.environ["BENCH_REDIS_PREFIX"])
    )
elif VARIANT != "bare":
    raise SystemExit(f"unknown BENCH_VARIANT {VARIANT!r}")

gate = AuthGate(DevIssuer().verifier(), limiter=limiter, reporter=reporter)
app: FastAPI = one_route_app(
    gate, None if limiter is None else rate_limited(NEVER_REFUSES, key="ip")
)


_gate_lifespan = app.router.lifespan_context


@asynccontextmanager
async def _lifespan_writing_stats(inner: FastAPI) -> AsyncIterator[None]:
    reported: dict[str, int] = {}
    async with _gate_lifespan(inner):
        yield
        if reporter is not None:  # before the gate's shutdown flushes the queue
            c = reporter.counters
            reported = {"queued": c.queued, "sent": c.sent, "dropped": c.dropped}
    directory = os.environ.get("BENCH_STATS_DIR")
    if directory:
        stats = gate.limiter.stats
        counters = {
            **reported,
            "decisions": stats.decisions,
            "round_trips": stats.round_trips,
            "batched_decisions": stats.batched_decisions,
            "deadline_misses": stats.deadline_misses,
            "store_failures": stats.store_failures,
        }
        Path(directory, f"{os.getpid()}.json").write_text(json.dumps(counters))  # noqa: ASYNC240


app.router.lifespan_context = _lifespan_writing_stats
