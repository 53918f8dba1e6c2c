"""What you need to run and test an app behind fastapi_authgate without any identity provider.

* :class:`DevIssuer` mints tokens with in-memory keys (development and tests only).
* :func:`dev_issuer_router` serves it over HTTP: ``POST /dev/token``, ``POST /dev/logout``,
  ``GET /.well-known/jwks.json``, ``GET /.well-known/openid-configuration`` and, when given one,
  a sign-in page at ``GET /``. Anyone who can reach these routes can sign in as anyone: mount them
  only in development (the example app mounts them only when ``AUTHGATE_PROVIDER`` is ``dev``).
* :class:`FakeInAI` is a fake InAI Auth API (JWKS, the 26 REST routes, MFA) with failure knobs,
  key rotation and call counters: serve its ``app`` on loopback in your tests.
* :class:`FakeTiun` is a fake tiun UserVerification API (one environment, its own key and users,
  failure knobs and call counters) to run :class:`~fastapi_authgate.providers.tiun.TiunVerifier`
  against over real HTTP.
* :func:`override_user` and :func:`make_context` replace the guards with a fixed identity through
  ``app.dependency_overrides``, so route tests need no token at all.
* :class:`FakeTorii` is an in-memory torii (issuer with JWKS and key rotation, users and
  sessions REST API) with failure knobs, to serve on a loopback socket in tests.

Example::

    with override_user(app, scopes={"admin"}):
        assert client.get("/api/admin").status_code == 200
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.security import SecurityScopes
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fastapi_authgate.context import AuthContext, CredentialKind, User
from fastapi_authgate.dependencies import optional_user, require_session, require_user
from fastapi_authgate.gate import check_access
from fastapi_authgate.providers.dev import DEFAULT_DEV_ISSUER, DevIssuer
from fastapi_authgate.reporting import record_login_attempt
from fastapi_authgate.testing.fake_inai import FakeInAI, FakeInAIAccount
from fastapi_authgate.testing.fake_qyzar import FakeQyzar, FakeQyzarRequest, FakeQyzarSession
from fastapi_authgate.testing.fake_tiun import FakeTiun, FakeTiunUser
from fastapi_authgate.testing.fake_torii import FakeTorii
from fastapi_authgate.testing.server import serve

__all__ = [
    "DEFAULT_DEV_ISSUER",
    "DevIssuer",
    "FakeInAI",
    "FakeInAIAccount",
    "FakeQyzar",
    "FakeQyzarRequest",
    "FakeQyzarSession",
    "FakeTiun",
    "FakeTiunUser",
    "FakeTorii",
    "TokenRequest",
    "TokenResponse",
    "UserOverride",
    "dev_issuer_router",
    "make_context",
    "override_user",
    "serve",
]

Subject = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._@+-]{1,64}$")]
Scope = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:/-]{1,64}$")]


class TokenRequest(BaseModel):
    """Body of ``POST /dev/token``: a user name (1-64 of ``A-Z a-z 0-9 . _ @ + -``) and scopes."""

    model_config = ConfigDict(extra="forbid")

    sub: Subject
    scopes: list[Scope] = Field(default_factory=list, max_length=20)


class TokenResponse(BaseModel):
    """Answer of ``POST /dev/token`` (RFC 6749 section 5.1 names, plus the session id)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    session_id: str


