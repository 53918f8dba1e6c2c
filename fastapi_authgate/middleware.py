"""``AuthGateMiddleware``: the guards' checks applied app-wide, as pure ASGI.

Pure ASGI (not ``BaseHTTPMiddleware``) so it adds one function call per request, streams bodies
untouched and works for WebSockets. The verified context lands in ``scope["state"]["auth"]``
(``request.state.auth``) and ``scope["auth"]`` (``request.auth``); ``require_user`` reuses it, so a
route behind both verifies once.

Path rules: ``include`` and ``exclude`` take exact paths or prefixes ending in ``*``
(``"/api/*"``), each starting with ``/`` (or ``"*"`` alone: every path); a pattern that could never
match, or a bare string where a list belongs (its characters would become patterns, ``"*"`` among
them), is refused when the middleware is built. A path is checked when it matches ``include`` (or
``include`` is empty) and does not match ``exclude``. Lifespan messages always pass through.

A path ending in one newline (``/admin%0A``) is matched as the path without it: Starlette's route
patterns end in ``$``, which also matches before a final newline, so the router serves that
request as ``/admin`` and the rules must see it the same way.

Rules match the *route path*: the request path without the ``root_path`` the app is served under
(``uvicorn --root-path /svc``, ``outer.mount("/v1", app)``), the same path the app's router
matches routes against. Matching the raw path would let ``include=["/api/*"]`` match nothing
under a root path and serve every route with no credential. Starlette's own ``get_route_path`` is
regex-based before 1.0 (0.37 strips ``root_path`` as a pattern, so ``/v1`` also eats the front of
``/v10/...``), so :func:`route_path` is our own, with the semantics of current Starlette.

``mode="optional"`` together with ``scopes`` is refused when the middleware is built: it would let
anonymous callers through while refusing signed-in ones that lack a scope.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from fastapi_authgate.errors import AuthGateError, ConfigurationError, ProviderError
from fastapi_authgate.gate import GUARD_MODES, AuthGate, GuardMode, check_access, installed_gate
from fastapi_authgate.responses import error_response, websocket_close

__all__ = ["AuthGateMiddleware", "PathRules", "route_path"]

logger = logging.getLogger(__name__)


def route_path(scope: Scope) -> str:
    """The path the app's router sees: ``scope["path"]`` without the app's ``root_path``.

    A path outside the root path is returned whole (the router will not match it either); the
    root itself is ``"/"``.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if len(path) == len(root):
        return "/"
    if path[len(root)] == "/":
        return path[len(root) :]
    return path


class PathRules:
    """Exact paths and ``*``-suffixed prefixes, matched without regular expressions."""

    def __init__(self, patterns: Iterable[str], name: str = "include") -> None:
        if isinstance(patterns, str):
            raise ConfigurationError(
                f"AuthGateMiddleware {name}= takes a list of patterns, not the string {patterns!r}"
            )
        patterns = list(patterns)
        for pattern in patterns:
            if not isinstance(pattern, str) or not (pattern == "*" or pattern.startswith("/")):
                raise ConfigurationError(
                    f"AuthGateMiddleware {name} pattern {pattern!r} must start with '/' "
                    "(a route path such as '/api/*'); it could never match a request"
                )
        self.exact: frozenset[str] = frozenset(p for p in patterns if not p.endswith("*"))
        self.prefixes: tuple[str, ...] = tuple(p[:-1] for p in patterns if p.endswith("*"))

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes)

    def matches(self, path: str) -> bool:
        if path.endswith("\n"):
            path = path[:-1]  # as the router's "$" matches it (see the module docstring)
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
        mode: GuardMode = "user",
        scopes: Iterable[str] = (),
    ) -> None:
        scopes = tuple(scopes)
        if mode not in GUARD_MODES:
            raise ConfigurationError(
                f"AuthGateMiddleware mode {mode!r} must be 'user', 'session' or 'optional'"
            )
        if mode == "optional" and scopes:
            raise ConfigurationError(
                "AuthGateMiddleware(mode='optional', scopes=...) would let anonymous requests "
                "through while refusing signed-in users without the scopes; use mode='user' "
                "(or 'session') with scopes, or optional without them"
            )
        self.app = app
        self.gate = gate
        self.include = PathRules(include, "include")
        self.exclude = PathRules(exclude, "exclude")
        self.mode = mode
        self.scopes = scopes

    def _applies(self, path: str) -> bool:
        if self.include and not self.include.matches(path):
            return False
        return not self.exclude.matches(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self._applies(route_path(scope)):
            await self.app(scope, receive, send)
            return
        gate = self.gate or installed_gate(scope)
        try:
            if gate is None:
                raise ConfigurationError(
                    "AuthGateMiddleware found no AuthGate: call gate.install(app) or pass gate="
                )
            context = await gate.authenticate(HTTPConnection(scope))
            check_access(context, self.mode, self.scopes)
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
