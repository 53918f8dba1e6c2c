"""``AuthGate``: the composition root that builds verifier, limiter and client-IP resolver.

Everything is validated here, when the gate is built, so a misconfiguration raises
:class:`ConfigurationError` at startup and never surfaces as a per-request failure. The gate holds
no per-request state; routes reach it through ``request.app.state.authgate`` (set by
:meth:`AuthGate.install`).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, cast

from pydantic import SecretStr, ValidationError
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Scope

from fastapi_authgate._jose import check_algorithms
from fastapi_authgate.client_ip import ClientIPResolver
from fastapi_authgate.context import AuthContext, Credentials
from fastapi_authgate.credentials import bearer_credentials, raw_bearer, read_credentials
from fastapi_authgate.errors import (
    AuthenticationError,
    AuthGateError,
    AuthorizationError,
    ConfigurationError,
    NotAuthenticatedError,
)
from fastapi_authgate.origins import OriginPolicy
from fastapi_authgate.protocols import Verifier
from fastapi_authgate.ratelimit.hooks import ResponseHooksMiddleware
from fastapi_authgate.ratelimit.limiter import RateLimiter
from fastapi_authgate.reporting import (
    REPORTER_SCOPE_KEY,
    LogSink,
    QyzarSink,
    Reporter,
    ReportingMiddleware,
)
from fastapi_authgate.responses import error_response
from fastapi_authgate.settings import AuthGateSettings
from fastapi_authgate.verifiers.chain import ChainVerifier

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from fastapi_authgate.providers.dev import DevIssuer

__all__ = [
    "AuthGate",
    "BEARER_SCHEME_NAME",
    "COOKIE_SCHEME_NAME",
    "GUARD_MODES",
    "SCOPE_KEY",
    "STATE_KEY",
    "GUARD_MARKER",
    "VERIFIED_KEY",
    "GuardMode",
    "check_access",
    "guard_gate",
    "installed_gate",
]

logger = logging.getLogger(__name__)

STATE_KEY = "authgate"
"""Attribute of ``app.state`` that holds the installed gate."""
SCOPE_KEY = "authgate.gate"
"""ASGI scope key under which the installed gate travels with each request (see ``install``)."""
VERIFIED_KEY = "authgate.verified"
"""Private ASGI scope key: ``(gate, context)``, the context that ``gate`` verified for this request.

