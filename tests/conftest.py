"""Shared fixtures: a clean environment, the anyio backend, a fixed clock, loopback-only network."""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AUTHGATE_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("AUTHGATE_") or name.startswith("EXAMPLE_"):
            monkeypatch.delenv(name, raising=False)


class FixedClock:
    """A clock that only moves when told to: ``clock()`` reads, ``clock.advance(s)`` moves."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
        if host in ("localhost", ""):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    return True  # AF_UNIX paths and the like are local by construction


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"tests may only reach loopback, not {address!r}")
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"tests may only reach loopback, not {address!r}")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def loopback_only_network() -> Iterator[None]:
    """Any attempt to reach a host other than loopback fails loudly instead of leaking traffic."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted when the test ends."""
    from tests.ratelimit.support import REDIS_HOST, REDIS_PORT, redis_answers

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
