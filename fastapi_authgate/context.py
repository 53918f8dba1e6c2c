"""Frozen value objects that cross module boundaries.

``AuthContext`` is what a route receives. It is a slotted frozen dataclass rather than a pydantic
model because one is built per verified request (or reused from a cache) and validation has already
happened in the verifier; a dataclass costs a fraction of a model to build. Mappings inside are
read-only views so a route cannot mutate a context that a cache shares with other requests.

``Credentials`` is what a verifier receives: the raw bearer token, cookies and API key found on a
connection. It is the only object that holds a raw token, and its ``repr`` hides them.

``Decision`` is the answer of a rate-limit store for one rule and drives every rate-limit header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

__all__ = ["AuthContext", "CredentialKind", "Credentials", "Decision", "User", "freeze_mapping"]

CredentialKind = Literal["bearer", "cookie", "api_key"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def freeze_mapping(data: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Return a read-only view of a shallow copy of ``data`` (the empty view for ``None``)."""
    if not data:
        return _EMPTY
    if isinstance(data, MappingProxyType):
        return data
    return MappingProxyType(dict(data))


@dataclass(frozen=True, slots=True)
class User:
    """A user as the provider describes it; fields the provider does not give stay empty."""

    id: str
    email: str | None = None
    name: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    product_access: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", freeze_mapping(self.metadata))


@dataclass(frozen=True, slots=True)
class AuthContext:
    """A verified identity, handed to routes. Holds no raw token."""

    subject: str
    provider: str
    credential: CredentialKind
    scopes: frozenset[str] = frozenset()
    session_id: str | None = None
    claims: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    expires_at: datetime | None = None
    user: User | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "claims", freeze_mapping(self.claims))

    def has_scopes(self, required: tuple[str, ...] | list[str] | frozenset[str]) -> bool:
        """True when every required scope is granted (the empty requirement always holds)."""
        return self.scopes.issuperset(required)


class Credentials(NamedTuple):
    """Raw credentials found on one connection, for verifiers only. ``repr`` never shows them.

    A named tuple rather than a frozen dataclass: one is built for every guarded request that is
    not already authenticated, and a tuple is built in half the time while being just as immutable.
    """

    bearer: str | None = None
    cookies: Mapping[str, str] = _EMPTY
    api_key: str | None = None
    duplicate_cookies: frozenset[str] = frozenset()
    """Cookie names the request sent more than once (``cookies`` holds only the last value)."""

    def __repr__(self) -> str:
        shown = [name for name in ("bearer", "api_key") if getattr(self, name) is not None]
        return f"Credentials(present={shown + (['cookies'] if self.cookies else [])})"

    @property
    def present(self) -> bool:
        """True when any credential at all was presented."""
        return self.bearer is not None or self.api_key is not None or bool(self.cookies)


class Decision(NamedTuple):
    """One rate-limit rule's verdict for one request.

    ``remaining`` is how many more requests fit right now, ``reset_after`` the seconds until the
    bucket is fully drained (quota wholly available again) and ``retry_after`` the seconds until the
    next request would be allowed (0 when this one was). A named tuple, like :class:`Credentials`:
    one is built per rule per limited request, and a tuple is built in a third of the time a frozen
    dataclass takes.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float
    period: float = 0.0
