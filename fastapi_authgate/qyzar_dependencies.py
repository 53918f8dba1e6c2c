"""Qyzar route dependencies: ``require_client_token`` and ``qyzar_rate_limited(...)``.

``require_client_token`` checks a Qyzar *client token* (the JWT your server minted for the
browser SDK) and returns its session id and public metadata. Qyzar's document is explicit that a
valid client token does not mean a logged-in user, so it is a separate dependency with its own
result type: it never yields an :class:`~fastapi_authgate.context.AuthContext`, and the session
verifier never accepts a client token, so ``require_user``/``require_session`` are never
satisfied by one.

``qyzar_rate_limited(...)`` asks Qyzar's website rate limits (``checkRateLimit``) about the
caller: the client IP as :class:`~fastapi_authgate.client_ip.ClientIPResolver` finds it (forwarding
headers believed only from ``AUTHGATE_TRUSTED_PROXIES``) and optional metadata fields. A refusal is
a 429 with ``Retry-After`` and the draft-11 ``RateLimit-Policy``/``RateLimit`` headers; an allowed
request carries the same two headers. When Qyzar cannot answer, the limiter's failure mode decides:
``open`` lets the request through (a throttled log line), ``closed`` answers 503, and ``local``
enforces the route's rule in process with the gate's own limiter.
"""

# No ``from __future__ import annotations`` here, as in dependencies.py: FastAPI 0.115 (our lowest)
# reads a callable instance's parameter annotations without resolving strings.
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.security.base import SecurityBase
from starlette.exceptions import WebSocketException
from starlette.requests import HTTPConnection
from starlette.responses import Response

from fastapi_authgate.context import AuthContext, freeze_mapping
from fastapi_authgate.credentials import parse_bearer
from fastapi_authgate.errors import (
    AuthenticationError,
    AuthGateError,
    ConfigurationError,
    NotAuthenticatedError,
    ProviderError,
    RateLimitExceeded,
)
from fastapi_authgate.gate import AuthGate, installed_gate
from fastapi_authgate.providers.qyzar import (
    QyzarClient,
    QyzarError,
    QyzarSessionVerifier,
    verify_client_token,
)
from fastapi_authgate.ratelimit.headers import rate_limit_headers, retry_after_seconds
from fastapi_authgate.ratelimit.rules import parse_rule
from fastapi_authgate.responses import websocket_close

__all__ = [
    "ClientTokenDependency",
    "QyzarClientToken",
    "QyzarDownMode",
    "qyzar_client_of",
    "qyzar_rate_limited",
    "require_client_token",
]

logger = logging.getLogger(__name__)

CLIENT_TOKEN_HEADER = "X-Qyzar-Client-Token"
QyzarDownMode = Literal["limiter", "open", "closed", "local"]
"""What ``qyzar_rate_limited`` does when Qyzar cannot answer; ``limiter`` follows the gate's."""

MetadataFunc = Callable[
    [HTTPConnection, AuthContext | None], Mapping[str, str] | Awaitable[Mapping[str, str]]
]


@dataclass(frozen=True, slots=True)
class QyzarClientToken:
    """A verified client token: the session it is bound to (if any) and its public metadata.

    Not a logged-in user: it proves only that your server minted the token for a browser.
    """

    session_id: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", freeze_mapping(self.metadata))


def qyzar_client_of(gate: AuthGate) -> QyzarClient | None:
    """The :class:`QyzarClient` of the gate's Qyzar session verifier (also inside a chain)."""
    pending: list[Any] = [gate.verifier]
    while pending:
        verifier = pending.pop(0)
        if isinstance(verifier, QyzarSessionVerifier):
            return verifier.client
        pending.extend(getattr(verifier, "verifiers", ()))
    return None


def _client(conn: HTTPConnection, given: QyzarClient | None) -> QyzarClient:
    if given is not None:
        return given
    gate = installed_gate(conn.scope)
    client = qyzar_client_of(gate) if gate is not None else None
    if client is None:
        raise ConfigurationError(
            "no Qyzar client: install a gate with AUTHGATE_PROVIDER=qyzar or pass client="
        )
    return client


