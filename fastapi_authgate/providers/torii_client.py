"""torii's backend REST client: users and sessions, over :mod:`fastapi_authgate._http`.

Import it from :mod:`fastapi_authgate.providers.torii`, whose docstring fixes the wire format.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from fastapi_authgate._http import build_client, check_base_url, request_json
from fastapi_authgate.errors import ConfigurationError, ProviderError, ProviderResponseError
from fastapi_authgate.providers.torii_models import (
    UNSET,
    Address,
    ToriiSession,
    ToriiUser,
    ToriiUserPage,
    Unset,
    parse,
)

__all__ = [
    "DEFAULT_API_URL",
    "ToriiAPIError",
    "ToriiClient",
    "ToriiSessions",
    "ToriiUsers",
    "check_secret_key",
]

logger = logging.getLogger("fastapi_authgate.providers.torii")

DEFAULT_API_URL: Final = "https://api.torii.so"
_SECRET_KEY_RE: Final = re.compile(r"sk_(test|live)_[A-Za-z0-9_]{16,}")
_MAX_ID_LENGTH: Final = 512
_MAX_PAGES: Final = 100_000


class ToriiAPIError(ProviderResponseError):
    """torii answered a call with an error status (401 bad key, 404 unknown user, 429, 5xx...)."""


def check_secret_key(secret_key: str | SecretStr) -> SecretStr:
    value = secret_key.get_secret_value() if isinstance(secret_key, SecretStr) else secret_key
    if not isinstance(value, str) or not _SECRET_KEY_RE.fullmatch(value):
        hint = ""
        if isinstance(value, str) and value.startswith("pk_"):
            hint = " (that is a publishable key; the backend API needs the secret one)"
        raise ConfigurationError(
            "the torii secret key must be sk_test_ or sk_live_ followed by at least 16 of "
            f"A-Z a-z 0-9 _ (AUTHGATE_TORII__SECRET_KEY){hint}"
        )
    return SecretStr(value)


def _segment(value: str, what: str = "user id") -> str:
    """One path segment; refuses values that could address another endpoint."""
    if not isinstance(value, str) or value in ("", ".", "..") or len(value) > _MAX_ID_LENGTH:
        raise ValueError(f"a torii {what} must be a non-empty string other than '.' and '..'")
    return quote(value, safe="")


def _fields(**values: object) -> dict[str, object]:
    """The tri-state body: :data:`UNSET` leaves a key out, ``None`` stays as JSON ``null``."""
    return {name: value for name, value in values.items() if value is not UNSET}


class ToriiClient:
    """Async client for torii's backend REST API.

    Use it as ``async with ToriiClient(secret_key=...) as torii:`` or call :meth:`aclose` at
    shutdown. It holds one connection pool, so build one per process, not one per request.

    Args:
        secret_key: ``sk_test_...`` or ``sk_live_...`` (a ``SecretStr`` is accepted too). It is
            checked here and never shown in a ``repr``, a log line or an exception.
        api_url: the API base URL; ``https://api.torii.so`` by default.
        timeout: the overall deadline of one call, body included, in seconds.
        http_client: a shared ``httpx.AsyncClient`` (then not closed by :meth:`aclose`); it should
            refuse redirects as :func:`fastapi_authgate._http.build_client`'s do.

    Raises:
        ConfigurationError: a malformed secret key, a bad API URL or a non-positive timeout.
    """

    def __init__(
        self,
        *,
        secret_key: str | SecretStr,
        api_url: str = DEFAULT_API_URL,
        timeout: float = 10.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._secret_key = check_secret_key(secret_key)
        self.api_url = check_base_url(api_url, "AUTHGATE_TORII__API_URL")
        if not timeout > 0:
            raise ConfigurationError("the torii client timeout must be positive")
        self.timeout = float(timeout)
        self.live = self._secret_key.get_secret_value().startswith("sk_live_")
        self._owns_client = http_client is None
        self._client = http_client if http_client is not None else build_client(timeout=timeout)
        self.users = ToriiUsers(self)
        self.sessions = ToriiSessions(self)

    def __repr__(self) -> str:
        mode = "live" if self.live else "test"
        return f"ToriiClient(api_url={self.api_url!r}, key=<{mode} secret key>)"

    async def __aenter__(self) -> ToriiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool this client built (a shared one is left open)."""
        if self._owns_client:
            await self._client.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        kind: str,
        json: Mapping[str, object] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> Any:
        url = self.api_url + path
        headers = {"Authorization": "Bearer " + self._secret_key.get_secret_value()}
        try:
            data, _ = await request_json(
                self._client,
                method,
                url,
                json=json,
                params=params,
                headers=headers,
                deadline=self.timeout,
                what=f"torii {what}",
                api_errors=True,
            )
        except ProviderResponseError as exc:
            raise ToriiAPIError(
                status=exc.status,
                code=exc.code,
                message=exc.message,
                body=exc.body,
                retry_after=exc.provider_retry_after,
            ) from exc
        return parse(kind, data, what=what)


