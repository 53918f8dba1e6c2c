"""The one place where errors become HTTP responses or WebSocket close codes.

=====================  ======  ==================================================================
error                  status  headers
=====================  ======  ==================================================================
NotAuthenticatedError  401     ``WWW-Authenticate: Bearer realm="api"`` (RFC 6750 3.1: no code)
AuthenticationError    401     ``WWW-Authenticate: Bearer realm=..., error="invalid_token", ...``
AuthorizationError     403     ``WWW-Authenticate: Bearer ..., error="insufficient_scope"``
CrossOriginError       403     none: the credential is fine, the page that sent it is not ours
RateLimitExceeded      429     ``Retry-After`` plus the rate-limit headers the limiter computed
ProviderError          503     ``Retry-After``
anything else          500     never produced for client input; only a bug gets here
=====================  ======  ==================================================================

Bodies are ``{"detail": <description>, "error": <code>}``. Descriptions are fixed texts chosen by
the raiser, so nothing a client sent is echoed; this module still strips quotes and control
characters before putting them in a header, because a header is no place to trust anyone.
"""

from __future__ import annotations

import json
from typing import Final

from starlette.exceptions import HTTPException, WebSocketException
from starlette.responses import Response
from starlette.status import WS_1008_POLICY_VIOLATION, WS_1013_TRY_AGAIN_LATER
from starlette.types import Scope

from fastapi_authgate.errors import (
    AuthenticationError,
    AuthGateError,
    AuthorizationError,
    CrossOriginError,
    NotAuthenticatedError,
    ProviderError,
    RateLimitExceeded,
)

__all__ = ["bearer_challenge", "error_response", "for_scope", "status_for", "websocket_close"]

_HANDLERS_KEY = "starlette.exception_handlers"

_SCOPE_TOKEN_SAFE: Final = frozenset(
    "!#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~"
)


def _header_text(text: str) -> str:
    """Printable ASCII without quotes or backslashes (RFC 6750 error_description charset)."""
    return "".join(ch for ch in text if " " <= ch <= "~" and ch not in '"\\')


def bearer_challenge(
    realm: str,
    *,
    error: str | None = None,
    description: str | None = None,
    scopes: tuple[str, ...] = (),
) -> str:
    """Build an RFC 6750 ``WWW-Authenticate`` value."""
    parts = [f'Bearer realm="{_header_text(realm)}"']
    if error:
        parts.append(f'error="{error}"')
        if description:
            parts.append(f'error_description="{_header_text(description)}"')
    if scopes:
        safe = " ".join(s for s in scopes if s and set(s) <= _SCOPE_TOKEN_SAFE and '"' not in s)
        parts.append(f'scope="{safe}"')
    return ", ".join(parts)


def status_for(exc: AuthGateError) -> int:
    """The HTTP status of an error; the only mapping in the package."""
    if isinstance(exc, AuthenticationError):
        return 401
    if isinstance(exc, AuthorizationError | CrossOriginError):
        return 403
    if isinstance(exc, RateLimitExceeded):
        return 429
    if isinstance(exc, ProviderError):
        return 503
    return 500


def _headers_for(exc: AuthGateError, realm: str) -> dict[str, str]:
    if isinstance(exc, NotAuthenticatedError):
        return {"WWW-Authenticate": bearer_challenge(realm)}
    if isinstance(exc, AuthenticationError):
        return {
            "WWW-Authenticate": bearer_challenge(
                realm, error=exc.error, description=exc.description
            )
        }
    if isinstance(exc, AuthorizationError):
        return {
            "WWW-Authenticate": bearer_challenge(
                realm, error=exc.error, description=exc.description, scopes=exc.required
            )
        }
    if isinstance(exc, RateLimitExceeded):
        headers = dict(exc.headers)
        headers["Retry-After"] = str(exc.retry_after)
        return headers
    if isinstance(exc, ProviderError):
        return {"Retry-After": str(exc.retry_after)}
    return {}


def error_response(exc: AuthGateError, *, realm: str) -> Response:
    """The HTTP response for ``exc``: status, challenge or Retry-After, JSON body."""
    body = json.dumps({"detail": exc.description, "error": exc.error}).encode()
    return Response(
        body,
        status_code=status_for(exc),
        headers=_headers_for(exc, realm),
        media_type="application/json",
    )


def websocket_close(exc: AuthGateError) -> tuple[int, str]:
    """Close code and reason for a refused WebSocket: 1013 when retrying later can help."""
    if isinstance(exc, RateLimitExceeded | ProviderError):
        return WS_1013_TRY_AGAIN_LATER, exc.error
    return WS_1008_POLICY_VIOLATION, exc.error


def for_scope(exc: AuthGateError, scope: Scope, *, realm: str) -> Exception:
    """What a dependency raises for ``exc`` so that the app serving ``scope`` answers it right.

    On a WebSocket: a ``WebSocketException`` with the close code. Over HTTP: ``exc`` itself when
    the app's exception handlers cover it (``AuthGate.install`` registers one for the whole tree,
    giving the ``{"detail", "error"}`` body), else a Starlette ``HTTPException`` with the same
    status and headers. The second case is a sub-application mounted under the app that holds
    the gate: Starlette hands the sub-app's own handlers to its routes, and with none for our
    errors they would end as a 500. ``HTTPException`` is handled by every Starlette app, so the
    client still gets the right 401/403/429/503, its challenge and ``Retry-After``.
    """
    if scope["type"] == "websocket":
        code, reason = websocket_close(exc)
        return WebSocketException(code=code, reason=reason)
    handlers = scope.get(_HANDLERS_KEY)
    if handlers:
        table = handlers[0]
        for cls in type(exc).__mro__:
            if cls in table:
                return exc
            if cls is AuthGateError:
                break
    return HTTPException(status_for(exc), detail=exc.description, headers=_headers_for(exc, realm))
