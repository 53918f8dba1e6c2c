"""The Redis rate-limit store: shared by every worker, one atomic Lua script per decision.

``lua/gcra.lua`` (package data) runs the GCRA step of every rule of a request in one ``EVALSHA``:
one round trip, all rules charged or none, the time taken from the server's ``TIME`` so workers
with skewed clocks still agree, and each charged bucket given an expiry equal to its drain time in
the same script, so Redis forgets idle keys by itself. The script is sent by hash and loaded again
when the server answers ``NOSCRIPT`` (after a restart or ``SCRIPT FLUSH``).

Bucket keys carry a Redis Cluster hash tag (``{...}``) built by the limiter, so all rules of one
request live in one slot. This is the only module that imports :mod:`redis`; without the ``redis``
extra, importing it raises :class:`ConfigurationError` naming the extra.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from fastapi_authgate.context import Decision
from fastapi_authgate.errors import ConfigurationError, ProviderError
from fastapi_authgate.protocols import Clock

try:
    import redis.asyncio as aioredis
    from redis.exceptions import NoScriptError, RedisError
except ImportError as exc:  # pragma: no cover - exercised with the extra uninstalled
    raise ConfigurationError(
        "AUTHGATE_REDIS_URL needs the redis client: pip install 'fastapi-authgate[redis]'"
    ) from exc

__all__ = ["GCRA_SCRIPT", "RedisStore"]

GCRA_SCRIPT: str = (
    resources.files("fastapi_authgate.ratelimit").joinpath("lua/gcra.lua").read_text("utf-8")
)
"""The Lua source of one GCRA decision (see the module docstring)."""

_SHA = hashlib.sha1(GCRA_SCRIPT.encode("utf-8"), usedforsecurity=False).hexdigest()


def _number(value: Any) -> float:
    return float(value.decode() if isinstance(value, bytes) else value)


class RedisStore:
    """GCRA buckets in Redis (``redis.asyncio``).

    Args:
        client: a ``redis.asyncio.Redis`` client.
        prefix: prepended to every key, so several apps can share one database.
        clock: for tests only: pass "now" to the script instead of the server's ``TIME``.
        close_client: whether :meth:`aclose` closes ``client`` (true for :meth:`from_url`).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "authgate:",
        clock: Clock | None = None,
        close_client: bool = False,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ConfigurationError(
                f"RedisStore prefix {prefix!r} must not contain braces: the limiter's Redis "
                "Cluster hash tag must be the first {...} of every key"
            )
        self.client = client
        self._commands: Any = client  # the command methods are untyped in some redis releases
        self.prefix = prefix
        self._clock = clock
        self._close_client = close_client

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "authgate:",
        max_connections: int = 64,
        clock: Clock | None = None,
        **kwargs: Any,
    ) -> RedisStore:
        """A store owning a new client for ``url`` (``redis://``, ``rediss://``, ``unix://``).

        The pool blocks (up to the limiter's deadline) when all ``max_connections`` are busy,
        instead of failing the request as redis-py's default pool does past its size. Extra
        keyword arguments go to the connection pool.

        Raises:
            ConfigurationError: the URL is not a Redis URL.
        """
        kwargs.setdefault("socket_connect_timeout", 1.0)
        try:
            pool: Any = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=None, **kwargs
            )
        except ValueError as exc:
            raise ConfigurationError("AUTHGATE_REDIS_URL is not a valid Redis URL") from exc
        client: Any = aioredis.Redis(connection_pool=pool)
        client.auto_close_connection_pool = True  # closing the store closes the pool it made
        return cls(client, prefix=prefix, clock=clock, close_client=True)

    async def hit(self, key: str, *, limit: int, period: float, cost: int = 1) -> Decision:
        """One atomic GCRA step for ``key``; ``cost`` 0 asks without charging.

        Raises:
            ProviderError: Redis is unreachable or answered an error.
        """
        return (await self.hit_many(((key, limit, period),), cost=cost))[0]

    async def hit_many(
        self, buckets: Sequence[tuple[str, int, float]], *, cost: int = 1
    ) -> list[Decision]:
        """One atomic GCRA step over several ``(key, limit, period)`` rules, all or none.

        Raises:
            ProviderError: Redis is unreachable or answered an error.
        """
        keys = [self.prefix + key for key, _, _ in buckets]
        args: list[str | int | float] = [cost, "" if self._clock is None else repr(self._clock())]
        for _, limit, period in buckets:
            args.append(limit)
            args.append(period)
        try:
            try:
                reply = await self._evalsha(keys, args)
            except NoScriptError:
                await self._commands.script_load(GCRA_SCRIPT)
                reply = await self._evalsha(keys, args)
        except (RedisError, OSError) as exc:
            raise ProviderError("The rate-limit store (Redis) is unavailable") from exc
        try:
            return [
                Decision(
                    allowed=int(reply[i]) == 1,
                    limit=limit,
                    remaining=int(reply[i + 1]),
                    reset_after=_number(reply[i + 2]),
                    retry_after=_number(reply[i + 3]),
                    period=period,
                )
                for i, (_, limit, period) in zip(
                    range(0, 4 * len(buckets), 4), buckets, strict=True
                )
            ]
        except (TypeError, ValueError, IndexError) as exc:
            raise ProviderError("The rate-limit store (Redis) answered garbage") from exc

    async def _evalsha(self, keys: list[str], args: list[str | int | float]) -> list[Any]:
        reply: list[Any] = await self._commands.evalsha(_SHA, len(keys), *keys, *args)
        return reply

    async def aclose(self) -> None:
        """Close the client when the store owns it (built by :meth:`from_url`)."""
        if self._close_client:
            await self._commands.aclose()