def _for_connection(conn: HTTPConnection, exc: AuthGateError) -> Exception:
    if conn.scope["type"] == "websocket":
        code, reason = websocket_close(exc)
        return WebSocketException(code=code, reason=reason)
    if isinstance(exc, ConfigurationError):
        logger.error("%s; answering 503", exc.description)
        return ProviderError("Qyzar is not configured")
    return exc


class ClientTokenDependency(SecurityBase):
    """Checks a Qyzar client token from ``X-Qyzar-Client-Token`` (or ``Authorization: Bearer``).

    Args:
        client: the Qyzar client; default the one of the installed gate's Qyzar verifier.
        online: ask Qyzar (``token-verify``) instead of checking the signature here with the
            project secret (offline, no call; needs a secret of at least 32 bytes).
        accept_bearer: also read the token from ``Authorization: Bearer``.
        leeway: clock skew allowed on ``exp``/``iat`` when checking offline.
    """

    def __init__(
        self,
        *,
        client: QyzarClient | None = None,
        online: bool = False,
        accept_bearer: bool = True,
        leeway: float = 0,
        scheme_name: str = "QyzarClientToken",
        description: str | None = None,
    ) -> None:
        self.client = client
        self.online = online
        self.accept_bearer = accept_bearer
        self.leeway = leeway
        self.scheme_name = scheme_name
        self.model = APIKey.model_validate(
            {
                "in": APIKeyIn.header,
                "name": CLIENT_TOKEN_HEADER,
                "description": description or "A Qyzar client token minted by this server.",
            }
        )

    def __repr__(self) -> str:
        return f"ClientTokenDependency(online={self.online!r})"

    async def __call__(self, request: HTTPConnection) -> QyzarClientToken:
        try:
            token = self._token(request)
            client = _client(request, self.client)
            if self.online:
                answer = await client.verify_client_token(token)
                if not answer.valid:
                    raise AuthenticationError("The client token is invalid")
                return QyzarClientToken(answer.session_id, answer.metadata)
            secret = await client.project_secret()
            claims = verify_client_token(token, secret, client.project_id, leeway=self.leeway)
            return QyzarClientToken(claims.session_id, claims.metadata, claims.expires_at)
        except AuthGateError as exc:
            raise _for_connection(request, exc) from None

    def _token(self, request: HTTPConnection) -> str:
        header: str | None = None
        bearer: str | None = None
        for name, value in request.scope["headers"]:
            if name == b"x-qyzar-client-token":
                if header is not None:
                    raise AuthenticationError("Multiple client tokens")
                header = value.decode("latin-1").strip()
            elif name == b"authorization" and self.accept_bearer:
                if bearer is not None:
                    raise AuthenticationError("Multiple Authorization headers")
                bearer = parse_bearer(value) or ""
        bearer = bearer or None
        if header and bearer and header != bearer:
            raise AuthenticationError("Two different client tokens")
        token = header or bearer
        if not token:
            raise NotAuthenticatedError("A Qyzar client token is required")
        return token


require_client_token = ClientTokenDependency()
"""A verified Qyzar client token (:class:`QyzarClientToken`), checked offline; never a user."""


def _headers(limit: int, remaining: int, reset: float, window: float | None) -> dict[str, str]:
    policy = f'"qyzar";q={limit}'
    if window is not None:
        policy += f";w={math.ceil(window)}"
    return {
        "RateLimit-Policy": policy,
        "RateLimit": f'"qyzar";r={remaining};t={max(0, math.ceil(reset))}',
    }