Only :meth:`AuthGate.authenticate` writes it, and a gate reuses what it finds there only when the
gate in it is itself. ``request.state.auth`` and ``scope["auth"]`` are copies for the route's
convenience and are never read back: lifespan state, another middleware or another gate may write
anything there, and none of it may count as authenticated.
"""
BEARER_SCHEME_NAME = "BearerAuth"
COOKIE_SCHEME_NAME = "SessionCookie"


class AuthGate:
    """Holds the verifier, the limiter and the client-IP resolver for one application."""

    def __init__(
        self,
        verifier: Verifier | Sequence[Verifier],
        *,
        realm: str = "api",
        limiter: RateLimiter | None = None,
        trusted_proxies: Iterable[str] = (),
        session_cookie: str = "authgate_session",
        dev_issuer: DevIssuer | None = None,
        allowed_origins: Iterable[str] = (),
        reporter: Reporter | None = None,
    ) -> None:
        if isinstance(verifier, Sequence):
            verifier = ChainVerifier(verifier)
        if not callable(getattr(verifier, "verify", None)):
            raise ConfigurationError(
                "AuthGate(verifier=...) needs an object with a verify() method"
            )
        if not realm or any(ch in realm for ch in '"\\\r\n'):
            raise ConfigurationError("realm must be non-empty text without quotes (AUTHGATE_REALM)")
        self.verifier: Verifier = verifier
        lookup = getattr(verifier, "cached_bearer", None)
        self._cached_bearer: Callable[[bytes], AuthContext | None] | None = (
            lookup if callable(lookup) else None
        )
        by_cookies = getattr(verifier, "cached_cookies", None)
        self._cached_cookies: Callable[[list[tuple[bytes, bytes]]], AuthContext | None] | None = (
            by_cookies if callable(by_cookies) else None
        )
        self.realm = realm
        names = getattr(verifier, "cookie_names", None)
        self._cookie_names: frozenset[str] | None = None if names is None else frozenset(names)
        self._unique_cookies = frozenset((session_cookie,))
        self.limiter = limiter if limiter is not None else RateLimiter()
        self.client_ip = ClientIPResolver(trusted_proxies)
        self.origins = OriginPolicy(allowed_origins, trusts_peer=self.client_ip.trusts_peer)
        self.session_cookie = session_cookie
        self.dev_issuer = dev_issuer
        self.reporter = reporter
        """Background reporting (``None``: off); ``reporter.counters`` tells what it did."""
        if reporter is not None:
            reporter.client_ip = self.client_ip

    @classmethod
    def from_settings(cls, settings: AuthGateSettings | None = None) -> AuthGate:
        """Build a gate from ``AUTHGATE_*`` variables; bad values name the variable."""
        if settings is None:
            try:
                settings = AuthGateSettings()
            except ValidationError as exc:
                raise ConfigurationError(_describe_settings_error(exc)) from None
        _checked_algorithms(settings.algorithms)
        dev_issuer: DevIssuer | None = None
        verifier: Verifier
        if settings.provider == "dev":
            from fastapi_authgate.providers.dev import DevIssuer

            _refuse_real_provider_settings(settings)

            logger.warning(
                "AUTHGATE_PROVIDER is unset or 'dev': trusting the in-memory development issuer; "
                "set AUTHGATE_PROVIDER (and its settings) before serving real users"
            )
            dev_issuer = DevIssuer(audience=settings.audience[0] if settings.audience else None)
            verifier = dev_issuer.verifier(
                leeway=settings.leeway_seconds, session_cookie=settings.session_cookie
            )
        else:
            verifier = _VERIFIER_BUILDERS[settings.provider](settings)
        return cls(
            verifier,
            realm=settings.realm,
            limiter=RateLimiter.from_settings(settings),
            trusted_proxies=settings.trusted_proxies,
            session_cookie=settings.session_cookie,
            dev_issuer=dev_issuer,
            allowed_origins=settings.allowed_origins,
            reporter=_reporter_from_settings(settings),
        )

    @staticmethod
    def of(conn: HTTPConnection) -> AuthGate:
        """The gate installed on the connection's application."""
        gate = installed_gate(conn.scope)
        if gate is None:
            raise ConfigurationError(
                "no AuthGate is installed on this app: call gate.install(app) at startup"
            )
        return gate

    async def authenticate(self, conn: HTTPConnection) -> AuthContext | None:
        """The verified identity of ``conn``, ``None`` when it carries no credential.

        What this gate verified earlier for the same connection (the middleware, a router-level
        guard, ``rate_limited(key="user")``) is reused from the private ``VERIFIED_KEY`` slot, so
        stacking guards costs one verification. Only this gate's own entry counts: a context another
        gate verified (another issuer's token) or anything written at ``request.state.auth`` is
        never taken as proof. A bearer token the verifier has verified before is answered from its
        cache (``cached_bearer``) before any credential is parsed: the repeated-token case is the
        common one and costs a hash and a lookup. When that lookup misses, the token it was given
        is checked and verified as it is; the headers are not walked a second time.
        """
        scope = conn.scope
        verified = scope.get(VERIFIED_KEY)
        if verified is not None and verified[0] is self:
            return verified[1]  # type: ignore[no-any-return]
        context: AuthContext | None = None
        credentials: Credentials | None = None
        token: bytes | None = None
        lookup = self._cached_bearer
        if lookup is not None:
            token = raw_bearer(scope["headers"])
            if token is not None:
                context = lookup(token)
                if context is None:
                    # the one Authorization header holds a bearer token: exactly the bytes
                    # read_credentials would check, and beside one it would read nothing else
                    credentials = bearer_credentials(token)
        if token is None and self._cached_cookies is not None:
            context = self._cached_cookies(scope["headers"])
        if context is None:
            if credentials is None:
                credentials = read_credentials(
                    conn, cookie_names=self._cookie_names, unique_cookies=self._unique_cookies
                )
                if credentials is None:
                    scope[VERIFIED_KEY] = (self, None)
                    return None
            context = await self.verifier.verify(credentials)
            if context is None:
                if credentials.bearer is not None or credentials.api_key is not None:
                    raise AuthenticationError("The credential was not recognised")
                scope[VERIFIED_KEY] = (self, None)
                return None
        if context.credential == "cookie" and OriginPolicy.applies(scope):
            self.origins.check(scope)  # CSRF and cross-site WebSockets: see origins.py
        scope[VERIFIED_KEY] = (self, context)
        state = scope.get("state")
        if state is None:
            scope["state"] = {"auth": context}
        else:
            state["auth"] = context
        scope["auth"] = context
        return context

    async def startup(self) -> None:
        hook = getattr(self.verifier, "startup", None)
        if hook is not None:
            await hook()
        if self.reporter is not None:
            await self.reporter.start()

    async def aclose(self) -> None:
        """Close clients and flush workers; safe to call twice."""
        if self.reporter is not None:
            await self.reporter.aclose()  # first: its sink may share the verifier's client
        hook = getattr(self.verifier, "aclose", None)
        if hook is not None:
            await hook()
        await self.limiter.aclose()

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        await self.startup()
        try:
            yield
        finally:
            await self.aclose()

    def install(self, app: Starlette) -> None:
        """Attach the gate: app state, exception handler, lifespan, response hooks, OpenAPI.

        Installing the same gate twice is a no-op; a second, different gate on one app is a
        :class:`ConfigurationError` (the guards would silently follow whichever came last).
        """
        installed = getattr(app.state, STATE_KEY, None)
        if installed is self:
            return
        if installed is not None:
            raise ConfigurationError(
                "another AuthGate is already installed on this app; use "
                "AuthDependency(mode, gate=...) for routes that need a different gate"
            )
        setattr(app.state, STATE_KEY, self)
        app.add_exception_handler(AuthGateError, self._handle_error)
        _wrap_lifespan(app, self.lifespan)
        scope_items: dict[str, object] = {SCOPE_KEY: self}
        if self.reporter is not None:
            scope_items[REPORTER_SCOPE_KEY] = self.reporter
            _report_outermost(app, self.reporter, scope_items)  # it runs the hooks too
        else:
            app.add_middleware(ResponseHooksMiddleware, scope_items=scope_items)
        openapi = getattr(app, "openapi", None)
        if callable(openapi):
            setattr(app, "openapi", _with_cookie_scheme(app, openapi, self.session_cookie))  # noqa: B010

    async def _handle_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthGateError)
        return error_response(exc, realm=self.realm)