class ToriiUsers:
    """``torii.users``: read, list, create, ban and update users."""

    def __init__(self, client: ToriiClient) -> None:
        self._client = client

    async def get(self, user_id: str) -> ToriiUser:
        """``GET /v1/users/{id}``.

        Raises:
            ToriiAPIError: ``status`` 404 for an unknown user, 401 for a bad key, and so on.
            ProviderError: torii is unreachable, too slow or answered garbage.
            ValueError: ``user_id`` is empty, ``"."`` or ``".."``.
        """
        path = "/v1/users/" + _segment(user_id)
        user: ToriiUser = await self._client._call("GET", path, what="users.get", kind="user")
        return user

    async def list(self, *, limit: int = 50, cursor: str | None = None) -> ToriiUserPage:
        """``GET /v1/users?limit=&cursor=``: one page; pass ``next_cursor`` for the next.

        Raises:
            ValueError: ``limit`` outside 1 to 100.
            ToriiAPIError, ProviderError: as :meth:`get`.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise ValueError("limit must be an integer from 1 to 100")
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        page: ToriiUserPage = await self._client._call(
            "GET", "/v1/users", what="users.list", kind="page", params=params
        )
        return page

    async def pages(self, *, limit: int = 100) -> AsyncIterator[ToriiUserPage]:
        """Every page of the user list, following ``nextCursor`` to the end.

        A cursor torii already sent once would loop forever; it raises ``ProviderError``.
        """
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            page = await self.list(limit=limit, cursor=cursor)
            yield page
            cursor = page.next_cursor
            if cursor is None:
                return
            if cursor in seen:
                break
            seen.add(cursor)
        logger.warning("torii users.list sent a cursor it had sent before; answering 503")
        raise ProviderError()

    async def iterate(self, *, limit: int = 100) -> AsyncIterator[ToriiUser]:
        """Every user, page after page (see :meth:`pages`)."""
        async for page in self.pages(limit=limit):
            for user in page.data:
                yield user

    async def create(
        self,
        *,
        email: str,
        name: str | Unset | None = UNSET,
        phone: str | Unset | None = UNSET,
        address: Address | Unset | None = UNSET,
    ) -> ToriiUser:
        """``POST /v1/users``; fields left out are absent from the body (201 answers the user).

        Raises:
            ToriiAPIError, ProviderError: as :meth:`get` (torii answers 409/422 for a bad email).
        """
        body = _fields(email=email, name=name, phone=phone, address=address)
        user: ToriiUser = await self._client._call(
            "POST", "/v1/users", what="users.create", kind="user", json=body
        )
        return user

    async def ban(self, user_id: str) -> ToriiUser:
        """``POST /v1/users/{id}/ban``; answers the user with ``banned`` true.

        Raises:
            ToriiAPIError, ProviderError, ValueError: as :meth:`get`.
        """
        path = f"/v1/users/{_segment(user_id)}/ban"
        user: ToriiUser = await self._client._call("POST", path, what="users.ban", kind="user")
        return user

    async def update(
        self,
        user_id: str,
        *,
        name: str | Unset | None = UNSET,
        phone: str | Unset | None = UNSET,
        address: Address | Unset | None = UNSET,
    ) -> ToriiUser:
        """``PATCH /v1/users/{id}`` with a tri-state body.

        A value sets the field, ``None`` clears it (JSON ``null``) and an argument left out is
        absent from the body, so torii leaves that field alone::

            await torii.users.update(user_id, name="Ada", phone=None)  # address untouched

        Raises:
            ToriiAPIError, ProviderError, ValueError: as :meth:`get`.
        """
        path = "/v1/users/" + _segment(user_id)
        body = _fields(name=name, phone=phone, address=address)
        user: ToriiUser = await self._client._call(
            "PATCH", path, what="users.update", kind="user", json=body
        )
        return user


class ToriiSessions:
    """``torii.sessions``: a user's sessions, and revoking them all."""

    def __init__(self, client: ToriiClient) -> None:
        self._client = client

    async def list_for_user(self, user_id: str) -> tuple[ToriiSession, ...]:
        """``GET /v1/users/{id}/sessions``: active, revoked and expired sessions alike.

        Raises:
            ToriiAPIError, ProviderError, ValueError: as :meth:`ToriiUsers.get`.
        """
        path = f"/v1/users/{_segment(user_id)}/sessions"
        sessions: tuple[ToriiSession, ...] = await self._client._call(
            "GET", path, what="sessions.list_for_user", kind="sessions"
        )
        return sessions

    async def revoke_all_for_user(self, user_id: str) -> int:
        """``POST /v1/users/{id}/sessions/revoke-all``; answers how many were revoked.

        Tokens already issued for those sessions stay valid until their ``exp`` (they are
        checked offline); keep their lifetime short.

        Raises:
            ToriiAPIError, ProviderError, ValueError: as :meth:`ToriiUsers.get`.
        """
        path = f"/v1/users/{_segment(user_id)}/sessions/revoke-all"
        count: int = await self._client._call(
            "POST", path, what="sessions.revoke_all_for_user", kind="revoked"
        )
        return count
