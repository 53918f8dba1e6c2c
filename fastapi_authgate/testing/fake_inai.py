"""A fake InAI Auth API: the JWKS and the 26 routes of ``inai-backend.txt``, in memory.

It follows WIRE.md ("InAI") so :class:`~fastapi_authgate.providers.inai.InAIAuthClient` and the
InAI verifier can be tested over real HTTP (serve :attr:`FakeInAI.app` under uvicorn). It signs
ES256 access tokens with its own keys, and checks them on the routes that take one.

Knobs, for tests: :meth:`FakeInAI.fail` (answer a status, a redirect or garbage, a number of times
or until :meth:`FakeInAI.reset`), :meth:`FakeInAI.hang` (stall before answering),
:meth:`FakeInAI.rotate_keys` (a new ``kid``, or new key material under the **same** ``kid``), and
:attr:`FakeInAI.calls` (a counter per ``"METHOD /route"``; :attr:`FakeInAI.jwks_fetches` for the
JWKS). Mails the real service would send (reset and verification tokens) land in
:attr:`FakeInAI.outbox`. Development and tests only: anyone who reaches it can sign in.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from fastapi_authgate._jose import (
    JoseKey,
    KeySet,
    generate_private_jwk,
    public_jwk,
    sign,
    verify_signature,
)
from fastapi_authgate._jws import parse_compact
from fastapi_authgate.errors import AuthenticationError
from fastapi_authgate.testing._fake_inai_routes import Answer as _Answer
from fastapi_authgate.testing._fake_inai_routes import add_routes

__all__ = ["FakeInAI", "FakeInAIAccount"]

_ES256 = frozenset({"ES256"})


@dataclass
class FakeInAIAccount:
    """A user the fake knows: an app user, or a platform administrator when ``platform``."""

    id: str
    email: str
    password: str
    platform: bool = False
    first_name: str | None = None
    last_name: str | None = None
    email_verified: bool = False
    mfa_code: str | None = None
    roles: list[str] = field(default_factory=list)
    permissions: list[str] = field(default_factory=list)
    organizations: dict[str, str] = field(default_factory=dict)
    active_org: str | None = None
    environment_id: str | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "emailVerified": self.email_verified,
            "environmentId": self.environment_id,
            "roles": list(self.roles),
            "permissions": list(self.permissions),
        }


class _Raw(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__("forced answer")
        self.response = response


@dataclass
class _Failure:
    status: int
    body: Any
    headers: dict[str, str]
    times: int | None


class FakeInAI:
    """The fake service; :attr:`app` is the ASGI app to serve."""

    def __init__(
        self,
        *,
        publishable_key: str = "pk_test_fakeinai00000000",
        issuer: str | None = None,
        kid: str = "inai-key-1",
        clock: Callable[[], float] = time.time,
        token_ttl: int = 900,
    ) -> None:
        self.publishable_keys = {publishable_key}
        self.issuer = issuer
        self.clock = clock
        self.token_ttl = token_ttl
        self.calls: Counter[str] = Counter()
        self.bodies: list[tuple[str, Any]] = []
        self.outbox: list[dict[str, str]] = []
        self.accounts: dict[str, FakeInAIAccount] = {}
        self.applications: dict[str, dict[str, Any]] = {}
        self.app_users: dict[str, list[FakeInAIAccount]] = {}
        self.api_keys: dict[str, dict[str, dict[str, Any]]] = {}
        self._refresh: dict[str, str] = {}
        self._mfa: dict[str, str] = {}
        self._reset: dict[str, str] = {}
        self._verify: dict[str, str] = {}
        self._failures: dict[str, _Failure] = {}
        self._hangs: dict[str, float] = {}
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._private = [generate_private_jwk("ES256", kid=kid)]
        self.extra_public_keys: list[dict[str, Any]] = []
        self.app = self._build_app()

    # -- knobs -------------------------------------------------------------------------------

    @property
    def jwks(self) -> dict[str, Any]:
        """The JWKS document served now."""
        return {"keys": [public_jwk(k) for k in self._private] + list(self.extra_public_keys)}

    @property
    def jwks_fetches(self) -> int:
        """How many times the JWKS was fetched."""
        return self.calls["GET /.well-known/jwks.json"]

    def rotate_keys(self, *, same_kid: bool = False, keep_old: bool = False) -> str:
        """Sign with a new key from now on; returns its ``kid``.

        ``same_kid`` keeps the ``kid`` with new key material (tokens signed before then fail
        their signature check against the new JWKS); ``keep_old`` still publishes the old key.
        """
        old = self._private[0]
        kid = old["kid"] if same_kid else f"inai-key-{secrets.token_hex(4)}"
        fresh = generate_private_jwk("ES256", kid=kid)
        self._private = [fresh, old] if keep_old and not same_kid else [fresh]
        return kid

    def fail(
        self,
        route: str = "*",
        status: int = 503,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``route`` (``"METHOD /path"`` as declared, or ``"*"``) with ``status``.

        ``body`` bytes are sent as they are (garbage on purpose), anything else as JSON; the
        default is ``{"error", "message"}``. ``times`` limits how often (``None``: until reset).
        """
        if body is None:
            body = {"error": f"forced_{status}", "message": f"forced failure {status}"}
        self._failures[route] = _Failure(status, body, dict(headers or {}), times)

    def hang(self, route: str = "*", seconds: float = 30.0) -> None:
        """Stall ``route`` for ``seconds`` before answering (until :meth:`reset`)."""
        self._released.clear()
        self._hangs[route] = seconds

    def reset(self) -> None:
        """Drop every failure and hang; stalled requests answer now."""
        self._failures.clear()
        self._hangs.clear()
        self._released.set()

    def add_account(
        self,
        email: str,
        password: str,
        *,
        platform: bool = False,
        mfa_code: str | None = None,
        roles: Iterable[str] = (),
        permissions: Iterable[str] = (),
        organizations: Mapping[str, str] | None = None,
    ) -> FakeInAIAccount:
        """Create a user the fake will let sign in."""
        account = FakeInAIAccount(
            id=("pu_" if platform else "u_") + secrets.token_hex(6),
            email=email.lower(),
            password=password,
            platform=platform,
            mfa_code=mfa_code,
            roles=list(roles),
            permissions=list(permissions),
            organizations=dict(organizations or {}),
        )
        self.accounts[self._account_key(account.email, platform)] = account
        return account

    def issue(
        self,
        sub: str = "u_test",
        *,
        email: str | None = "user@example.com",
        type: str | None = "app_user",
        org_id: str | None = None,
        org_role: str | None = None,
        roles: Iterable[str] = (),
        permissions: Iterable[str] = (),
        ttl: int | None = None,
        **claims: Any,
    ) -> str:
        """An ES256 access token signed with the current key, with InAI's claims.

        ``type`` ``None`` leaves the claim out; ``ttl`` zero or negative gives an expired token.
        """
        now = int(self.clock())
        body: dict[str, Any] = {
            "sub": sub,
            "iat": now,
            "exp": now + (self.token_ttl if ttl is None else ttl),
            "roles": list(roles),
            "permissions": list(permissions),
        }
        if type is not None:
            body["type"] = type
        if email is not None:
            body["email"] = email
        if org_id is not None:
            body["org_id"], body["org_role"] = org_id, org_role or "member"
        if self.issuer is not None:
            body["iss"] = self.issuer
        body.update(claims)
        return sign(body, JoseKey.from_jwk(self._private[0]))

    # -- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def _account_key(email: str, platform: bool) -> str:
        return ("platform:" if platform else "app:") + email.lower()

    async def _before(self, request: Request) -> None:
        route = request.scope.get("route")
        name = f"{request.method} {getattr(route, 'path', request.url.path)}"
        with self._lock:
            self.calls[name] += 1
        if request.method in ("POST", "PATCH"):
            try:
                self.bodies.append((name, await request.json()))
            except ValueError:
                raise _Answer(400, "invalid_body", "the body is not JSON") from None
        seconds = self._hangs.get(name, self._hangs.get("*"))
        if seconds:
            with anyio.move_on_after(seconds):
                # reset() runs on the test's thread, not the server's: a threading.Event polled
                # here is the portable way across the two (anyio.Event is not thread-safe)
                while not self._released.is_set():  # noqa: ASYNC110
                    await anyio.sleep(0.02)
        failure = self._failures.get(name) or self._failures.get("*")
        if failure is not None:
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures = {k: v for k, v in self._failures.items() if v is not failure}
            content = failure.body
            if isinstance(content, bytes):
                raise _Raw(Response(content, failure.status, failure.headers, "text/html"))
            raise _Raw(JSONResponse(content, failure.status, failure.headers))
        key = request.headers.get("x-publishable-key")
        if name != "GET /.well-known/jwks.json" and key not in self.publishable_keys:
            raise _Answer(401, "invalid_publishable_key", "unknown publishable key")

    def _bearer(self, request: Request, kind: str) -> FakeInAIAccount | dict[str, Any]:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            raise _Answer(401, "unauthorized", "missing access token")
        try:
            token = parse_compact(header[7:])
            key = KeySet.from_jwks(self.jwks, _ES256).find(token.header.get("kid"), "ES256")
            if key is None:
                raise AuthenticationError()
            verify_signature(token, key, _ES256)
        except AuthenticationError:
            raise _Answer(401, "invalid_token", "the access token is invalid") from None
        claims = token.claims
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= self.clock():
            raise _Answer(401, "token_expired", "the access token has expired")
        if claims.get("type") != kind:
            raise _Answer(403, "forbidden", f"this route needs a {kind} token")
        for account in self.accounts.values():
            if account.id == claims.get("sub"):
                return account
        return dict(claims)

    def _tokens(self, account: FakeInAIAccount) -> dict[str, Any]:
        refresh = "rt_" + secrets.token_urlsafe(24)
        self._refresh[refresh] = self._account_key(account.email, account.platform)
        org = account.active_org
        access = self.issue(
            account.id,
            email=account.email,
            type="platform" if account.platform else "app_user",
            org_id=org,
            org_role=account.organizations.get(org) if org else None,
            roles=account.roles,
            permissions=account.permissions,
        )
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.token_ttl,
            "token_type": "Bearer",
        }

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="fake InAI Auth", dependencies=[Depends(self._before)])

        async def raw(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, _Raw | _Answer)
            return exc.response

        app.add_exception_handler(_Raw, raw)
        app.add_exception_handler(_Answer, raw)

        @app.get("/.well-known/jwks.json")
        async def jwks() -> Response:
            return JSONResponse(self.jwks, headers={"Cache-Control": "public, max-age=300"})

        add_routes(app, self)
        return app
