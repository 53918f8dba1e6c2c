"""``QyzarClient``: every method of Qyzar's server helper, over its ``/projects/client/*`` routes.

Wire format: ``providers/WIRE.md``, Qyzar section. Every call carries
``Authorization: Bearer <project secret>`` and the project id (query for GET, body otherwise) and
goes through :func:`fastapi_authgate._http.request_json` with ``api_errors=True``: one shared httpx
client, one overall deadline per call (default 2 s), redirects refused (a redirect would carry
the secret to another host), bodies capped. What we chose where the documents are silent:

* Every failure is a :class:`QyzarError` (a ``ProviderError``: 503 with ``Retry-After`` when it
  reaches a route) carrying Qyzar's ``status``, ``code`` and ``body``. A 429 keeps Qyzar's
  ``Retry-After``. 401 ``invalid_project_secret`` and 404 ``unknown_project`` are
  :class:`QyzarSecretError`: our configuration, never the user's fault, logged loudly (at most
  once a minute) naming ``AUTHGATE_QYZAR__PROJECT_SECRET`` or ``AUTHGATE_QYZAR__PROJECT_ID``.
* The secret comes from ``resolve_project_secret(project_id)``, sync or async, on every call (so a
  rotated secret is picked up), and never reaches a log, a ``repr`` or an exception message.
* Session verification from cookies sends upstream only the two Qyzar cookies, never the rest of
  the Cookie header; a header with either of them twice, oversized, or not a cookie-octet string,
  is answered ``valid: false`` (reason ``malformed``) without a call, as is a header missing one.
"""

from __future__ import annotations

import inspect
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

import anyio
import httpx
from pydantic import SecretStr

from fastapi_authgate._http import build_client, check_base_url, request_json
from fastapi_authgate.errors import ConfigurationError, ProviderError, ProviderResponseError
from fastapi_authgate.providers.qyzar_cookies import (
    SESSION_ID_COOKIE,
    SESSION_TOKEN_COOKIE,
    UNSET,
    Unset,
    session_pair,
)
from fastapi_authgate.providers.qyzar_results import (
    ClientTokenVerification,
    ExtraMetadata,
    LoginAttempt,
    QyzarError,
    QyzarSecretError,
    RateLimitCheck,
    RequestEvent,
    RequestLogReceipt,
    SessionVerification,
    TrustedIdentifiers,
    parse_time,
)
from fastapi_authgate.providers.qyzar_tokens import (
    ClientToken,
    normalize_client_token_metadata,
)

__all__ = ["QyzarClient", "SecretResolver"]

logger = logging.getLogger(__name__)

_MAX_EVENTS: Final = 500
_LOUD_INTERVAL: Final = 60.0

SecretResolver = Callable[[str], "str | SecretStr | Awaitable[str | SecretStr]"]
"""``resolve_project_secret(project_id)``: the secret of a project, sync or async."""

T = TypeVar("T")