GuardMode = Literal["user", "session", "optional"]
"""``user``: any verified identity; ``session``: a verified session; ``optional``: none is fine."""

GUARD_MODES: frozenset[str] = frozenset(("user", "session", "optional"))


def check_access(context: AuthContext | None, mode: str, required: Sequence[str]) -> None:
    """The one rule set of every guard and of the middleware; raises when ``context`` fails it.

    * no identity: fine for ``optional``, else :class:`NotAuthenticatedError` (401, no code);
    * ``session`` and no ``session_id``: :class:`AuthenticationError` (401 ``invalid_token``). A
      session is whatever the verifier marked with ``session_id``: a session cookie, a session
      pair checked with the provider, or a verified JWT whose ``sid`` names the session, whether
      it came as a cookie or a bearer token (the signature vouches for ``sid`` either way);
    * a required scope missing: :class:`AuthorizationError` (403 ``insufficient_scope``).
    """
    if context is None:
        if mode != "optional":
            raise NotAuthenticatedError()
        return
    if mode == "session" and context.session_id is None:
        raise AuthenticationError("A verified session is required")
    if required and not context.scopes.issuperset(required):
        raise AuthorizationError(required=required)


def installed_gate(scope: Scope) -> AuthGate | None:
    """The gate serving ``scope``: the one the install middleware put in it, else ``app.state``'s.

    The scope is the fast path (one dict lookup); ``app.state`` covers middleware that runs
    outside the gate's own (added after ``install``) and apps that copy scopes.
    """
    gate = scope.get(SCOPE_KEY)
    if gate is None:
        app = scope.get("app")
        gate = getattr(app.state, STATE_KEY, None) if app is not None else None
    return gate


