"""Without the [redis] extra, asking for the Redis store names the extra instead of a bare trace."""

from __future__ import annotations

import importlib
import sys

import pytest

from fastapi_authgate.errors import ConfigurationError


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    monkeypatch.setitem(sys.modules, "redis.exceptions", None)
    monkeypatch.delitem(sys.modules, "fastapi_authgate.ratelimit.redis_store", raising=False)
    with pytest.raises(ConfigurationError, match=r"pip install 'fastapi-authgate\[redis\]'"):
        importlib.import_module("fastapi_authgate.ratelimit.redis_store")


def test_a_redis_url_without_the_extra_fails_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import SecretStr

    from fastapi_authgate.ratelimit.limiter import RateLimiter
    from fastapi_authgate.settings import AuthGateSettings

    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    monkeypatch.setitem(sys.modules, "redis.exceptions", None)
    monkeypatch.delitem(sys.modules, "fastapi_authgate.ratelimit.redis_store", raising=False)
    settings = AuthGateSettings(redis_url=SecretStr("redis://127.0.0.1:6379/0"))
    with pytest.raises(ConfigurationError, match=r"fastapi-authgate\[redis\]"):
        RateLimiter.from_settings(settings)
