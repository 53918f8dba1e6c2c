"""Frozen value objects that cross module boundaries.

``AuthContext`` is what a route receives. It is a slotted frozen dataclass rather than a pydantic
model because one is built per verified request (or reused from a cache) and validation has already
happened in the verifier; a dataclass costs a fraction of a model to build. A cached context is
shared by every request that presents the same token, so it is frozen *all the way down*: claims
and metadata are read-only mappings whose nested arrays and objects are read-only too, so no
route can change what later requests see (``auth.claims["roles"].append`` raises ``TypeError``).
Arrays and objects become :class:`FrozenList` and :class:`FrozenDict`, which
still compare equal to lists and dicts and still serialise as JSON.

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

__all__ = [
    "AuthContext",
    "CredentialKind",
    "Credentials",
    "Decision",
    "FrozenDict",
    "FrozenList",
    "User",
    "freeze_claims",
    "freeze_mapping",
]

CredentialKind = Literal["bearer", "cookie", "api_key"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_SCALARS: frozenset[type] = frozenset({str, int, float, bool, type(None), bytes})


def _read_only(self: Any, *args: Any, **kwargs: Any) -> Any:
    raise TypeError(f"{type(self).__name__} is read-only: claims and metadata are shared")


class FrozenList(list[Any]):
    """A list that refuses every change: what a JSON array in claims or metadata becomes.

    A ``list`` subclass rather than a tuple, so it still equals the list it was made from and
    still serialises as a JSON array (``json.dumps``, FastAPI responses); every method or
    operator that would change it raises ``TypeError``.
    """

    __slots__ = ()

    def __new__(cls, items: Any = ()) -> FrozenList:
        self = list.__new__(cls)
        list.extend(self, items)
        return self

    def __init__(self, items: Any = ()) -> None:  # the items were set by __new__, once
        pass

    def __reduce__(self) -> Any:
        return (FrozenList, (list(self),))


class FrozenDict(dict[str, Any]):
    """A dict that refuses every change: what a JSON object nested in claims or metadata becomes.

    A ``dict`` subclass rather than a ``MappingProxyType``, so it still equals the dict it was
    made from and ``json.dumps`` takes it; every method or operator that would change it raises
    ``TypeError``.
    """

    __slots__ = ()

    def __new__(cls, items: Any = ()) -> FrozenDict:
        self = dict.__new__(cls)
        dict.update(self, items)
        return self

    def __init__(self, items: Any = ()) -> None:
        pass

    def __reduce__(self) -> Any:
        return (FrozenDict, (dict(self),))


for _name in (
    "append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse",
    "__setitem__", "__delitem__", "__iadd__", "__imul__",
):  # fmt: skip
    setattr(FrozenList, _name, _read_only)
for _name in (
    "__setitem__", "__delitem__", "__ior__", "clear", "pop", "popitem", "setdefault", "update",
):  # fmt: skip
    setattr(FrozenDict, _name, _read_only)


def _frozen(value: Any) -> Any:
    """``value`` with every list, mapping and set replaced by its read-only counterpart."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if isinstance(value, Mapping):
        return FrozenDict({key: _frozen(item) for key, item in value.items()})
    if kind is list or kind is FrozenList:
        return FrozenList([_frozen(item) for item in value])
    if kind is tuple:
        return tuple([_frozen(item) for item in value])
    if isinstance(value, set | frozenset):
        return frozenset(value)
    return value


def _is_frozen(value: Any) -> bool:
    kind = type(value)
    if kind is MappingProxyType or kind is FrozenDict:
        items = value.values()
    elif kind is FrozenList or kind is tuple:
        items = value
    else:
        return kind in _SCALARS or kind is frozenset
    scalars = _SCALARS
    for item in items:  # noqa: SIM110 (a loop, not all() over a generator: 5x faster here)
        if type(item) not in scalars and not _is_frozen(item):
            return False
    return True


def freeze_mapping(data: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A deep read-only copy of ``data`` (the empty view for ``None``).

    The top level is a ``MappingProxyType``; nested objects become :class:`FrozenDict`, arrays
    :class:`FrozenList`, sets ``frozenset``. A view that is frozen all the way down already is
    returned as it is, so freezing twice costs a walk, not a copy.
    """
    if not data:
        return _EMPTY
    if type(data) is MappingProxyType and _is_frozen(data):
        return data
    return MappingProxyType({key: _frozen(item) for key, item in data.items()})


# Claim names nearly every token carries. The JSON decoder makes new key strings for every
# token, and a verified token's claims stay in the token cache until it expires, so
# :func:`freeze_claims` swaps these for one shared string each (about a quarter of what a
# cached token keeps in memory; new memory per fresh token costs more than the lookups).
_SHARED_NAMES: dict[str, str] = {
    name: name
    for name in (
        "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid", "azp", "scope", "scp",
        "permissions", "roles", "client_id", "auth_time", "nonce", "email", "name",
        "email_verified", "preferred_username", "typ", "ver", "tid", "oid", "org_id",
    )
}  # fmt: skip


def freeze_claims(claims: dict[str, Any]) -> Mapping[str, Any]:
    """Deep-freeze a claims ``dict`` that the caller owns and will not touch again.

    For a verifier's freshly decoded payload: scalar claims (nearly all of them) cost a type
    check, and common claim names are shared strings (see ``_SHARED_NAMES``).
    """
    shared = _SHARED_NAMES.get
    scalars = _SCALARS
    frozen = {
        shared(name, name): value if type(value) in scalars else _frozen(value)
        for name, value in claims.items()
    }
    return MappingProxyType(frozen)


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

    @classmethod
    def _from_verified(
        cls,
        subject: str,
        provider: str,
        credential: CredentialKind,
        scopes: frozenset[str],
        session_id: str | None,
        claims: Mapping[str, Any],
        expires_at: datetime | None,
    ) -> AuthContext:
        """Build a context from values the caller guarantees: ``claims`` from
        :func:`freeze_claims`, the rest immutable. A verifier builds one per fresh token, so the
        microseconds count: it skips ``__post_init__``'s walk and sets each slot through its
        descriptor (``object.__setattr__`` would look every name up again).

        ``expires_at`` is built here rather than on first read: a lazy field would need a
        ``__getattr__``, and a class with one pays it on every attribute read (measured: 12 ns a
        read without, 39 ns with), which routes do far more often than a verifier builds one.
        """
        self = object.__new__(cls)
        s = _CONTEXT_SLOTS
        s[0](self, subject)
        s[1](self, provider)
        s[2](self, credential)
        s[3](self, scopes)
        s[4](self, session_id)
        s[5](self, claims)
        s[6](self, expires_at)
        s[7](self, None)
        return self

    def has_scopes(self, required: tuple[str, ...] | list[str] | frozenset[str]) -> bool:
        """True when every required scope is granted (the empty requirement always holds)."""
        return self.scopes.issuperset(required)


_CONTEXT_FIELDS = (
    "subject", "provider", "credential", "scopes", "session_id", "claims", "expires_at", "user",
)  # fmt: skip
# every field, in the order _from_verified sets them: a new field must be added to both
assert tuple(AuthContext.__dataclass_fields__) == _CONTEXT_FIELDS
_CONTEXT_SLOTS: tuple[Any, ...] = tuple(getattr(AuthContext, f).__set__ for f in _CONTEXT_FIELDS)


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