GUARD_MARKER = "authgate_guard"
"""Class attribute (true) of a guard whose ``gate`` attribute names the gate it checks with."""

_MAX_ROUTES = 4096
_route_guards: dict[int, tuple[object, _Guard | None]] = {}  # routes may be unhashable


def guard_gate(scope: Scope, default: AuthGate | None) -> AuthGate | None:
    """The gate whose identity counts on this route: its guard's gate, else ``default``.

    ``rate_limited(key="user")`` keys on the identity the route's guard admits, so a route guarded
    by ``AuthDependency(gate=partner)`` is limited per partner identity, never per whatever the
    installed gate makes of the token. The guard is found once per route in FastAPI's dependency
    tree (route, router and app dependencies included; the first guard in solving order decides,
    and a guard without its own gate means ``default``). A route without any guard uses the gate
    that already verified this request (an ``AuthGateMiddleware(gate=...)``), else ``default``.
    """
    route = scope.get("route")
    if route is not None:
        entry = _route_guards.get(id(route))
        if entry is None or entry[0] is not route:
            entry = (route, _first_guard(getattr(route, "dependant", None), 0))
            if len(_route_guards) < _MAX_ROUTES:
                _route_guards[id(route)] = entry
        guard = entry[1]
        if guard is not None:
            return guard.gate if guard.gate is not None else default
    verified = scope.get(VERIFIED_KEY)
    return verified[0] if verified is not None else default


class _Guard(Protocol):
    gate: AuthGate | None


def _first_guard(dependant: Any, depth: int) -> _Guard | None:
    if dependant is None or depth > 32:
        return None
    for sub in getattr(dependant, "dependencies", ()):
        found = _first_guard(sub, depth + 1)  # FastAPI solves sub-dependencies first
        if found is not None:
            return found
        call = getattr(sub, "call", None)
        if getattr(type(call), GUARD_MARKER, False):
            return cast(_Guard, call)
    return None


def _report_outermost(app: Starlette, reporter: Reporter, scope_items: dict[str, object]) -> None:
    """Wrap the whole middleware stack (error middleware too) so every response is reported,
    whatever middleware the app adds after ``install``.

    The reporting layer also does ``ResponseHooksMiddleware``'s job (the scope items and the
    response hooks), so the gate installs no second layer watching the same response.
    """
    build = app.build_middleware_stack

    def build_with_reporting() -> Any:
        return ReportingMiddleware(
            build(), reporter=reporter, scope_items=scope_items, response_hooks=True
        )

    app.build_middleware_stack = build_with_reporting  # type: ignore[method-assign]


def _reporter_from_settings(settings: AuthGateSettings) -> Reporter | None:
    """``AUTHGATE_REPORTING__SINK`` unset: ``None``, so reporting costs nothing."""
    choice = settings.reporting.sink
    if choice is None:
        return None
    sink = LogSink() if choice == "log" else _qyzar_sink(settings)
    return Reporter.from_settings(settings.reporting, sink)


