"""The single exception tree of fastapi_authgate.

Domain code raises these; only :mod:`fastapi_authgate.responses` turns them into HTTP (status,
``WWW-Authenticate``, ``Retry-After``) or a WebSocket close code. Every class carries a short
RFC 6750-style ``error`` code and a ``description`` that is safe to send to a client: it never
echoes attacker input (no ``kid``, no token text).

::

    AuthGateError
    ├── AuthenticationError         401  invalid_token
    │   └── NotAuthenticatedError   401  not_authenticated (no credential at all, RFC 6750 3.1)
    ├── AuthorizationError          403  insufficient_scope
    ├── CrossOriginError            403  cross_origin_request (CSRF check of cookie sessions)
    ├── RateLimitExceeded           429  rate_limited (carries retry_after)
    ├── ProviderError               503  provider_unavailable (wraps the cause, carries retry_after)
    │   └── ProviderResponseError   503  a REST answer we refuse (status, code, body)
    └── ConfigurationError          raised at startup only, never per request
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AuthGateError",
    "AuthenticationError",
    "AuthorizationError",
    "ConfigurationError",
    "CrossOriginError",
    "NotAuthenticatedError",
    "ProviderError",
    "ProviderResponseError",
    "RateLimitExceeded",
]


class AuthGateError(Exception):
    """Root of every error this package raises on purpose."""

    error: str = "authgate_error"
    default_description: str = "Authentication gate error"

    def __init__(self, description: str | None = None) -> None:
        self.description = description or self.default_description
        super().__init__(self.description)


class AuthenticationError(AuthGateError):
    """A credential was presented but is malformed, forged, expired, revoked or not for us."""

    error = "invalid_token"
    default_description = "The access token is invalid"


class NotAuthenticatedError(AuthenticationError):
    """No credential was presented at all."""

    error = "not_authenticated"
    default_description = "Not authenticated"


class AuthorizationError(AuthGateError):
    """The identity is valid but lacks a required scope or product access."""

    error = "insufficient_scope"
    default_description = "The request requires higher privileges than provided"

    def __init__(self, description: str | None = None, *, required: Iterable[str] = ()) -> None:
        super().__init__(description)
        self.required: tuple[str, ...] = tuple(required)


class CrossOriginError(AuthGateError):
    """A cookie-authenticated unsafe request or WebSocket handshake came from another site."""

    error = "cross_origin_request"
    default_description = "Cross-site request refused for a cookie session"


class RateLimitExceeded(AuthGateError):
    """A rate-limit rule refused the request; ``retry_after`` is in whole seconds (>= 1)."""

    error = "rate_limited"
    default_description = "Too many requests"

    def __init__(
        self,
        description: str | None = None,
        *,
        retry_after: float = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.retry_after = max(1, int(-(-retry_after // 1)))
        self.headers: dict[str, str] = dict(headers or {})


class ProviderError(AuthGateError):
    """The identity provider or a store is down, slow, misconfigured or answered garbage.

    Raise it ``from`` the underlying exception so the cause stays in the traceback.
    """

    error = "provider_unavailable"
    default_description = "The identity provider is unavailable"

    def __init__(self, description: str | None = None, *, retry_after: float = 5) -> None:
        super().__init__(description)
        self.retry_after = max(1, int(-(-retry_after // 1)))


class ProviderResponseError(ProviderError):
    """A provider's REST API answered with a status we do not accept (3xx, 4xx or 5xx).

    Raised by provider clients (not by verifiers, which answer 503 with no detail) so that code
    calling a backend API can tell "no such user" (404) from "our key is wrong" (401) from "slow
    down" (429). ``status`` is the HTTP status, ``code`` and ``message`` the ``error`` and
    ``message`` fields of the JSON error body when it had them, ``body`` the parsed body (or its
    text when it was not JSON, ``None`` when empty). ``provider_retry_after`` is the provider's
    ``Retry-After`` in seconds (``None`` when it sent none), which also sets ``retry_after``.
    Left unhandled in a route it still answers 503, because a failing provider call is never
    the client's fault; :attr:`description` stays the fixed, safe text, so nothing the provider
    said reaches the client.
    """

    def __init__(
        self,
        description: str | None = None,
        *,
        status: int,
        code: str | None = None,
        message: str | None = None,
        body: object = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(description, retry_after=5 if retry_after is None else retry_after)
        self.status = status
        self.code = code
        self.message = message
        self.body = body
        self.provider_retry_after = retry_after

    def __str__(self) -> str:
        detail = " ".join(part for part in (self.code, self.message) if part)
        return f"HTTP {self.status}" + (f": {detail}" if detail else "")


class ConfigurationError(AuthGateError):
    """Our own setup is wrong; raised when the gate is built, never while serving a request."""

    error = "configuration_error"
    default_description = "fastapi_authgate is misconfigured"
