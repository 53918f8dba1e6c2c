"""Without the [redis] extra, asking for the Redis store names the extra instead of a bare trace."""

from __future__ import annotations

import importlib
import sys

import pytest
from pydantic import SecretStr

from fastapi_authgate.errors import ConfigurationError
from fastapi_authgate.ratelimit.limiter import RateLimiter
from fastapi_authgate.settings import AuthGateSettings


@pytest.fixture
def without_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import redis`` fail as it does where the extra is not installed."""
    for name in ("redis", "redis.asyncio", "redis.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "fastapi_authgate.ratelimit.redis_store", raising=False)


@pytest.mark.usefixtures("without_redis")
def test_missing_extra_names_it() -> None:
    with pytest.raises(ConfigurationError, match=r"pip install 'fastapi-authgate\[redis\]'"):
        importlib.import_module("fastapi_authgate.ratelimit.redis_store")


@pytest.mark.usefixtures("without_redis")
def test_a_redis_url_without_the_extra_fails_at_startup() -> None:
    settings = AuthGateSettings(redis_url=SecretStr("redis://127.0.0.1:6379/0"))
    with pytest.raises(ConfigurationError, match=r"fastapi-authgate\[redis\]"):
        RateLimiter.from_settings(settings)
