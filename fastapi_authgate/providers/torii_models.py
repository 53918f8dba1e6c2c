"""torii's REST answers as frozen, typed values, and the checks that build them.

A body that does not have the documented shape is the provider answering garbage: it becomes a
:class:`~fastapi_authgate.errors.ProviderError` (logged once, naming the call and the field), never
a half-built object or a ``KeyError`` in the caller's route. Unknown fields are ignored, as
``providers/WIRE.md`` asks; each user keeps its whole body in :attr:`ToriiUser.raw` so a field we
do not model yet is still reachable.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from fastapi_authgate.context import freeze_mapping
from fastapi_authgate.errors import ProviderError

__all__ = [
    "UNSET",
    "Address",
    "ToriiSession",
    "ToriiUser",
    "ToriiUserPage",
    "Unset",
]

logger = logging.getLogger("fastapi_authgate.providers.torii")


class Unset(enum.Enum):
    """The type of :data:`UNSET`: "this argument was not given" (distinct from ``None``)."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET
"""Default of every optional field argument: the key is left out of the request body."""

Address = str | Mapping[str, object]
"""An address as torii stores it: free text or a JSON object."""


@dataclass(frozen=True, slots=True)
class ToriiUser:
    """A torii user (``GET /v1/users/{id}`` and friends)."""

    id: str
    email: str | None
    name: str | None
    phone: str | None
    address: Address | None
    email_verified: bool
    banned: bool
    environment_id: str | None
    created_at: datetime | None
    updated_at: datetime | None
    raw: Mapping[str, object]
    """The whole user object as received, read-only (fields we do not model live here)."""


@dataclass(frozen=True, slots=True)
class ToriiUserPage:
    """One page of ``users.list``; ``next_cursor`` is ``None`` on the last page."""

    data: tuple[ToriiUser, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ToriiSession:
    """A session of a user (``GET /v1/users/{id}/sessions``).

    ``status`` is ``"active"``, ``"revoked"`` or ``"expired"`` today; a newer status is passed
    through as its text rather than refused.
    """

    id: str
    user_id: str
    status: str
    created_at: datetime | None
    last_active_at: datetime | None
    expires_at: datetime | None


class _Garbage(Exception):
    """The body lacks a field or has one of the wrong type; the message names it."""


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Garbage(f"{what} is not a JSON object")
    return value


def _text(data: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise _Garbage(f"field {name!r} is missing or not a string")
    return value


def _flag(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _Garbage(f"field {name!r} is not a boolean")
    return value


def _time(data: Mapping[str, Any], name: str) -> datetime | None:
    """``*At`` fields: ISO 8601 with a zone when a string, UNIX seconds when a number."""
    value = data.get(name)
    if value is None:
        return None
    try:
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                raise ValueError("no zone")
            return parsed
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, tz=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise _Garbage(f"field {name!r} is not a time")


def _address(data: Mapping[str, Any]) -> Address | None:
    value = data.get("address")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return MappingProxyType(dict(value))
    raise _Garbage("field 'address' is neither text nor an object")


def _user(value: object) -> ToriiUser:
    data = _object(value, "the user")
    return ToriiUser(
        id=_text(data, "id", required=True) or "",
        email=_text(data, "email"),
        name=_text(data, "name"),
        phone=_text(data, "phone"),
        address=_address(data),
        email_verified=_flag(data, "emailVerified"),
        banned=_flag(data, "banned"),
        environment_id=_text(data, "environmentId"),
        created_at=_time(data, "createdAt"),
        updated_at=_time(data, "updatedAt"),
        raw=freeze_mapping(data),
    )


def _items(value: object, what: str) -> Sequence[object]:
    data = _object(value, what)
    items = data.get("data")
    if not isinstance(items, list):
        raise _Garbage(f"{what} has no 'data' list")
    return items


def _session(value: object) -> ToriiSession:
    data = _object(value, "a session")
    return ToriiSession(
        id=_text(data, "id", required=True) or "",
        user_id=_text(data, "userId", required=True) or "",
        status=_text(data, "status", required=True) or "",
        created_at=_time(data, "createdAt"),
        last_active_at=_time(data, "lastActiveAt"),
        expires_at=_time(data, "expiresAt"),
    )


def _page(value: object) -> ToriiUserPage:
    items = _items(value, "the user list")
    cursor = _text(_object(value, "the user list"), "nextCursor")
    return ToriiUserPage(data=tuple(_user(item) for item in items), next_cursor=cursor or None)


def _revoked(value: object) -> int:
    count = _object(value, "the answer").get("revoked")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise _Garbage("field 'revoked' is not a count")
    return count


_PARSERS: Final = {
    "user": _user,
    "page": _page,
    "sessions": lambda value: tuple(_session(item) for item in _items(value, "the session list")),
    "revoked": _revoked,
}


def parse(kind: str, value: object, *, what: str) -> Any:
    """Build the typed answer of one call, or raise ``ProviderError`` naming what was wrong."""
    try:
        return _PARSERS[kind](value)
    except _Garbage as exc:
        logger.warning("torii %s answered an unexpected body: %s; answering 503", what, exc)
        raise ProviderError() from exc