def dev_issuer_router(
    issuer: DevIssuer,
    *,
    cookie_name: str = "authgate_session",
    secure_cookie: bool = False,
    ttl: float = 3600,
    sign_in_page: str | None = None,
) -> APIRouter:
    """Routes that let a browser or a test sign in against ``issuer``; development only.

    ``POST /dev/token`` answers a bearer token (no ``sid``) and sets ``cookie_name`` to a session
    token (with ``sid``) as an HttpOnly, SameSite=Lax cookie. ``require_session`` accepts the
    cookie and refuses the bearer token because of ``sid``, not because of how it travelled: the
    session token sent as a bearer token is a session too (DESIGN.md section 1). With reporting
    on, each sign-in is reported as a successful login attempt whose identifier is the user name.

    Args:
        issuer: the development issuer that signs the tokens.
        cookie_name: the session cookie; must match the gate's ``session_cookie``.
        secure_cookie: mark the cookie ``Secure`` (turn on when served over HTTPS).
        ttl: lifetime of the tokens and the cookie, in seconds.
        sign_in_page: HTML served at ``GET /``; ``None`` leaves ``GET /`` unrouted.
    """
    router = APIRouter(tags=["development issuer"])
    lifetime = int(ttl)

    if sign_in_page is not None:
        page = sign_in_page

        @router.get("/", response_class=HTMLResponse, include_in_schema=False)
        async def sign_in() -> HTMLResponse:
            return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @router.post("/dev/token", response_model=TokenResponse)
    async def dev_token(body: TokenRequest, request: Request, response: Response) -> TokenResponse:
        """Sign in as anyone with any scopes (development issuer only)."""
        # a sign-in like any other: reported as a login attempt when reporting is on
        await record_login_attempt(request, body.sub, success=True)
        access_token = issuer.issue(body.sub, scopes=body.scopes, ttl=lifetime)
        session_id, session_token = issuer.new_session(body.sub, body.scopes, ttl=lifetime)
        response.set_cookie(
            cookie_name,
            session_token,
            max_age=lifetime,
            path="/",
            secure=secure_cookie,
            httponly=True,
            samesite="lax",
        )
        response.headers["Cache-Control"] = "no-store"
        return TokenResponse(access_token=access_token, expires_in=lifetime, session_id=session_id)

    @router.post("/dev/logout", status_code=204, response_class=Response)
    async def dev_logout() -> Response:
        """Clear the session cookie."""
        response = Response(status_code=204)
        response.delete_cookie(
            cookie_name, path="/", secure=secure_cookie, httponly=True, samesite="lax"
        )
        return response

    @router.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, list[dict[str, Any]]]:
        """The development issuer's public keys."""
        return issuer.jwks

    @router.get("/.well-known/openid-configuration")
    async def openid_configuration(request: Request) -> dict[str, Any]:
        """OIDC discovery for the development issuer."""
        return issuer.openid_configuration(str(request.base_url))

    return router


def make_context(
    sub: str = "test-user",
    scopes: Iterable[str] = (),
    *,
    provider: str = "test",
    credential: CredentialKind = "bearer",
    session_id: str | None = None,
    claims: Mapping[str, Any] | None = None,
    expires_at: datetime | None = None,
    user: User | None = None,
) -> AuthContext:
    """Build an :class:`AuthContext` with test-friendly defaults."""
    return AuthContext(
        subject=sub,
        provider=provider,
        credential=credential,
        scopes=frozenset(scopes),
        session_id=session_id,
        claims=dict(claims or {"sub": sub}),
        expires_at=expires_at,
        user=user,
    )


def _fixed(context: AuthContext, *, session: bool) -> Callable[..., Any]:
    async def dependency(security_scopes: SecurityScopes) -> AuthContext:
        check_access(context, "session" if session else "user", security_scopes.scopes)
        return context

    return dependency


class UserOverride:
    """Undo handle returned by :func:`override_user`: call it, or use it as a context manager."""

    def __init__(self, app: FastAPI, context: AuthContext) -> None:
        self.app = app
        self.context = context
        self._saved: dict[Any, Callable[..., Any] | None] = {}
        overrides = app.dependency_overrides
        replacements = {
            require_user: _fixed(context, session=False),
            optional_user: _fixed(context, session=False),
            require_session: _fixed(context, session=True),
        }
        for guard, replacement in replacements.items():
            self._saved[guard] = overrides.get(guard)
            overrides[guard] = replacement
        self._active = True

    def undo(self) -> None:
        """Restore the overrides that were in place before; safe to call twice."""
        if not self._active:
            return
        self._active = False
        for guard, previous in self._saved.items():
            if previous is None:
                self.app.dependency_overrides.pop(guard, None)
            else:
                self.app.dependency_overrides[guard] = previous

    __call__ = undo

    def __enter__(self) -> AuthContext:
        return self.context

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.undo()


def override_user(
    app: FastAPI,
    context: AuthContext | None = None,
    *,
    sub: str = "test-user",
    scopes: Iterable[str] = (),
    session_id: str | None = None,
    **fields: Any,
) -> UserOverride:
    """Make ``require_user``, ``optional_user`` and ``require_session`` return a fixed identity.

    Scopes are still enforced (``Security(require_user, scopes=["admin"])`` answers 403 when the
    context lacks ``admin``), and ``require_session`` still answers 401 unless the context has a
    ``session_id``. Those answers need the gate's error handler, so call ``gate.install(app)``
    as in production.

    Args:
        app: the FastAPI app under test.
        context: the identity to hand out; built with :func:`make_context` when omitted.
        sub: subject for the built context.
        scopes: scopes for the built context.
        session_id: session id for the built context (needed for ``require_session``).
        **fields: further :func:`make_context` arguments.

    Returns:
        A handle that undoes the override when called or when its ``with`` block ends.
    """
    if context is None:
        context = make_context(sub, scopes, session_id=session_id, **fields)
    return UserOverride(app, context)