def qyzar_rate_limited(
    rule: str | None = None,
    *,
    metadata_fields: Sequence[str] = (),
    metadata: MetadataFunc | None = None,
    analytics: bool | None = None,
    on_qyzar_down: QyzarDownMode = "limiter",
    local_rule: str = "60/minute",
    client: QyzarClient | None = None,
) -> Callable[[HTTPConnection, Response], Awaitable[None]]:
    """A dependency that asks Qyzar's rate limits (``checkRateLimit``) about each request.

    Args:
        rule: ``"10/minute"`` sends ``settingsOverride`` for this route; ``None`` uses the
            project's own settings from the Qyzar dashboard.
        metadata_fields: fields of the verified identity's ``user.metadata`` (else its claims) to
            send as metadata buckets (``email`` limits per address whatever the IP).
        metadata: a callable ``(conn, auth_or_none) -> {field: value}`` (sync or async) for
            fields from elsewhere.
        analytics: ask Qyzar to record refusals in its analytics.
        on_qyzar_down: ``limiter`` (the gate limiter's failure mode), ``open``, ``closed`` or
            ``local`` (enforce ``rule``, else ``local_rule``, with the gate's limiter).
        local_rule: the in-process rule when ``local`` has no ``rule`` to fall back on.
        client: the Qyzar client; default the installed gate's.

    Raises:
        ConfigurationError: a rule that does not parse or holds more than one rate, or an
            unknown ``on_qyzar_down`` (when called, not per request).
    """
    rates = parse_rule(rule) if rule is not None else None
    if rates is not None and len(rates) != 1:
        raise ConfigurationError("qyzar_rate_limited takes a single rate such as '10/minute'")
    local_rates = rates if rates is not None else parse_rule(local_rule)
    if on_qyzar_down not in ("limiter", "open", "closed", "local"):
        raise ConfigurationError(f"unknown on_qyzar_down {on_qyzar_down!r}")
    override = (
        None if rates is None else {"limit": rates[0].limit, "windowSeconds": rates[0].period}
    )
    window = None if rates is None else float(rates[0].period)
    fields = tuple(metadata_fields)
    label = f"qyzar_rate_limited({rule!r})"
    last_log = -math.inf

    async def fields_of(conn: HTTPConnection, gate: AuthGate) -> dict[str, str]:
        if not fields and metadata is None:
            return {}
        auth = await gate.authenticate(conn)
        found: dict[str, str] = {}
        for name in fields:
            if auth is None:
                break
            source = auth.user.metadata if auth.user is not None else {}
            value = source.get(name, auth.claims.get(name))
            if value is not None:
                found[name] = str(value)
        if metadata is not None:
            made = metadata(conn, auth)
            extra = await made if inspect.isawaitable(made) else made
            found.update({str(k): str(v) for k, v in cast(Mapping[str, Any], extra).items()})
        return found

    async def qyzar_down(conn: HTTPConnection, gate: AuthGate, ip: str, exc: QyzarError) -> None:
        nonlocal last_log
        mode = gate.limiter.failure_mode if on_qyzar_down == "limiter" else on_qyzar_down
        now = time.monotonic()
        if now - last_log >= 10:
            last_log = now
            logger.warning(
                "%s: Qyzar rate-limit check failed (%s); failure mode %s",
                label,
                f"HTTP {exc.status}" if exc.status is not None else "no answer",
                mode,
            )
        if mode == "closed":
            raise ProviderError("The rate-limit service is unavailable") from exc
        if mode == "local":
            key = f"rl:qyzar-local:{label}:ip:{gate.client_ip.key(conn)}"
            decisions = await gate.limiter.check(key, local_rates)
            if decisions and not all(d.allowed for d in decisions):
                raise RateLimitExceeded(
                    retry_after=retry_after_seconds(decisions),
                    headers=rate_limit_headers(decisions),
                )

    async def qyzar_rate_limit(request: HTTPConnection, response: Response) -> None:
        try:
            gate = installed_gate(request.scope)
            if gate is None:
                raise ConfigurationError(f"{label} found no AuthGate (call gate.install(app))")
            qyzar = _client(request, client)
            ip = gate.client_ip.limit_address(request)  # IPv6 by network, as key="ip"
            try:
                answer = await qyzar.check_rate_limit(
                    ip=ip,
                    metadata=await fields_of(request, gate) or None,
                    settings_override=override,
                    analytics=analytics,
                )
            except QyzarError as exc:
                await qyzar_down(request, gate, ip, exc)
                return
            headers = _headers(answer.limit, answer.remaining, answer.reset_seconds, window)
            if not answer.allowed:
                gate.limiter.record_refusal(label, shadow=False)
                retry = answer.retry_after_seconds or answer.reset_seconds
                raise RateLimitExceeded(retry_after=retry, headers=headers)
            if request.scope["type"] == "http":
                response.headers.update(headers)
        except AuthGateError as exc:
            raise _for_connection(request, exc) from None

    qyzar_rate_limit.__qualname__ = qyzar_rate_limit.__name__ = label
    return qyzar_rate_limit