def _qyzar_sink(settings: AuthGateSettings) -> QyzarSink:
    """A Qyzar sink with its own client, from ``AUTHGATE_QYZAR__*``; a missing one is named."""
    from fastapi_authgate.providers.qyzar import QyzarClient, QyzarSecretError

    qyzar = settings.qyzar
    for name, value in (
        ("API_URL", qyzar.api_url),
        ("PROJECT_ID", qyzar.project_id),
        ("PROJECT_SECRET", qyzar.project_secret),
    ):
        if not value:
            raise ConfigurationError(f"AUTHGATE_REPORTING__SINK=qyzar needs AUTHGATE_QYZAR__{name}")
    assert qyzar.api_url and qyzar.project_id and qyzar.project_secret is not None
    secret: SecretStr = qyzar.project_secret
    client = QyzarClient(
        api_url=qyzar.api_url,
        project_id=qyzar.project_id,
        resolve_project_secret=lambda _project_id: secret,
    )
    return QyzarSink(client, own_client=True, permanent_errors=(QyzarSecretError,))


def _wrap_lifespan(app: Starlette, gate_lifespan: Callable[[], Any]) -> None:
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(inner_app: Any) -> AsyncIterator[Any]:
        async with gate_lifespan(), original(inner_app) as state:
            yield state

    app.router.lifespan_context = lifespan


