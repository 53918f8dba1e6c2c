"""What :class:`~fastapi_authgate.providers.inai_client.InAIAuthClient` answers, and its error.

Results are frozen dataclasses built from the provider's JSON by small ``from_json`` parsers that
read the fields WIRE.md names and ignore the rest (``raw`` keeps the whole object, read-only, for
fields we do not model). A 2xx answer that lacks a required field is the provider answering
garbage: :class:`~fastapi_authgate.errors.ProviderError` (503), never a half-built result.

A login either yields tokens (:class:`InAITokens`) or asks for a second factor
(:class:`MFARequired`); the two are distinct types so ``match``/``isinstance`` tells them apart and
a caller cannot mistake an MFA ticket for an access token.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi_authgate.context import freeze_mapping
from fastapi_authgate.errors import ProviderError, ProviderResponseError

__all__ = [
    "InAIApiKey",
    "InAIApplication",
    "InAIApplicationStats",
    "InAIAuthError",
    "InAITokens",
    "InAIUser",
    "InAIUsersPage",
    "LoginResult",
    "MFARequired",
]

logger = logging.getLogger(__name__)


class InAIAuthError(ProviderResponseError):
    """InAI answered a non-2xx status: ``status``, ``message`` and ``body`` say what it said.

    ``message`` is the body's ``message`` (else its ``error`` code, else ``None``); ``body`` is the
    decoded JSON, else the text, else ``None``. Catch it around calls whose refusal is the user's
    business (a wrong password is a 401 here); left uncaught in a route it answers 503, because
    InAI's words are never forwarded to the client.
    """

    def __init__(
        self,
        status: int,
        message: str | None,
        body: object = None,
        *,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            "The InAI Auth API refused the request",
            status=status,
            code=code,
            message=message,
            body=body,
            retry_after=retry_after,
        )

    def __repr__(self) -> str:
        return f"InAIAuthError(status={self.status}, code={self.code!r})"


def _garbage(what: str, reason: str) -> ProviderError:
    logger.warning("InAI %s answered an unusable body: %s; answering 503", what, reason)
    return ProviderError()


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _garbage(what, "not a JSON object")
    return value


def _data(value: Any, what: str) -> Any:
    """The ``data`` member of a ``{"data": ...}`` envelope."""
    body = _object(value, what)
    if "data" not in body:
        raise _garbage(what, "no 'data' member")
    return body["data"]


def _str(body: Mapping[str, Any], name: str, what: str) -> str:
    value = body.get(name)
    if type(value) is not str or not value:
        raise _garbage(what, f"'{name}' is not a non-empty string")
    return value


def _opt_str(body: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = body.get(name)
        if type(value) is str:
            return value
    return None


def _opt_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    return value if type(value) is int else None


def _strings(value: Any) -> tuple[str, ...]:
    if type(value) is not list:
        return ()
    return tuple(item for item in value if type(item) is str)


@dataclass(frozen=True, slots=True)
class InAITokens:
    """Tokens from a login, MFA challenge, refresh or organization switch."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in: int | None = None
    token_type: str = "Bearer"

    @classmethod
    def from_json(cls, value: Any, what: str) -> InAITokens:
        """Parse ``{"access_token", "refresh_token", "expires_in", "token_type"}``."""
        body = _object(value, what)
        refresh = body.get("refresh_token")
        token_type = body.get("token_type")
        return cls(
            access_token=_str(body, "access_token", what),
            refresh_token=refresh if type(refresh) is str and refresh else None,
            expires_in=_opt_int(body, "expires_in"),
            token_type=token_type if type(token_type) is str and token_type else "Bearer",
        )


@dataclass(frozen=True, slots=True)
class MFARequired:
    """A login that needs a second factor: pass ``mfa_token`` and the code to ``mfa_challenge``."""

    mfa_token: str = field(repr=False)


LoginResult = InAITokens | MFARequired
"""What ``login``/``platform_login`` answer: tokens, or the MFA step still to take."""


