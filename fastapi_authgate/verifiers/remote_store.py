"""Shared result stores for remote verification, and the JSON form of a cached context.

A :class:`~fastapi_authgate.protocols.ResultStore` holds text only, so a verified
:class:`AuthContext` crosses it as JSON (never pickle: whoever can write the store could then run
code in every worker). :func:`encode_result` writes the context and the absolute time the entry
dies; :func:`decode_result` reads it back strictly and answers ``None`` for anything it did not
write, so a corrupt or foreign value is a cache miss, never an identity.

:class:`RedisResultStore` is the Redis implementation. It takes any ``redis.asyncio`` client (or
an object with the same ``get``/``set`` coroutines) instead of importing redis itself, so redis
stays an optional extra imported only by ``ratelimit/redis_store.py``.

Whoever can write to the store can mint identities for the cache's lifetime: give it the same
trust as the rate-limit store (a private Redis, ``rediss://`` and a password off the host).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Set
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from fastapi_authgate.context import AuthContext, User

__all__ = ["RedisResultStore", "decode_result", "encode_result"]

_VERSION: Final = 1
_CREDENTIALS: Final = frozenset({"bearer", "cookie", "api_key"})


class _RedisClient(Protocol):
    """The two commands of ``redis.asyncio.Redis`` that the store uses."""

    async def get(self, name: str) -> Any: ...

    async def set(self, name: str, value: str, *, px: int) -> Any: ...


class RedisResultStore:
    """Verification results in Redis, each key expiring with its entry (``SET ... PX``).

    Args:
        client: a ``redis.asyncio.Redis`` (``decode_responses`` either way).
        prefix: prepended to every key, so several apps can share one database.
        close_client: whether :meth:`aclose` closes ``client`` (true when the store was handed a
            client built for it alone).
    """

    def __init__(
        self, client: Any, *, prefix: str = "authgate:remote:", close_client: bool = False
    ) -> None:
        self.client: _RedisClient = client
        self.prefix = prefix
        self._close_client = close_client

    async def get(self, key: str) -> str | None:
        value = await self.client.get(self.prefix + key)
        if value is None:
            return None
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return str(value)

    async def set(self, key: str, value: str, *, ttl: float) -> None:
        milliseconds = int(ttl * 1000)
        if milliseconds <= 0:
            return
        await self.client.set(self.prefix + key, value, px=milliseconds)

    async def aclose(self) -> None:
        """Close the client when the store owns it."""
        if self._close_client:
            closer = getattr(self.client, "aclose", None)
            if closer is not None:
                await closer()


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Set):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} is not JSON")


def encode_result(context: AuthContext, expires: float) -> str | None:
    """The JSON text of ``context`` living until ``expires``; ``None`` if it has non-JSON claims."""
    user = context.user
    document = {
        "v": _VERSION,
        "exp": expires,
        "subject": context.subject,
        "provider": context.provider,
        "credential": context.credential,
        "scopes": sorted(context.scopes),
        "session_id": context.session_id,
        "claims": context.claims,
        "expires_at": None if context.expires_at is None else context.expires_at.timestamp(),
        "user": None
        if user is None
        else {
            "id": user.id,
            "email": user.email,
            "name": user.name,
            "metadata": user.metadata,
            "product_access": sorted(user.product_access),
        },
    }
    try:
        return json.dumps(document, default=_plain, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None


def _text(value: object, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


def _texts(value: object) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("not a list of strings")
    return frozenset(value)


def _mapping(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def decode_result(text: str, now: float) -> tuple[AuthContext, float] | None:
    """``(context, expires)`` from :func:`encode_result`'s text; ``None`` if dead or not ours."""
    try:
        document = _mapping(json.loads(text))
        if document.get("v") != _VERSION:
            return None
        expires = document["exp"]
        if not isinstance(expires, int | float) or not math.isfinite(expires) or expires <= now:
            return None
        credential = document["credential"]
        if credential not in _CREDENTIALS:
            return None
        raw_user = document["user"]
        user = None
        if raw_user is not None:
            raw_user = _mapping(raw_user)
            user = User(
                id=str(_text(raw_user["id"])),
                email=_text(raw_user["email"], optional=True),
                name=_text(raw_user["name"], optional=True),
                metadata=_mapping(raw_user["metadata"]),
                product_access=_texts(raw_user["product_access"]),
            )
        stamp = document["expires_at"]
        if stamp is not None and not isinstance(stamp, int | float):
            return None
        context = AuthContext(
            subject=str(_text(document["subject"])),
            provider=str(_text(document["provider"])),
            credential=credential,
            scopes=_texts(document["scopes"]),
            session_id=_text(document["session_id"], optional=True),
            claims=_mapping(document["claims"]),
            expires_at=None if stamp is None else datetime.fromtimestamp(stamp, UTC),
            user=user,
        )
    except (ValueError, KeyError, TypeError, OverflowError, OSError, RecursionError):
        return None
    return context, float(expires)
