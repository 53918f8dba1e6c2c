"""Remote verification without a call per request: a short positive cache and single flight.

Providers that verify a credential by asking their server (Qyzar's session verify, tiun's token
exchange) would otherwise make one upstream call per request. :class:`RemoteVerificationCache`
sits in front of that call:

* **Keyed by a hash.** Entries are found by the SHA-256 of ``namespace NUL credential``
  (:meth:`RemoteVerificationCache.key`); the credential itself is never stored, so neither a
  memory dump nor the shared store holds a usable token.
* **Positive answers only, briefly.** A verified context lives ``ttl`` seconds (default 30), never
  past the bound the caller gives (the credential's own expiry) nor the context's
  ``expires_at``. Refusals and failures are never cached: a user who signs in again, or a
  provider that recovers, is seen on the next request.
* **Bounded.** The in-process tier is a :class:`~fastapi_authgate.verifiers.token_cache.TokenCache`
  (``max_size`` entries, O(1) eviction of the oldest).
* **Single flight.** Concurrent lookups of one key share one upstream call. Its outcome, answer or
  error, reaches every waiter. The call runs in its own task, so a waiter that is cancelled (its
  client went away, its own deadline hit) leaves the call running for the others.
* **Optionally shared.** With a :class:`~fastapi_authgate.protocols.ResultStore` (for instance
  :class:`~fastapi_authgate.verifiers.remote_store.RedisResultStore`) a result verified by one
  worker serves all of them. The store is a cache, not an authority: when it is slow (past
  ``store_timeout``) or down, the lookup goes upstream as if it had missed, and a log line says so
  at most once a minute.

The single flight uses :mod:`asyncio` directly: it needs a task that belongs to no request
(``asyncio.shield`` over a task), which anyio offers only through a task group someone must own.
ASGI servers run FastAPI on asyncio.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

from fastapi_authgate.context import AuthContext
from fastapi_authgate.errors import ConfigurationError
from fastapi_authgate.protocols import Clock, ResultStore
from fastapi_authgate.verifiers.remote_store import decode_result, encode_result
from fastapi_authgate.verifiers.token_cache import TokenCache

__all__ = ["RemoteVerificationCache", "UpstreamCall"]

logger = logging.getLogger(__name__)

UpstreamCall = Callable[[], Awaitable[AuthContext]]
"""Asks the provider; returns the verified context or raises (``AuthenticationError`` etc.)."""

_STORE_LOG_INTERVAL: Final = 60.0


class RemoteVerificationCache:
    """Answers repeated remote verifications from memory (and a shared store), one call per miss.

    Args:
        namespace: what the results belong to, e.g. ``"tiun:live"`` or ``"qyzar:<project id>"``;
            part of every key, so two providers or projects never see each other's entries.
        ttl: seconds a positive answer is reused (0 turns caching off; single flight stays).
        max_size: entries kept in process (0: no in-process tier).
        clock: returns UNIX seconds; injected in tests.
        store: an optional shared second tier (see :class:`ResultStore`).
        store_timeout: seconds one store read or write may take before it counts as a miss.

    Raises:
        ConfigurationError: a negative ``ttl``/``max_size`` or a non-positive ``store_timeout``.
    """

    def __init__(
        self,
        *,
        namespace: str,
        ttl: float = 30,
        max_size: int = 10_000,
        clock: Clock = time.time,
        store: ResultStore | None = None,
        store_timeout: float = 0.1,
    ) -> None:
        if "\0" in namespace:
            raise ConfigurationError("the remote-verification namespace must not contain NUL")
        if not (ttl >= 0 and math.isfinite(ttl)) or max_size < 0 or not store_timeout > 0:
            raise ConfigurationError(
                "remote verification cache: ttl and max_size must be >= 0, store_timeout > 0"
            )
        self.namespace = namespace
        self.ttl = float(ttl)
        self.store = store
        self.store_timeout = store_timeout
        self._namespace = namespace.encode("utf-8")
        self._key_prefix = self._namespace + b"\0"
        self._clock = clock
        self._local = TokenCache(max_size)
        self._flights: dict[bytes, asyncio.Task[AuthContext]] = {}
        self._store_logged_at = -math.inf
        self.upstream_calls = 0
        """How many upstream calls were made (for tests and benchmarks)."""

    def key(self, credential: str | bytes) -> bytes:
        """The cache key of ``credential``: SHA-256 of ``namespace NUL credential``."""
        if isinstance(credential, str):
            return TokenCache.key(credential, self._namespace)
        return TokenCache.key_of_bytes(credential, self._namespace)

    def peek(self, key: bytes) -> AuthContext | None:
        """The in-process answer for ``key`` if one is alive; never waits, never calls anyone."""
        return self._local.get(key, self._clock())

    def lookup(self, credential: bytes) -> AuthContext | None:
        """``peek(key(credential))`` in one step, for a ``cached_bearer`` fast path."""
        return self._local.get(
            hashlib.sha256(self._key_prefix + credential).digest(), self._clock()
        )

    async def verify(
        self, key: bytes, call: UpstreamCall, *, not_after: float | None = None
    ) -> AuthContext:
        """The verified context for ``key``: from memory, the store, or one shared ``call``.

        Args:
            key: from :meth:`key`.
            call: asks the provider; run at most once at a time per key.
            not_after: UNIX time past which the answer must not be reused (the credential's
                ``exp``); ``None`` when the credential carries none.

        Raises:
            Whatever ``call`` raised (``AuthenticationError``, ``ProviderError``); nothing is
            cached then.
        """
        context = self._local.get(key, self._clock())
        if context is not None:
            return context
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._fill(key, call, not_after))
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(flight)

    def _landed(self, key: bytes, flight: asyncio.Task[AuthContext]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved here, so a flight whose waiters all left logs nothing

    async def _fill(self, key: bytes, call: UpstreamCall, not_after: float | None) -> AuthContext:
        hex_key = self.namespace + ":" + key.hex()
        if self.store is not None and self.ttl > 0:
            shared = await self._store_get(hex_key)
            if shared is not None:
                context, expires = shared
                if not_after is not None:
                    expires = min(expires, not_after)
                self._local.put(key, context, expires_at=expires, now=self._clock())
                return context
        self.upstream_calls += 1
        context = await call()
        now = self._clock()
        expires = self._expiry(context, now, not_after)
        if expires > now:
            self._local.put(key, context, expires_at=expires, now=now)
            if self.store is not None:
                await self._store_set(hex_key, context, expires, now)
        return context

    def _expiry(self, context: AuthContext, now: float, not_after: float | None) -> float:
        expires = now + self.ttl
        if not_after is not None:
            expires = min(expires, not_after)
        if context.expires_at is not None:
            expires = min(expires, context.expires_at.timestamp())
        return expires

    async def _store_get(self, hex_key: str) -> tuple[AuthContext, float] | None:
        assert self.store is not None
        try:
            with anyio.fail_after(self.store_timeout):
                text = await self.store.get(hex_key)
        except Exception as exc:  # a cache that fails is a miss, whatever the client raised
            self._store_failed("read", exc)
            return None
        if text is None:
            return None
        result = decode_result(text, self._clock())
        if result is None:
            logger.debug("remote verification store: unusable entry for %s ignored", self.namespace)
        return result

    async def _store_set(
        self, hex_key: str, context: AuthContext, expires: float, now: float
    ) -> None:
        assert self.store is not None
        text = encode_result(context, expires)
        if text is None:
            return
        try:
            with anyio.fail_after(self.store_timeout):
                await self.store.set(hex_key, text, ttl=expires - now)
        except Exception as exc:  # the answer is still good; only sharing it failed
            self._store_failed("write", exc)

    def _store_failed(self, action: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._store_logged_at >= _STORE_LOG_INTERVAL:
            self._store_logged_at = now
            reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            logger.warning(
                "remote verification cache %s: shared store %s failed (%s); asking the provider "
                "directly (logged at most once a minute)",
                self.namespace,
                action,
                reason,
            )

    def clear(self) -> None:
        """Forget every in-process entry."""
        self._local.clear()

    def __len__(self) -> int:
        return len(self._local)

    async def aclose(self) -> None:
        """At shutdown: cancel calls still in flight and close the store (if it has ``aclose``)."""
        for flight in list(self._flights.values()):
            flight.cancel()
        closer = getattr(self.store, "aclose", None)
        if closer is not None:
            await closer()