class QyzarClient:
    """Async client of Qyzar's server API (parity with the Node ``QyzarServer``).

    Args:
        api_url: Qyzar's base URL (``AUTHGATE_QYZAR__API_URL``).
        project_id: the default project of every call (``AUTHGATE_QYZAR__PROJECT_ID``); each
            method also takes ``project_id=`` for multi-project servers.
        resolve_project_secret: ``(project_id) -> secret``, sync or async.
        timeout: overall deadline of one call in seconds, secret resolution included.
        http_client: an ``httpx.AsyncClient`` to use instead of building one (it must not
            follow redirects); the caller then closes it.

    Raises:
        ConfigurationError: a URL that is not plain ``http(s)://host[/path]``, an empty project
            id, a resolver that is not callable, a non-positive timeout.
    """

    def __init__(
        self,
        *,
        api_url: str,
        project_id: str,
        resolve_project_secret: SecretResolver,
        timeout: float = 2.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.api_url = check_base_url(api_url, "AUTHGATE_QYZAR__API_URL")
        if not isinstance(project_id, str) or not project_id.strip():
            raise ConfigurationError("AUTHGATE_QYZAR__PROJECT_ID is empty")
        if not callable(resolve_project_secret):
            raise ConfigurationError("resolve_project_secret must be a callable")
        if not timeout > 0:
            raise ConfigurationError("the Qyzar call deadline must be positive")
        self.project_id = project_id.strip()
        self.timeout = timeout
        self._resolve = resolve_project_secret
        self._owns_client = http_client is None
        self._client = http_client if http_client is not None else build_client(timeout=timeout)
        self._last_loud = -_LOUD_INTERVAL
        self.calls = 0
        """Upstream calls made so far (for operators and benchmarks)."""

    def __repr__(self) -> str:
        return f"QyzarClient(api_url={self.api_url!r}, project_id={self.project_id!r})"

    async def aclose(self) -> None:
        """Close the HTTP client (when this client built it); safe to call twice."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> QyzarClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def project_secret(self, project_id: str | None = None) -> str:
        """The resolved secret of a project (default: this client's).

        Raises:
            QyzarSecretError: the resolver failed or gave an empty secret.
        """
        pid = project_id or self.project_id
        try:
            with anyio.fail_after(self.timeout):
                value: Any = self._resolve(pid)
                if inspect.isawaitable(value):
                    value = await value
        except Exception as exc:
            self._loud(f"the project secret resolver for {pid!r} failed ({type(exc).__name__})")
            raise QyzarSecretError("The Qyzar project secret is unavailable") from None
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str) or not value:
            self._loud(f"the project secret resolver for {pid!r} returned no secret")
            raise QyzarSecretError("The Qyzar project secret is unavailable")
        return value

    def _loud(self, reason: str, variable: str = "AUTHGATE_QYZAR__PROJECT_SECRET") -> None:
        now = time.monotonic()
        if now - self._last_loud < _LOUD_INTERVAL:
            return
        self._last_loud = now
        logger.error(
            "Qyzar at %s: %s; check %s. Every Qyzar-verified request answers 503 until it is "
            "fixed.",
            self.api_url,
            reason,
            variable,
        )

    async def _call(
        self,
        method: str,
        route: str,
        what: str,
        *,
        project_id: str | None,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        parse: Callable[[Any], T],
    ) -> T:
        pid = project_id or self.project_id
        secret = await self.project_secret(pid)
        send_headers = {"Authorization": f"Bearer {secret}", **(headers or {})}
        if method == "GET":
            params = {"projectId": pid, **(params or {})}
        else:
            body = {"projectId": pid, **(body or {})}
        url = f"{self.api_url}/projects/client/{route}"
        self.calls += 1
        try:
            data, _headers = await request_json(
                self._client,
                method,
                url,
                json=body,
                params=params,
                headers=send_headers,
                deadline=self.timeout,
                what=f"Qyzar {what}",
                api_errors=True,
            )
        except ProviderResponseError as exc:
            raise self._error(exc, what, pid) from None
        except ProviderError as exc:
            raise QyzarError(f"Qyzar {what} failed") from exc
        try:
            return parse(data)
        except (ValueError, TypeError, OverflowError) as exc:
            logger.warning("Qyzar %s at %s answered garbage (%s); answering 503", what, url, exc)
            raise QyzarError(f"Qyzar {what} answered garbage", status=200) from None

    def _error(self, exc: ProviderResponseError, what: str, project_id: str) -> QyzarError:
        status, code, body = exc.status, exc.code, exc.body
        if status == 401 and code in ("invalid_project_secret", None):
            self._loud(f"project {project_id!r} refused our project secret (401 {code})")
            return QyzarSecretError(
                "Qyzar refused the project secret", status=401, code=code, body=body
            )
        if status == 404 and code == "unknown_project":
            self._loud(f"project {project_id!r} is unknown (404)", "AUTHGATE_QYZAR__PROJECT_ID")
            return QyzarSecretError(
                "Qyzar does not know the project", status=404, code=code, body=body
            )
        retry_after = exc.provider_retry_after if status == 429 else None
        return QyzarError(
            f"Qyzar {what} failed",
            status=status,
            code=code,
            body=body,
            retry_after=min(retry_after, 3600.0) if retry_after is not None else 5,
        )

    # ---- sessions -----------------------------------------------------------------------

    async def verify_session_from_cookies(
        self,
        cookies: str | Mapping[str, str],
        *,
        project_id: str | None = None,
        token_cookie: str = SESSION_TOKEN_COOKIE,
        id_cookie: str = SESSION_ID_COOKIE,
    ) -> SessionVerification:
        """Verify the session named by the request's cookies (the raw Cookie header or a mapping).

        Only the two Qyzar cookies are forwarded. Missing or untrustworthy cookies answer
        ``valid: false`` (reason ``missing``/``incomplete``/``duplicate``/``malformed``) with no
        call.

        Raises:
            QyzarError: Qyzar is down, slow, misconfigured or answered garbage.
        """
        pair = session_pair(cookies, token_cookie=token_cookie, id_cookie=id_cookie)
        if pair is None:
            return SessionVerification(valid=False, reason="missing")
        if isinstance(pair, str):
            return SessionVerification(valid=False, reason=pair)
        session_id, session_token = pair
        return await self._call(
            "GET",
            "session-verify",
            "session verify",
            project_id=project_id,
            headers={"Cookie": f"{token_cookie}={session_token}; {id_cookie}={session_id}"},
            parse=SessionVerification.from_wire,
        )

    async def verify_session(
        self, *, session_id: str, session_token: str, project_id: str | None = None
    ) -> SessionVerification:
        """Verify a session id and token you already hold (``POST .../session-verify``).

        Raises:
            QyzarError: Qyzar is down, slow, misconfigured or answered garbage.
        """
        return await self._call(
            "POST",
            "session-verify",
            "session verify",
            project_id=project_id,
            body={"sessionId": session_id, "sessionToken": session_token},
            parse=SessionVerification.from_wire,
        )

    # ---- client tokens ------------------------------------------------------------------

    async def create_client_token(
        self,
        *,
        session_id: str | None = None,
        session_token: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        project_id: str | None = None,
    ) -> ClientToken:
        """Mint a browser client token; the session pair binds its expiry to the session.

        Raises:
            InvalidMetadataError: the metadata has the wrong shape (checked before any call).
            QyzarError: Qyzar refused or could not answer.
        """
        body: dict[str, Any] = {}
        if session_id is not None:
            body["sessionId"] = session_id
        if session_token is not None:
            body["sessionToken"] = session_token
        if metadata is not None:
            body["metadata"] = normalize_client_token_metadata(metadata)
        return await self._call(
            "POST", "token", "client token mint", project_id=project_id, body=body, parse=_minted
        )

    async def generate_client_token(
        self,
        *,
        session_id: str | None = None,
        session_token: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        project_id: str | None = None,
    ) -> ClientToken:
        """Deprecated alias of :meth:`create_client_token` (warns, same result)."""
        warnings.warn(
            "QyzarClient.generate_client_token is deprecated; use create_client_token",
            DeprecationWarning,
            stacklevel=2,
        )
        return await self.create_client_token(
            session_id=session_id,
            session_token=session_token,
            metadata=metadata,
            project_id=project_id,
        )

    async def verify_client_token(
        self, client_token: str, *, project_id: str | None = None
    ) -> ClientTokenVerification:
        """Check a client token with Qyzar (``POST /projects/client/token-verify``).

        A valid client token is *not* a logged-in user: use session verification for that.

        Raises:
            QyzarError: Qyzar refused or could not answer.
        """
        return await self._call(
            "POST",
            "token-verify",
            "client token verify",
            project_id=project_id,
            body={"clientToken": client_token},
            parse=ClientTokenVerification.from_wire,
        )

    # ---- extra metadata -----------------------------------------------------------------

    async def get_extra_metadata(
        self, *, session_id: str, project_id: str | None = None
    ) -> ExtraMetadata:
        """Read a session's extra metadata.

        Raises:
            QyzarError: unknown session (404) or Qyzar could not answer.
        """
        return await self._call(
            "GET",
            "extra-metadata",
            "extra metadata read",
            project_id=project_id,
            params={"sessionId": session_id},
            parse=lambda data: ExtraMetadata.from_wire(data, session_id),
        )

    async def patch_extra_metadata(
        self,
        *,
        session_id: str,
        metadata: Mapping[str, object | Unset | None] | None = None,
        email: str | Unset | None = UNSET,
        phone: str | Unset | None = UNSET,
        identifier: str | Unset | None = UNSET,
        project_id: str | None = None,
    ) -> ExtraMetadata:
        """Change some keys of a session's extra metadata; answers the whole metadata after.

        Tri-state per key: a value sets it, ``None`` deletes it, :data:`UNSET` (or an absent
        key) leaves it alone. ``email``, ``phone`` and ``identifier`` are shortcuts for those keys.

        Raises:
            ValueError: nothing to change.
            QyzarError: unknown session (404) or Qyzar could not answer.
        """
        patch: dict[str, object | None] = {
            key: value for key, value in (metadata or {}).items() if value is not UNSET
        }
        for key, value in (("email", email), ("phone", phone), ("identifier", identifier)):
            if value is not UNSET:
                patch[key] = value
        if not patch:
            raise ValueError("patch_extra_metadata needs at least one key to set or delete")
        return await self._call(
            "PATCH",
            "extra-metadata",
            "extra metadata patch",
            project_id=project_id,
            body={"sessionId": session_id, "metadata": patch},
            parse=lambda data: ExtraMetadata.from_wire(data, session_id),
        )

    # ---- rate limits, logs, anti-ATO ----------------------------------------------------

    async def check_rate_limit(
        self,
        *,
        ip: str,
        metadata: Mapping[str, str] | None = None,
        settings_override: Mapping[str, float] | None = None,
        analytics: bool | None = None,
        project_id: str | None = None,
    ) -> RateLimitCheck:
        """Ask Qyzar's website rate limits about one caller (IP bucket, optional metadata buckets).

        ``settings_override`` is ``{"limit": 10, "windowSeconds": 60}`` for this call only.

        Raises:
            QyzarError: Qyzar refused or could not answer.
        """
        body: dict[str, Any] = {"ip": ip}
        if metadata:
            body["metadata"] = {str(k): str(v) for k, v in metadata.items()}
        if settings_override is not None:
            body["settingsOverride"] = dict(settings_override)
        if analytics is not None:
            body["analytics"] = analytics
        return await self._call(
            "POST",
            "rate-limit-check",
            "rate-limit check",
            project_id=project_id,
            body=body,
            parse=RateLimitCheck.from_wire,
        )

    async def log_user_api_request(
        self,
        *,
        events: RequestEvent | Mapping[str, Any] | Iterable[RequestEvent | Mapping[str, Any]],
        project_id: str | None = None,
    ) -> RequestLogReceipt:
        """Send API requests into Qyzar's request logs (1 to 500 events per call).

        An event is a :class:`RequestEvent` or a mapping already in wire form (camelCase).

        Raises:
            ValueError: no events or more than 500.
            QyzarError: Qyzar refused or could not answer.
        """
        if isinstance(events, RequestEvent | Mapping):
            events = [events]
        wire = [e.to_wire() if isinstance(e, RequestEvent) else dict(e) for e in events]
        if not 1 <= len(wire) <= _MAX_EVENTS:
            raise ValueError(f"log_user_api_request takes 1 to {_MAX_EVENTS} events")
        return await self._call(
            "POST",
            "request-logs",
            "request-log upload",
            project_id=project_id,
            body={"events": wire},
            parse=RequestLogReceipt.from_wire,
        )

    async def log_attempted_login(
        self,
        *,
        session_id: str,
        identifier: str,
        success: bool | None = None,
        project_id: str | None = None,
    ) -> LoginAttempt:
        """Score a login attempt for a session (anti-account-takeover).

        Raises:
            QyzarError: Qyzar refused or could not answer.
        """
        body: dict[str, Any] = {"sessionId": session_id, "identifier": identifier}
        if success is not None:
            body["success"] = success
        return await self._call(
            "POST",
            "ato-login-attempt",
            "login-attempt log",
            project_id=project_id,
            body=body,
            parse=LoginAttempt.from_wire,
        )

    async def add_ato_trusted_identifier(
        self, *, session_id: str, identifier: str, project_id: str | None = None
    ) -> TrustedIdentifiers:
        """Mark a login identifier as trusted on the session's device after a good login.

        Raises:
            QyzarError: Qyzar refused or could not answer.
        """
        return await self._call(
            "POST",
            "ato-add-identifier",
            "trusted-identifier add",
            project_id=project_id,
            body={"sessionId": session_id, "identifier": identifier},
            parse=TrustedIdentifiers.from_wire,
        )


def _minted(data: Any) -> ClientToken:
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    token = data.get("clientToken")
    expires_at = parse_time(data.get("expiresAt"))
    if not isinstance(token, str) or not token or expires_at is None:
        raise ValueError("clientToken or expiresAt is missing")
    return ClientToken(token, expires_at)