def login_result(value: Any, what: str) -> LoginResult:
    """Tokens, or :class:`MFARequired` when the body says ``mfa_required: true``."""
    body = _object(value, what)
    if body.get("mfa_required") is True:
        return MFARequired(mfa_token=_str(body, "mfa_token", what))
    return InAITokens.from_json(body, what)


@dataclass(frozen=True, slots=True)
class InAIUser:
    """An app user or platform user as InAI describes it."""

    id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email_verified: bool | None = None
    environment_id: str | None = None
    roles: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", freeze_mapping(self.raw))

    @classmethod
    def from_json(cls, value: Any, what: str) -> InAIUser:
        """Parse a user object (camelCase as WIRE.md writes it; snake_case accepted too)."""
        body = _object(value, what)
        verified = body.get("emailVerified", body.get("email_verified"))
        return cls(
            id=_str(body, "id", what),
            email=_opt_str(body, "email"),
            first_name=_opt_str(body, "firstName", "first_name"),
            last_name=_opt_str(body, "lastName", "last_name"),
            email_verified=verified if type(verified) is bool else None,
            environment_id=_opt_str(body, "environmentId", "environment_id"),
            roles=_strings(body.get("roles")),
            permissions=_strings(body.get("permissions")),
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class InAIUsersPage:
    """One page of ``list_app_users``: the users, and where the page sits in the whole."""

    data: Sequence[InAIUser]
    total: int
    page: int
    limit: int

    @classmethod
    def from_json(cls, value: Any, what: str) -> InAIUsersPage:
        """Parse ``{"data": [...], "total", "page", "limit"}``."""
        body = _object(value, what)
        items = body.get("data")
        if type(items) is not list:
            raise _garbage(what, "'data' is not a list")
        numbers = [_opt_int(body, name) for name in ("total", "page", "limit")]
        if None in numbers:
            raise _garbage(what, "'total', 'page' or 'limit' is not an integer")
        total, page, limit = (int(n or 0) for n in numbers)
        users = tuple(InAIUser.from_json(item, what) for item in items)
        return cls(data=users, total=total, page=page, limit=limit)


@dataclass(frozen=True, slots=True)
class InAIApplication:
    """An application registered on the InAI platform."""

    id: str
    name: str | None = None
    slug: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", freeze_mapping(self.raw))

    @classmethod
    def from_json(cls, value: Any, what: str) -> InAIApplication:
        """Parse an application object."""
        body = _object(value, what)
        return cls(
            id=_str(body, "id", what),
            name=_opt_str(body, "name"),
            slug=_opt_str(body, "slug"),
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class InAIApplicationStats:
    """An application's statistics; the document fixes no fields, so they are kept as given."""

    data: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", freeze_mapping(self.data))

    @classmethod
    def from_json(cls, value: Any, what: str) -> InAIApplicationStats:
        """Parse the ``data`` object of the stats answer."""
        return cls(data=_object(value, what))


@dataclass(frozen=True, slots=True)
class InAIApiKey:
    """An API key of an application; ``key`` (the secret) is only present right after creation."""

    id: str
    name: str | None = None
    environment_id: str | None = None
    key: str | None = field(default=None, repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", freeze_mapping(self.raw))

    @classmethod
    def from_json(cls, value: Any, what: str) -> InAIApiKey:
        """Parse an API key object."""
        body = _object(value, what)
        return cls(
            id=_str(body, "id", what),
            name=_opt_str(body, "name"),
            environment_id=_opt_str(body, "environmentId", "environment_id"),
            key=_opt_str(body, "key"),
            raw=body,
        )


def data_of(value: Any, what: str) -> Any:
    """The payload of a ``{"data": ...}`` answer."""
    return _data(value, what)


def list_of(value: Any, what: str) -> list[Any]:
    """The payload of a ``{"data": [...]}`` answer."""
    items = _data(value, what)
    if type(items) is not list:
        raise _garbage(what, "'data' is not a list")
    return items


def publishable_key_of(value: Any, what: str) -> str:
    """The ``publishableKey`` of a rotate-keys answer."""
    return _str(_object(value, what), "publishableKey", what)