def _with_cookie_scheme(
    app: Any, original: Callable[[], dict[str, Any]], cookie_name: str
) -> Callable[[], dict[str, Any]]:
    """Add the session-cookie scheme next to the bearer scheme in the OpenAPI document.

    The guards are single dependencies on purpose (a sub-dependency per scheme would double
    FastAPI's per-request solving cost), so FastAPI only sees the bearer scheme; every operation
    that requires it is offered the cookie as an alternative here, once, when the schema is built.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema  # type: ignore[no-any-return]
        schema = original()
        components = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        if BEARER_SCHEME_NAME not in components:
            return schema
        components[COOKIE_SCHEME_NAME] = {
            "type": "apiKey",
            "in": "cookie",
            "name": cookie_name,
            "description": "Session cookie set by the identity provider's sign-in",
        }
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                if not isinstance(operation, Mapping):
                    continue
                security = operation.get("security")
                if not isinstance(security, list):
                    continue
                extra = [
                    {COOKIE_SCHEME_NAME: requirement[BEARER_SCHEME_NAME]}
                    for requirement in security
                    if BEARER_SCHEME_NAME in requirement
                ]
                security.extend(item for item in extra if item not in security)
        return schema

    return openapi


def _provider_module(module: str, provider: str) -> Callable[[AuthGateSettings], Verifier]:
    """A builder that imports ``module`` only when its provider is chosen.

    Each provider module exposes ``verifier_from_settings(settings) -> Verifier``, which raises
    :class:`ConfigurationError` naming the first missing or bad ``AUTHGATE_<PROVIDER>__*`` variable.
    """

    def build(settings: AuthGateSettings) -> Verifier:
        if importlib.util.find_spec(module) is None:
            raise ConfigurationError(
                f"AUTHGATE_PROVIDER={provider} is not supported by this version yet; "
                "use 'dev' or 'jwks'"
            )
        builder: Callable[[AuthGateSettings], Verifier] = importlib.import_module(
            module
        ).verifier_from_settings
        return builder(settings)

    return build


_REAL_PROVIDER_VARIABLES: Final = ("jwks_url", "issuer", "token_type")
_PROVIDER_SECTIONS: Final = ("qyzar", "torii", "tiun", "inai")


def _refuse_real_provider_settings(settings: AuthGateSettings) -> None:
    """Refuse the development issuer when a real provider's settings are present.

    Someone who set ``AUTHGATE_JWKS_URL`` or ``AUTHGATE_QYZAR__PROJECT_ID`` meant to trust that
    provider; falling back to the development issuer because ``AUTHGATE_PROVIDER`` was forgotten
    would let anyone mint tokens (the example app's ``/dev/token``).
    """
    for name in _REAL_PROVIDER_VARIABLES:
        if getattr(settings, name):
            _refuse_dev(f"AUTHGATE_{name.upper()}")
    for section_name in _PROVIDER_SECTIONS:
        section = getattr(settings, section_name, None)
        if section is None:
            continue
        for field in sorted(section.model_fields_set):
            if getattr(section, field) not in (None, ""):
                _refuse_dev(f"AUTHGATE_{section_name.upper()}__{field.upper()}")


def _refuse_dev(variable: str) -> None:
    raise ConfigurationError(
        f"{variable} is set but AUTHGATE_PROVIDER is unset or 'dev', which trusts the in-memory "
        "development issuer (anyone can mint tokens): set AUTHGATE_PROVIDER to the provider "
        f"{variable} belongs to, or unset {variable}"
    )


def _jwks_verifier_from_settings(settings: AuthGateSettings) -> Verifier:
    from fastapi_authgate.verifiers.jwks import JWKSVerifier

    if not settings.jwks_url and not settings.issuer:
        raise ConfigurationError(
            "AUTHGATE_PROVIDER=jwks needs AUTHGATE_JWKS_URL or AUTHGATE_ISSUER (for OIDC discovery)"
        )
    if not settings.issuer:
        if not settings.unsafe_any_issuer:
            raise ConfigurationError(
                "AUTHGATE_PROVIDER=jwks needs AUTHGATE_ISSUER, the exact iss of your tokens "
                "(without it, tokens of any issuer sharing these keys pass); "
                "AUTHGATE_UNSAFE_ANY_ISSUER=true skips the check"
            )
        logger.warning(
            "AUTHGATE_UNSAFE_ANY_ISSUER is set: tokens of any issuer signed with these keys pass"
        )
    if not settings.audience:
        if not settings.unsafe_any_audience:
            raise ConfigurationError(
                "AUTHGATE_PROVIDER=jwks needs AUTHGATE_AUDIENCE, the aud your API's tokens carry "
                "(without it, ID tokens and other APIs' tokens pass); "
                "AUTHGATE_UNSAFE_ANY_AUDIENCE=true skips the check"
            )
        logger.warning(
            "AUTHGATE_UNSAFE_ANY_AUDIENCE is set: tokens minted for any API (and ID tokens) pass"
        )
    return JWKSVerifier(
        jwks_url=settings.jwks_url,
        issuer=settings.issuer,
        discovery=settings.jwks_url is None,
        audience=settings.audience or None,
        unsafe_any_audience=settings.unsafe_any_audience,
        token_type=settings.token_type,
        algorithms=_checked_algorithms(settings.algorithms),
        leeway=settings.leeway_seconds,
        session_cookie=settings.session_cookie,
        token_cache_size=settings.token_cache_size,
        max_token_bytes=settings.max_token_bytes,
        cache_ttl=settings.jwks_cache_seconds,
        refetch_cooldown=settings.jwks_refetch_cooldown_seconds,
        fetch_deadline=settings.jwks_timeout_seconds,
    )


def _checked_algorithms(algorithms: Sequence[str]) -> frozenset[str]:
    try:
        return check_algorithms(algorithms)
    except ConfigurationError as exc:
        raise ConfigurationError(f"AUTHGATE_ALGORITHMS: {exc.description}") from None


_VERIFIER_BUILDERS: Mapping[str, Callable[[AuthGateSettings], Verifier]] = {
    "jwks": _jwks_verifier_from_settings,
    "qyzar": _provider_module("fastapi_authgate.providers.qyzar", "qyzar"),
    "torii": _provider_module("fastapi_authgate.providers.torii", "torii"),
    "tiun": _provider_module("fastapi_authgate.providers.tiun", "tiun"),
    "inai": _provider_module("fastapi_authgate.providers.inai", "inai"),
}
"""How each ``AUTHGATE_PROVIDER`` (other than ``dev``) becomes a verifier: one table, no if/elif."""


def _describe_settings_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        variable = "AUTHGATE_" + "__".join(str(part).upper() for part in error["loc"])
        problems.append(f"{variable}: {error['msg']}")
    return "invalid settings: " + "; ".join(problems)
