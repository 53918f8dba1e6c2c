"""``require_user``, ``require_session``, ``optional_user`` and ``rate_limited`` for FastAPI routes.

The three guards are stable module-level objects, instances of a ``SecurityBase`` subclass, so
``app.dependency_overrides[require_user]`` works and FastAPI lists them as a bearer security scheme
(``gate.install`` adds the session cookie as the alternative scheme). Each guard is one dependency
taking only the connection and ``SecurityScopes``: FastAPI resolves nothing else per request, which
keeps a guarded route within a few percent of a route guarded by a no-op ``SecurityBase``.

Scopes come from ``Security(require_user, scopes=[...])``; a missing scope is a 403, never a 401.
On WebSockets a refusal closes the socket (1008, or 1013 when retrying later can help) instead of
answering HTTP.
"""

# No ``from __future__ import annotations`` here: older FastAPI releases (0.115, our lowest) read a
# callable instance's parameter annotations without resolving strings, and would see ``request``
# and ``security_scopes`` as query parameters.
import logging

from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from fastapi_authgate._rate_dependency import rate_limited
from fastapi_authgate.context import AuthContext
from fastapi_authgate.errors import AuthGateError, ConfigurationError, ProviderError
from fastapi_authgate.gate import (
    BEARER_SCHEME_NAME,
    GUARD_MODES,
    SCOPE_KEY,
    AuthGate,
    GuardMode,
    check_access,
    installed_gate,
)
from fastapi_authgate.responses import for_scope

__all__ = ["AuthDependency", "optional_user", "rate_limited", "require_session", "require_user"]

logger = logging.getLogger(__name__)


class AuthDependency(SecurityBase):
    """A guard: verifies the connection's credential and checks the route's scopes.

    ``mode`` is ``"user"`` (any verified identity), ``"session"`` (a verified session: the context
    must carry a ``session_id``) or ``"optional"`` (no credential gives ``None``; a bad one is
    still a 401). With ``gate=None`` the guard uses the gate installed on the app. The rules are
    :func:`~fastapi_authgate.gate.check_access`, shared with the middleware.

    Raises:
        ConfigurationError: ``mode`` is none of the three.
    """

    authgate_guard = True  # lets rate_limited(key="user") find the gate of the route's guard

    def __init__(
        self,
        mode: GuardMode = "user",
        *,
        gate: AuthGate | None = None,
        scheme_name: str = BEARER_SCHEME_NAME,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        self.mode = mode
        self.gate = gate
        self.auto_error = auto_error
        self.scheme_name = scheme_name
        self.model = HTTPBearerModel(
            bearerFormat="JWT",
            description=description
            or "A bearer token from the identity provider (or its session cookie).",
        )

    @property
    def mode(self) -> GuardMode:
        """``"user"``, ``"session"`` or ``"optional"``; setting it is checked like the argument."""
        return self._mode

    @mode.setter
    def mode(self, mode: GuardMode) -> None:
        if mode not in GUARD_MODES:
            raise ConfigurationError(f"guard mode {mode!r} must be 'user', 'session' or 'optional'")
        self._mode: GuardMode = mode
        self._any_identity = mode != "session"  # read per request: no call for the common case

    def __repr__(self) -> str:
        return f"AuthDependency(mode={self.mode!r})"

    async def __call__(
        self, request: HTTPConnection, security_scopes: SecurityScopes
    ) -> AuthContext | None:
        scope = request.scope
        gate = self.gate or scope.get(SCOPE_KEY) or installed_gate(scope)
        try:
            if gate is None:
                raise ConfigurationError(
                    "no AuthGate is installed on this app: call gate.install(app) at startup"
                )
            context = await gate.authenticate(request)
            if context is not None and self._any_identity and not security_scopes.scopes:
                return context  # the common case, without a call (check_access would agree)
            if context is None and not self.auto_error:
                return None
            check_access(context, self.mode, security_scopes.scopes)
            return context
        except AuthGateError as exc:
            realm = gate.realm if gate is not None else "api"
            raise _for_connection(request, exc, realm) from None


def _for_connection(request: HTTPConnection, exc: AuthGateError, realm: str) -> Exception:
    """Websockets close with a code; a missing gate answers 503 even without our handler."""
    if isinstance(exc, ConfigurationError):
        logger.error("%s; answering 503", exc.description)
        exc = ProviderError("Authentication is not configured")
    return for_scope(exc, request.scope, realm=realm)


require_user = AuthDependency("user")
"""Any verified identity: bearer JWT, session cookie or provider token."""

require_session = AuthDependency("session")
"""Only a verified session (``AuthContext.session_id`` is set): a session cookie, a session pair
checked with the provider, or a verified JWT whose ``sid`` names the session, cookie or bearer."""

optional_user = AuthDependency("optional")
"""``AuthContext | None``; a credential that is present but invalid is still a 401."""
