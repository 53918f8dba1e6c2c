"""The app each worker process of ``test_two_worker_processes_share_one_limit`` serves."""

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
gate = AuthGate(TableVerifier(), limiter=RateLimiter(store, store_timeout=5))
app = FastAPI()
gate.install(app)


@app.get("/healthz")
async def healthz() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/limited", dependencies=[Depends(rate_limited("10/hour"))])
async def limited() -> dict[str, bool]:
    return {"ok": True}
