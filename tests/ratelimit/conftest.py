"""Rate-limit fixtures: a Redis prefix per test (its keys deleted afterwards) and every store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from fastapi_authgate.protocols import RateLimitStore
from fastapi_authgate.ratelimit.memory_store import MemoryStore
from tests.conftest import FixedClock
from tests.ratelimit.support import REDIS_HOST, REDIS_PORT, REDIS_URL, redis_answers


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted when the test ends."""
    if not redis_answers():
        pytest.skip(f"no Redis server answers on {REDIS_HOST}:{REDIS_PORT}")
    redis = pytest.importorskip("redis", reason="the [redis] extra is not installed")

    prefix = f"authgate-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


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
