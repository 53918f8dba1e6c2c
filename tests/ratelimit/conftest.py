"""Rate-limit fixtures: a Redis prefix per test (its keys deleted afterwards) and every store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fastapi_authgate.protocols import RateLimitStore
from fastapi_authgate.ratelimit.memory_store import MemoryStore
from tests.conftest import FixedClock
from tests.ratelimit.support import REDIS_URL


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, clock: FixedClock) -> AsyncIterator[RateLimitStore]:
    """The same GCRA contract over every backend, all driven by the fixed clock."""
    if request.param == "memory":
        yield MemoryStore(clock=clock)
        return
    prefix: str = request.getfixturevalue("redis_prefix")
    from fastapi_authgate.ratelimit.redis_store import RedisStore

    redis_store = RedisStore.from_url(REDIS_URL, prefix=prefix, clock=clock)
    redis_store.set_deadline(5)  # the machine may be loaded; deadlines are tested elsewhere
    try:
        yield redis_store
    finally:
        await redis_store.aclose()
