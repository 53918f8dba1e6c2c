"""A fake torii: issuer (JWKS, discovery, token minting, key rotation) and the users/sessions API.

It follows ``torii-backend-sdk.txt`` and the torii section of ``providers/WIRE.md``, in memory,
as a FastAPI app (``fake.app``) to serve on a real socket. Set :attr:`FakeTorii.issuer` to the
URL it is served at (tokens carry it as ``iss``), then point the verifier's issuer and the
client's ``api_url`` at that URL. Tests only: anyone who can reach it can mint tokens.

Knobs, each for the next ``times`` matching requests (``None``: until :meth:`FakeTorii.heal`),
matching paths that start with ``path`` (default: the REST API, ``/v1/``):

* :meth:`~FakeTorii.fail` answers any status with a JSON error body (and ``Retry-After``);
* :meth:`~FakeTorii.garbage` answers 200 with a body that is not JSON;
* :meth:`~FakeTorii.wrong_shape` answers 200 with JSON that is not the documented shape;
* :meth:`~FakeTorii.redirect` answers a 3xx to another host;
* :meth:`~FakeTorii.hang` stalls before answering (released by :meth:`~FakeTorii.heal`).

What it saw: :attr:`~FakeTorii.calls` counts ``"METHOD /path"``; :attr:`~FakeTorii.received`
keeps every request with its parsed JSON body, so a test can check the exact PATCH body sent.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastapi_authgate._jose import JoseKey, generate_private_jwk, public_jwk, sign
from fastapi_authgate.protocols import Clock
from fastapi_authgate.testing._fake_torii_routes import add_routes, iso

__all__ = ["FakeTorii", "ReceivedRequest"]

DEFAULT_SECRET_KEY = "sk_test_fake_torii_0123456789"
FaultKind = Literal["status", "garbage", "wrong_shape", "redirect", "hang"]


@dataclass
class _Fault:
    kind: FaultKind
    path: str
    times: int | None
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class ReceivedRequest:
    """One request the fake received: ``json`` is the parsed body (``None`` when empty)."""

    method: str
    path: str
    query: str
    authorization: str | None
    raw_body: bytes
    json: Any


class FakeTorii:
    """An in-memory torii issuer and backend API (see the module docstring).

    Args:
        secret_key: the only key the REST API accepts (``Authorization: Bearer <key>``).
        issuer: the ``iss`` of minted tokens; set it to the served URL (also settable later).
        audience: the ``aud`` of minted tokens; ``None`` leaves it out, as torii does by default.
        algorithm: ``"RS256"`` or ``"ES256"`` for the signing keys.
        environment_id: the ``environment_id`` of tokens and users.
        clock: UNIX seconds, for token times and ``*At`` fields.
    """

    def __init__(
        self,
        *,
        secret_key: str = DEFAULT_SECRET_KEY,
        issuer: str = "http://127.0.0.1",
        audience: str | None = None,
        algorithm: Literal["RS256", "ES256"] = "RS256",
        environment_id: str = "env_test",
        clock: Clock = time.time,
    ) -> None:
        self.secret_key = secret_key
        self.issuer = issuer
        self.audience = audience
        self.algorithm = algorithm
        self.environment_id = environment_id
        self.clock = clock
        self.users: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.received: list[ReceivedRequest] = []
        self._faults: list[_Fault] = []
        self._heals = 0
        self._signing: list[tuple[JoseKey, dict[str, Any], dict[str, Any]]] = []
        self.published: list[dict[str, Any]] = []
        self.rotate(keep_old=False)
        self.app = self._build_app()

    # -- issuer ---------------------------------------------------------------------------

    @property
    def kid(self) -> str:
        """The ``kid`` tokens are signed with now."""
        return str(self._signing[-1][1]["kid"])

    @property
    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The JWKS document served at ``/.well-known/jwks.json``."""
        return {"keys": [dict(key) for key in self.published]}

    @property
    def jwks_hits(self) -> int:
        """How many times the JWKS was fetched."""
        return self.calls["GET /.well-known/jwks.json"]

    def rotate(self, *, keep_old: bool = True) -> str:
        """Sign with a new key from now on; ``keep_old`` keeps publishing the previous ones.

        Returns:
            The new ``kid``.
        """
        kid = f"torii-{len(self._signing) + 1}-{secrets.token_hex(4)}"
        jwk = generate_private_jwk(self.algorithm, kid=kid)
        public = public_jwk(jwk)
        self._signing.append((JoseKey.from_jwk(jwk), public, jwk))
        self.published = [*self.published, public] if keep_old else [public]
        return kid

    def issue(
        self,
        user_id: str,
        *,
        session_id: str | None = None,
        email_verified: bool = True,
        ttl: float = 3600,
        **claims: Any,
    ) -> str:
        """Mint a token for ``user_id`` as torii does (``sid`` is a new session unless given).

        Extra ``claims`` override the defaults, so a test can build odd tokens.
        """
        now = int(self.clock())
        if session_id is None:
            session_id = self.start_session(user_id, ttl=ttl)
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user_id,
            "iat": now,
            "exp": now + int(ttl),
            "sid": session_id,
            "environment_id": self.environment_id,
            "email_verified": email_verified,
        }
        if self.audience is not None:
            payload["aud"] = self.audience
        payload.update(claims)
        return sign(payload, self._signing[-1][0])

    def private_jwk_for_tests(self) -> dict[str, Any]:
        """The current signing key as a private JWK, so other libraries (PyJWT) can sign too."""
        return dict(self._signing[-1][2])

    # -- data -----------------------------------------------------------------------------

    def add_user(self, email: str, **fields: Any) -> dict[str, Any]:
        """Store a user directly (no HTTP) and return its wire form."""
        now = iso(self.clock())
        user: dict[str, Any] = {
            "id": "user_" + secrets.token_hex(8),
            "email": email,
            "name": None,
            "phone": None,
            "address": None,
            "emailVerified": False,
            "banned": False,
            "environmentId": self.environment_id,
            "createdAt": now,
            "updatedAt": now,
        }
        user.update(fields)
        self.users[user["id"]] = user
        return user

    def start_session(self, user_id: str, *, ttl: float = 3600) -> str:
        """Record an active session for ``user_id``; returns its id."""
        now = self.clock()
        session_id = "sess_" + secrets.token_hex(8)
        self.sessions[session_id] = {
            "id": session_id,
            "userId": user_id,
            "status": "active",
            "createdAt": iso(now),
            "lastActiveAt": iso(now),
            "expiresAt": iso(now + ttl),
        }
        return session_id

    # -- knobs ----------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        error: str | None = "fake_failure",
        message: str | None = "failure injected by the fake",
        body: Any = None,
        retry_after: str | None = None,
        times: int | None = 1,
        path: str = "/v1/",
    ) -> None:
        """Answer ``status`` with ``{"error", "message"}`` (or ``body``) and ``Retry-After``."""
        if body is None and error is not None:
            body = {"error": error, "message": message}
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self._faults.append(
            _Fault("status", path, times, status=status, body=body, headers=headers)
        )

    def garbage(self, *, times: int | None = 1, path: str = "/v1/") -> None:
        """Answer 200 with a body that is not JSON."""
        self._faults.append(_Fault("garbage", path, times))

    def wrong_shape(self, *, times: int | None = 1, path: str = "/v1/") -> None:
        """Answer 200 with JSON that is not the documented shape."""
        self._faults.append(_Fault("wrong_shape", path, times))

    def redirect(self, *, status: int = 302, times: int | None = 1, path: str = "/v1/") -> None:
        """Answer a redirect to another host (which a client must never follow)."""
        self._faults.append(_Fault("redirect", path, times, status=status))

    def hang(self, seconds: float, *, times: int | None = 1, path: str = "/v1/") -> None:
        """Stall ``seconds`` before answering normally."""
        self._faults.append(_Fault("hang", path, times, seconds=seconds))

    def heal(self) -> None:
        """Drop every injected fault and release stalled requests."""
        self._faults.clear()
        self._heals += 1

    def reset_counters(self) -> None:
        """Forget what was received (data and keys stay)."""
        self.calls.clear()
        self.received.clear()

    def _take_fault(self, path: str) -> _Fault | None:
        for fault in self._faults:
            if path.startswith(fault.path):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    async def _stall(self, fault: _Fault) -> None:
        heals = self._heals  # heal() runs on the test's thread: poll, no cross-thread event
        for _ in range(max(1, int(fault.seconds / 0.01))):
            if self._heals != heals:
                return
            await asyncio.sleep(0.01)

    def _faulted(self, fault: _Fault) -> Response | None:
        if fault.kind == "status":
            if fault.body is None:
                return Response(status_code=fault.status, headers=fault.headers)
            return JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)
        if fault.kind == "garbage":
            return PlainTextResponse("<html>502 upstream glitch</html>")
        if fault.kind == "wrong_shape":
            return JSONResponse({"unexpected": ["shape"], "data": "not a list", "id": 7})
        if fault.kind == "redirect":
            return RedirectResponse("https://elsewhere.example/steal", status_code=fault.status)
        return None

    # -- app ------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="fake torii")
        app.add_middleware(_Recorder, fake=self)
        add_routes(app, self)
        return app

    def authorized(self, request: Request) -> bool:
        """True when the request carries this fake's secret key."""
        return request.headers.get("authorization") == "Bearer " + self.secret_key


class _Recorder:
    """Pure ASGI: counts and records each request, then applies the injected faults."""

    def __init__(self, app: ASGIApp, fake: FakeTorii) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        path: str = scope["path"]
        fake = self.fake
        fake.calls[f"{scope['method']} {path}"] += 1
        fake.received.append(
            ReceivedRequest(
                method=scope["method"],
                path=path,
                query=scope.get("query_string", b"").decode("latin-1"),
                authorization=headers.get("authorization"),
                raw_body=raw,
                json=parsed,
            )
        )
        fault = fake._take_fault(path)
        if fault is not None:
            if fault.kind == "hang":
                await fake._stall(fault)
            else:
                response = fake._faulted(fault)
                assert response is not None
                await response(scope, receive, send)
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # waits for the real disconnect
            replayed = True
            return {"type": "http.request", "body": raw, "more_body": False}

        await self.app(scope, replay, send)
