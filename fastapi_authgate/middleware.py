"""``AuthGateMiddleware``: the guards' checks applied app-wide, as pure ASGI.

Pure ASGI (not ``BaseHTTPMiddleware``) so it adds one function call per request, streams bodies
untouched and works for WebSockets. The verified context lands in ``scope["state"]["auth"]``
(``request.state.auth``) and ``scope["auth"]`` (``request.auth``); ``require_user`` reuses it, so a
route behind both verifies once.

Path rules: ``include`` and ``exclude`` take exact paths or prefixes ending in ``*``
(``"/api/*"``). A path is checked when it matches ``include`` (or ``include`` is empty) and does not
match ``exclude``. Lifespan messages always pass through.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from fastapi_authgate.errors import (
    AuthGateError,
    AuthorizationError,
    ConfigurationError,
    NotAuthenticatedError,
    ProviderError,
)
from fastapi_authgate.gate import AuthGate, installed_gate
from fastapi_authgate.responses import error_response, websocket_close

__all__ = ["AuthGateMiddleware", "PathRules"]

logger = logging.getLogger(__name__)


class PathRules:
    """Exact paths and ``*``-suffixed prefixes, matched without regular expressions."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.exact: frozenset[str] = frozenset(p for p in patterns if not p.endswith("*"))
        self.prefixes: tuple[str, ...] = tuple(p[:-1] for p in patterns if p.endswith("*"))

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes)

    def matches(self, path: str) -> bool:
        return path in self.exact or path.startswith(self.prefixes)


class AuthGateMiddleware:
    """Refuse unauthenticated (or under-scoped) requests before they reach any route."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        gate: AuthGate | None = None,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        mode: Literal["user", "session", "optional"] = "user",
        scopes: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.gate = gate
        self.include = PathRules(list(include))
        self.exclude = PathRules(list(exclude))
        self.mode = mode
        self.scopes = tuple(scopes)

    def _applies(self, path: str) -> bool:
        if self.include and not self.include.matches(path):
            return False
        return not self.exclude.matches(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self._applies(scope["path"]):
            await self.app(scope, receive, send)
            return
        gate = self.gate or installed_gate(scope)
        try:
            if gate is None:
                raise ConfigurationError(
                    "AuthGateMiddleware found no AuthGate: call gate.install(app) or pass gate="
                )
            context = await gate.authenticate(HTTPConnection(scope))
            if context is None:
                if self.mode != "optional":
                    raise NotAuthenticatedError()
            elif self.mode == "session" and context.session_id is None:
                raise NotAuthenticatedError("A verified session is required")
            elif self.scopes and not context.scopes.issuperset(self.scopes):
                raise AuthorizationError(required=self.scopes)
        except AuthGateError as exc:
            await self._refuse(scope, receive, send, exc, gate)
            return
        await self.app(scope, receive, send)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, exc: AuthGateError, gate: AuthGate | None
    ) -> None:
        if isinstance(exc, ConfigurationError):
            logger.error("%s; answering 503", exc.description)
        if scope["type"] == "websocket":
            code, reason = websocket_close(exc)
            await send({"type": "websocket.close", "code": code, "reason": reason})
            return
        realm = gate.realm if gate is not None else "api"
        if isinstance(exc, ConfigurationError):
            exc = ProviderError("Authentication is not configured")
        await error_response(exc, realm=realm)(scope, receive, send)
