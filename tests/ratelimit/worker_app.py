"""The app each uvicorn worker of the multi-process tests serves (one Redis, many processes).

``WORKER_REDIS_PREFIX`` isolates a test's keys; ``WORKER_STORE_TIMEOUT`` sets the limiter's
deadline (default 5 s; the flood test runs the shipped default instead).
"""

from __future__ import annotations

import os

from fastapi import Depends, FastAPI

from fastapi_authgate import AuthGate, rate_limited
from fastapi_authgate.ratelimit.limiter import RateLimiter
from fastapi_authgate.ratelimit.redis_store import RedisStore
from tests.ratelimit.support import TableVerifier

store = RedisStore.from_url(
    os.environ["AUTHGATE_REDIS_URL"], prefix=os.environ["WORKER_REDIS_PREFIX"]
)
limiter = RateLimiter(store, store_timeout=float(os.environ.get("WORKER_STORE_TIMEOUT", "5")))
gate = AuthGate(TableVerifier(), limiter=limiter)
app = FastAPI()
gate.install(app)


@app.get("/healthz")
async def healthz() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/stats")
async def stats() -> dict[str, float]:
    counters = limiter.stats
    return {
        "decisions": counters.decisions,
        "round_trips": counters.round_trips,
        "decisions_per_round_trip": counters.decisions_per_round_trip,
        "deadline_misses": counters.deadline_misses,
        "store_failures": counters.store_failures,
        "local_decisions": counters.local_decisions,
        "mode_switches": counters.mode_switches,
    }


@app.get("/limited", dependencies=[Depends(rate_limited("10/hour"))])
async def limited() -> dict[str, bool]:
    return {"ok": True}


@app.get("/flood", dependencies=[Depends(rate_limited("100/minute"))])
async def flood() -> dict[str, bool]:
    return {"ok": True}
