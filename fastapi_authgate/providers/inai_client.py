"""``InAIAuthClient``: the 26 calls of the InAI Auth API (``inai-backend.txt``), typed and async.

Wire format (WIRE.md, "InAI"): base URL ``https://apiauth.inai.dev`` (``api_url`` overrides), JSON
both ways, every call carries ``X-Publishable-Key``, calls made for a user carry
``Authorization: Bearer <access token>``. Where the documents are silent we chose:

* ``register`` answers tokens like ``login`` (it cannot ask for MFA: no factor is enrolled yet);
* ``forgot_password``, ``reset_password``, ``verify_email``, ``logout`` and
  ``revoke_app_api_key`` answer nothing useful: any 2xx (a 204 included) is success, ``None``;
* ``update_application`` sends only the fields given (PATCH), and refuses an empty update;
* path segments (application, key ids) are percent-encoded, and ``.``/``..`` are refused, so an
  id can never steer a call to another route.

Every call goes through :func:`fastapi_authgate._http.request_json` (one deadline, no redirects,
size cap). A non-2xx answer (a 3xx included: redirects are never followed, since one to another
host would carry the token there) raises :class:`InAIAuthError` with the status, message and
body. A timeout, a refused connection or a 2xx body that is not the documented JSON raises
:class:`~fastapi_authgate.errors.ProviderError`: there was no answer to report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import httpx

from fastapi_authgate._http import build_client, check_base_url, request_json
from fastapi_authgate.errors import ConfigurationError, ProviderResponseError
from fastapi_authgate.providers.inai_models import (
    InAIApiKey,
    InAIApplication,
    InAIApplicationStats,
    InAIAuthError,
    InAITokens,
    InAIUser,
    InAIUsersPage,
    LoginResult,
    data_of,
    list_of,
    login_result,
    publishable_key_of,
)

__all__ = ["DEFAULT_API_URL", "InAIAuthClient"]

DEFAULT_API_URL: Final = "https://apiauth.inai.dev"
_PUBLISHABLE_KEY: Final = re.compile(r"pk_(live|test)_[A-Za-z0-9_\-]{8,200}")
_APP: Final = "/api/v1/auth"
_PLATFORM: Final = "/api/platform/auth"
_APPS: Final = "/api/platform/applications"


def _segment(value: str, name: str) -> str:
    if not isinstance(value, str) or not value or value in (".", ".."):
        raise ValueError(f"{name} must be a non-empty id")
    return quote(value, safe="")


class InAIAuthClient:
    """Async client for the InAI Auth API; one per application, shared by all requests.

    Use it as ``async with InAIAuthClient(publishable_key=...) as client:`` or call
    :meth:`aclose` at shutdown. Method names are the document's, in snake case.
    """

    def __init__(
        self,
        *,
        publishable_key: str,
        api_url: str = DEFAULT_API_URL,
        timeout: float = 10.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        """Check the configuration; no network traffic happens here.

        Args:
            publishable_key: ``pk_live_…`` or ``pk_test_…``.
            api_url: the API base URL (``AUTHGATE_INAI__API_URL``).
            timeout: overall seconds per call, body included.
            http_client: a shared client (then not closed by :meth:`aclose`).

        Raises:
            ConfigurationError: a malformed publishable key, a non-http(s) URL or a bad timeout.
        """
        if not isinstance(publishable_key, str) or not _PUBLISHABLE_KEY.fullmatch(publishable_key):
            raise ConfigurationError(
                "the InAI publishable key must look like pk_live_… or pk_test_… "
                "(AUTHGATE_INAI__PUBLISHABLE_KEY)"
            )
        api_url = check_base_url(api_url, "AUTHGATE_INAI__API_URL")
        if not 0 < timeout <= 120:
            raise ConfigurationError("the InAI client timeout must be in (0, 120] seconds")
        self._key = publishable_key
        self.api_url = api_url.rstrip("/")
        self._timeout = timeout
        self._client = http_client
        self._owns_client = http_client is None

    def __repr__(self) -> str:
        return f"InAIAuthClient(api_url={self.api_url!r})"

    async def __aenter__(self) -> InAIAuthClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client this object built (a shared one is left open)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        token: str | None = None,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        allow_empty: bool = False,
    ) -> Any:
        client = self._client
        if client is None:
            client = self._client = build_client(timeout=self._timeout)
        headers = {"X-Publishable-Key": self._key}
        if token is not None:
            if not isinstance(token, str) or not token or "\n" in token or "\r" in token:
                raise ValueError("the access token must be a non-empty single-line string")
            headers["Authorization"] = f"Bearer {token}"
        try:
            data, _ = await request_json(
                client,
                method,
                self.api_url + path,
                json=json,
                headers=headers,
                params=params,
                deadline=self._timeout,
                what=f"InAI {what}",
                allow_empty=allow_empty,
                api_errors=True,
            )
        except ProviderResponseError as exc:
            raise InAIAuthError(
                exc.status,
                exc.message or exc.code,
                exc.body,
                code=exc.code,
                retry_after=exc.provider_retry_after,
            ) from exc
        return data

    # -- app user auth (v1) ------------------------------------------------------------------

    async def login(self, email: str, password: str) -> LoginResult:
        """Sign an app user in: tokens, or :class:`MFARequired` when a second factor is due."""
        body = await self._call(
            "POST", f"{_APP}/login", what="login", json={"email": email, "password": password}
        )
        return login_result(body, "login")

    async def register(
        self,
        email: str,
        password: str,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
    ) -> InAITokens:
        """Create an app user and sign them in; names are sent only when given."""
        payload: dict[str, Any] = {"email": email, "password": password}
        if first_name is not None:
            payload["firstName"] = first_name
        if last_name is not None:
            payload["lastName"] = last_name
        body = await self._call("POST", f"{_APP}/register", what="register", json=payload)
        return InAITokens.from_json(body, "register")

    async def mfa_challenge(self, mfa_token: str, code: str) -> InAITokens:
        """Finish a login that answered :class:`MFARequired`."""
        return await self._mfa(_APP, mfa_token, code)

    async def refresh(self, refresh_token: str) -> InAITokens:
        """Trade a refresh token for fresh tokens."""
        return await self._refresh(_APP, refresh_token)

    async def logout(self, refresh_token: str) -> None:
        """Revoke a refresh token."""
        await self._logout(_APP, refresh_token)

    async def get_me(self, access_token: str) -> InAIUser:
        """The app user the access token belongs to."""
        return await self._me(_APP, access_token)

    async def set_active_organization(self, access_token: str, organization_id: str) -> InAITokens:
        """Switch the user's active organization; the new tokens carry its ``org_id``."""
        body = await self._call(
            "POST",
            f"{_APP}/active-organization",
            what="set active organization",
            token=access_token,
            json={"organization_id": organization_id},
        )
        return InAITokens.from_json(body, "set active organization")

    async def forgot_password(self, email: str) -> None:
        """Ask InAI to send a password-reset mail."""
        await self._call(
            "POST",
            f"{_APP}/forgot-password",
            what="forgot password",
            json={"email": email},
            allow_empty=True,
        )

    async def reset_password(self, token: str, password: str) -> None:
        """Set a new password with the token from the reset mail."""
        await self._call(
            "POST",
            f"{_APP}/reset-password",
            what="reset password",
            json={"token": token, "password": password},
            allow_empty=True,
        )

    async def verify_email(self, token: str) -> None:
        """Confirm an email address with the token from the verification mail."""
        await self._call(
            "POST",
            f"{_APP}/verify-email",
            what="verify email",
            json={"token": token},
            allow_empty=True,
        )

    # -- platform auth ----------------------------------------------------------------------

    async def platform_login(self, email: str, password: str) -> LoginResult:
        """Sign a platform administrator in: tokens, or :class:`MFARequired`."""
        body = await self._call(
            "POST",
            f"{_PLATFORM}/login",
            what="platform login",
            json={"email": email, "password": password},
        )
        return login_result(body, "platform login")

    async def platform_refresh(self, refresh_token: str) -> InAITokens:
        """Trade a platform refresh token for fresh tokens."""
        return await self._refresh(_PLATFORM, refresh_token)

    async def platform_logout(self, refresh_token: str) -> None:
        """Revoke a platform refresh token."""
        await self._logout(_PLATFORM, refresh_token)

    async def platform_mfa_challenge(self, mfa_token: str, code: str) -> InAITokens:
        """Finish a platform login that answered :class:`MFARequired`."""
        return await self._mfa(_PLATFORM, mfa_token, code)

    async def platform_get_me(self, access_token: str) -> InAIUser:
        """The platform user the access token belongs to."""
        return await self._me(_PLATFORM, access_token)

    async def _mfa(self, base: str, mfa_token: str, code: str) -> InAITokens:
        body = await self._call(
            "POST",
            f"{base}/mfa/challenge",
            what="MFA challenge",
            json={"mfa_token": mfa_token, "code": code},
        )
        return InAITokens.from_json(body, "MFA challenge")

    async def _refresh(self, base: str, refresh_token: str) -> InAITokens:
        body = await self._call(
            "POST", f"{base}/refresh", what="refresh", json={"refresh_token": refresh_token}
        )
        return InAITokens.from_json(body, "refresh")

    async def _logout(self, base: str, refresh_token: str) -> None:
        await self._call(
            "POST",
            f"{base}/logout",
            what="logout",
            json={"refresh_token": refresh_token},
            allow_empty=True,
        )

    async def _me(self, base: str, access_token: str) -> InAIUser:
        body = await self._call("GET", f"{base}/me", what="get me", token=access_token)
        return InAIUser.from_json(data_of(body, "get me"), "get me")

    # -- platform management ----------------------------------------------------------------

    async def list_applications(self, access_token: str) -> list[InAIApplication]:
        """Every application the platform user can see."""
        body = await self._call("GET", _APPS, what="list applications", token=access_token)
        return [
            InAIApplication.from_json(item, "list applications")
            for item in list_of(body, "list applications")
        ]

    async def create_application(
        self, access_token: str, *, name: str, slug: str
    ) -> InAIApplication:
        """Register a new application."""
        body = await self._call(
            "POST",
            _APPS,
            what="create application",
            token=access_token,
            json={"name": name, "slug": slug},
        )
        return InAIApplication.from_json(data_of(body, "create application"), "create application")

    async def get_application(self, access_token: str, app_id: str) -> InAIApplication:
        """One application's details."""
        path = f"{_APPS}/{_segment(app_id, 'app_id')}"
        body = await self._call("GET", path, what="get application", token=access_token)
        return InAIApplication.from_json(data_of(body, "get application"), "get application")

    async def update_application(
        self,
        access_token: str,
        app_id: str,
        *,
        name: str | None = None,
        slug: str | None = None,
    ) -> InAIApplication:
        """Change an application; only the fields given are sent.

        Raises:
            ValueError: no field given.
        """
        payload = {
            key: value for key, value in (("name", name), ("slug", slug)) if value is not None
        }
        if not payload:
            raise ValueError("update_application needs at least one of name, slug")
        path = f"{_APPS}/{_segment(app_id, 'app_id')}"
        body = await self._call(
            "PATCH", path, what="update application", token=access_token, json=payload
        )
        return InAIApplication.from_json(data_of(body, "update application"), "update application")

    async def get_application_stats(self, access_token: str, app_id: str) -> InAIApplicationStats:
        """An application's statistics."""
        path = f"{_APPS}/{_segment(app_id, 'app_id')}/stats"
        body = await self._call("GET", path, what="application stats", token=access_token)
        return InAIApplicationStats.from_json(data_of(body, "application stats"), "stats")

    async def list_app_users(
        self,
        access_token: str,
        app_id: str,
        *,
        environment_id: str | None = None,
        page: int | None = None,
        limit: int | None = None,
    ) -> InAIUsersPage:
        """One page of an application's users (filters are sent only when given)."""
        params: dict[str, str] = {}
        if environment_id is not None:
            params["environmentId"] = environment_id
        if page is not None:
            params["page"] = str(int(page))
        if limit is not None:
            params["limit"] = str(int(limit))
        path = f"{_APPS}/{_segment(app_id, 'app_id')}/users"
        body = await self._call(
            "GET", path, what="list app users", token=access_token, params=params
        )
        return InAIUsersPage.from_json(body, "list app users")

    async def create_app_user(
        self, access_token: str, app_id: str, *, email: str, password: str, environment_id: str
    ) -> InAIUser:
        """Create a user of an application in one of its environments."""
        path = f"{_APPS}/{_segment(app_id, 'app_id')}/users"
        body = await self._call(
            "POST",
            path,
            what="create app user",
            token=access_token,
            json={"email": email, "password": password, "environmentId": environment_id},
        )
        return InAIUser.from_json(data_of(body, "create app user"), "create app user")

    async def list_app_api_keys(
        self, access_token: str, app_id: str, environment_id: str | None = None
    ) -> list[InAIApiKey]:
        """An application's API keys, optionally of one environment."""
        params = {"environmentId": environment_id} if environment_id is not None else None
        path = f"{_APPS}/{_segment(app_id, 'app_id')}/api-keys"
        body = await self._call(
            "GET", path, what="list API keys", token=access_token, params=params
        )
        return [InAIApiKey.from_json(item, "list API keys") for item in list_of(body, "API keys")]

    async def create_app_api_key(
        self, access_token: str, app_id: str, name: str, environment_id: str
    ) -> InAIApiKey:
        """Create an API key; its secret ``key`` is in this answer only."""
        path = f"{_APPS}/{_segment(app_id, 'app_id')}/api-keys"
        body = await self._call(
            "POST",
            path,
            what="create API key",
            token=access_token,
            json={"name": name, "environmentId": environment_id},
        )
        return InAIApiKey.from_json(data_of(body, "create API key"), "create API key")

    async def revoke_app_api_key(self, access_token: str, app_id: str, key_id: str) -> None:
        """Revoke an API key."""
        path = f"{_APPS}/{_segment(app_id, 'app_id')}/api-keys/{_segment(key_id, 'key_id')}"
        await self._call(
            "DELETE", path, what="revoke API key", token=access_token, allow_empty=True
        )

    async def rotate_app_keys(self, access_token: str, app_id: str, environment_id: str) -> str:
        """Replace an environment's publishable key; answers the new one."""
        path = f"{_APPS}/{_segment(app_id, 'app_id')}/rotate-keys"
        body = await self._call(
            "POST",
            path,
            what="rotate keys",
            token=access_token,
            json={"environmentId": environment_id},
        )
        return publishable_key_of(body, "rotate keys")
