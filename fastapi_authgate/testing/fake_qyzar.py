"""A fake Qyzar: a real FastAPI app serving the ``/projects/client/*`` routes of WIRE.md.

Run it under any ASGI server (or ``httpx.ASGITransport``) and point ``AUTHGATE_QYZAR__API_URL``
at it. It holds sessions in memory and has knobs for every way the real one can let you down::

    fake = FakeQyzar()
    session = fake.create_session(identifier="alice@example.com")
    fake.fail(503)                        # every route answers 503 until fake.reset()
    fake.fail(429, retry_after=7, times=1, route="session-verify")
    fake.hang(5)                          # answers after 5 s (or at fake.reset())
    fake.garbage()                        # 200 with a body that is not JSON
    fake.redirect("http://elsewhere.test/steal")
    fake.calls["session-verify"]          # how many calls each route got
    fake.requests[-1].headers["cookie"]   # what the last call carried

Client tokens are minted with the same crypto module the offline functions use, as the real
Qyzar's online and offline forms are one token. Rate limits are fixed windows per bucket
(``ip`` and ``metadata:<field>``), ``limit``/``window_seconds`` per project unless a call
overrides them. Time comes from ``clock`` so tests can move it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from fastapi_authgate.errors import AuthenticationError
from fastapi_authgate.protocols import Clock
from fastapi_authgate.providers.qyzar_tokens import (
    InvalidMetadataError,
    create_client_token,
    verify_client_token,
)

__all__ = ["FakeQyzar", "FakeQyzarSession", "FakeQyzarRequest"]


@dataclass
class FakeQyzarSession:
    """A Qyzar connect session held by the fake."""

    session_id: str
    session_token: str
    expires_at: float
    identifier: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    revoked: bool = False
    identifiers: list[str] = field(default_factory=list)
    trusted_identifiers: list[str] = field(default_factory=list)
    attempts: int = 0
    last_login_at: float | None = None

    @property
    def cookies(self) -> dict[str, str]:
        """The two cookies a browser would send for this session."""
        return {"qyzar_session_token": self.session_token, "qyzar_session_id": self.session_id}

    @property
    def cookie_header(self) -> str:
        """The same, as a Cookie header value."""
        return f"qyzar_session_token={self.session_token}; qyzar_session_id={self.session_id}"


@dataclass(frozen=True)
class FakeQyzarRequest:
    """One call the fake received (the Authorization header is recorded, for secret tests)."""

    method: str
    route: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any


@dataclass
class _Knob:
    kind: str  # "fail", "hang", "garbage", "redirect"
    route: str | None
    times: int | None
    status: int = 503
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    location: str = ""


class FakeQyzar:
    """The fake server. ``app`` is the ASGI app; everything else is for the test to drive it.

    Args:
        project_id: the one project it knows.
        project_secret: its secret (default: 43 random URL-safe characters).
        clock: the time source for session expiry, tokens and rate-limit windows.
        limit, window_seconds: the project's rate-limit settings.
    """

    def __init__(
        self,
        *,
        project_id: str = "proj_test",
        project_secret: str | None = None,
        clock: Clock = time.time,
        limit: int = 10,
        window_seconds: float = 60,
    ) -> None:
        self.project_id = project_id
        self.project_secret = project_secret or secrets.token_urlsafe(32)
        self.clock = clock
        self.limit = limit
        self.window_seconds = window_seconds
        self.sessions: dict[str, FakeQyzarSession] = {}
        self.calls: Counter[str] = Counter()
        self.requests: list[FakeQyzarRequest] = []
        self.request_logs: list[dict[str, Any]] = []
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}
        self._knobs: list[_Knob] = []
        self._released = False
        self.app = self._build()

    # ---- knobs --------------------------------------------------------------------------

    def create_session(
        self,
        *,
        identifier: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        ttl: float = 3600,
    ) -> FakeQyzarSession:
        """A new valid session (random id and token) that expires ``ttl`` seconds from now."""
        session = FakeQyzarSession(
            session_id="qs_" + secrets.token_hex(8),
            session_token=secrets.token_urlsafe(24),
            expires_at=self.clock() + ttl,
            identifier=identifier,
            metadata=dict(metadata or {}),
        )
        self.sessions[session.session_id] = session
        return session

    def revoke_session(self, session_id: str) -> None:
        """The session answers ``valid: false, reason: revoked`` from now on."""
        self.sessions[session_id].revoked = True

    def fail(
        self,
        status: int = 503,
        *,
        body: Any = None,
        retry_after: float | None = None,
        times: int | None = None,
        route: str | None = None,
    ) -> None:
        """Answer ``status`` (with ``body``, default an error object) on ``route`` or on all."""
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        if body is None:
            body = {"error": "server_error", "message": "injected failure"}
        self._knobs.append(_Knob("fail", route, times, status=status, body=body, headers=headers))

    def hang(
        self, seconds: float = 30, *, times: int | None = None, route: str | None = None
    ) -> None:
        """Wait ``seconds`` before answering (cut short by :meth:`reset`)."""
        self._knobs.append(_Knob("hang", route, times, seconds=seconds))

    def garbage(self, *, times: int | None = None, route: str | None = None) -> None:
        """Answer 200 with a body that is not JSON."""
        self._knobs.append(_Knob("garbage", route, times))

    def redirect(
        self,
        location: str,
        *,
        status: int = 302,
        times: int | None = None,
        route: str | None = None,
    ) -> None:
        """Answer a redirect to ``location`` (a client must not follow it)."""
        self._knobs.append(_Knob("redirect", route, times, status=status, location=location))

    def reset(self) -> None:
        """Drop every knob and release hanging calls; sessions and counters stay."""
        self._knobs.clear()
        self._released = True

    def clear_rate_limits(self) -> None:
        """Forget every rate-limit window, as if no caller had been counted yet."""
        self._windows.clear()

    # ---- the app ------------------------------------------------------------------------

    async def _intercept(self, route: str) -> Response | None:
        for knob in list(self._knobs):
            if knob.route is not None and knob.route != route:
                continue
            if knob.times is not None:
                knob.times -= 1
                if knob.times <= 0:
                    self._knobs.remove(knob)
            if knob.kind == "fail":
                return JSONResponse(knob.body, status_code=knob.status, headers=knob.headers)
            if knob.kind == "garbage":
                return Response(b"<html>502 Bad Gateway</html>", media_type="text/html")
            if knob.kind == "redirect":
                return Response(status_code=knob.status, headers={"Location": knob.location})
            self._released = False
            end = time.monotonic() + knob.seconds
            # polled, not an asyncio.Event: reset() is called from the test's thread and loop
            while time.monotonic() < end and not self._released:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        return None

    async def _enter(self, request: Request, route: str) -> tuple[Response | None, dict[str, Any]]:
        """Record the call, run the knobs, check project and secret; the parsed body."""
        self.calls[route] += 1
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        self.requests.append(
            FakeQyzarRequest(
                request.method, route, dict(request.query_params), dict(request.headers), body
            )
        )
        knob = await self._intercept(route)
        if knob is not None:
            return knob, {}
        if not isinstance(body, dict):
            return _error(400, "invalid_request"), {}
        project = request.query_params.get("projectId") if request.method == "GET" else None
        project = project if project is not None else body.get("projectId")
        if project != self.project_id:
            return _error(404, "unknown_project"), {}
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(given.encode(), self.project_secret.encode()):
            return _error(401, "invalid_project_secret"), {}
        return None, body

    def _session(
        self, session_id: Any, token: Any = None, *, check_token: bool
    ) -> FakeQyzarSession | str:
        session = self.sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None:
            return "unknown"
        if check_token and not (
            isinstance(token, str) and hmac.compare_digest(token, session.session_token)
        ):
            return "unknown"
        if session.revoked:
            return "revoked"
        if self.clock() >= session.expires_at:
            return "expired"
        return session

    def _build(self) -> FastAPI:
        app = FastAPI(title="fake Qyzar")
        fake = self

        @app.api_route("/projects/client/session-verify", methods=["GET", "POST"])
        async def session_verify(request: Request) -> Response:
            stop, body = await fake._enter(request, "session-verify")
            if stop is not None:
                return stop
            session_id = body.get("sessionId") or request.cookies.get("qyzar_session_id")
            token = body.get("sessionToken") or request.cookies.get("qyzar_session_token")
            found = fake._session(session_id, token, check_token=True)
            if isinstance(found, str):
                return JSONResponse({"valid": False, "reason": found})
            return JSONResponse(
                {
                    "valid": True,
                    "sessionId": found.session_id,
                    "expiresAt": found.expires_at,
                    "identifier": found.identifier,
                    "metadata": found.metadata,
                }
            )

        @app.post("/projects/client/token")
        async def token(request: Request) -> Response:
            stop, body = await fake._enter(request, "token")
            if stop is not None:
                return stop
            session_id = body.get("sessionId") or request.cookies.get("qyzar_session_id")
            session_token = body.get("sessionToken") or request.cookies.get("qyzar_session_token")
            bound: FakeQyzarSession | None = None
            if session_id is not None or session_token is not None:
                found = fake._session(session_id, session_token, check_token=True)
                if isinstance(found, str):
                    return _error(401, "invalid_session")
                bound = found
            try:
                minted = create_client_token(
                    fake.project_secret,
                    fake.project_id,
                    session_id=bound.session_id if bound else None,
                    session_expires_at=bound.expires_at if bound else None,
                    metadata=body.get("metadata"),
                    now=fake.clock(),
                )
            except InvalidMetadataError as exc:
                return _error(400, "invalid_metadata", exc.description)
            return JSONResponse(
                {"clientToken": minted.client_token, "expiresAt": minted.expires_at.timestamp()}
            )

        @app.api_route("/projects/client/token-verify", methods=["GET", "POST"])
        async def token_verify(request: Request) -> Response:
            stop, body = await fake._enter(request, "token-verify")
            if stop is not None:
                return stop
            given = (
                body.get("clientToken")
                or request.query_params.get("clientToken")
                or request.headers.get("x-qyzar-client-token")
            )
            try:
                claims = verify_client_token(
                    str(given or ""), fake.project_secret, fake.project_id, now=fake.clock()
                )
            except AuthenticationError:
                return JSONResponse({"valid": False})
            return JSONResponse(
                {"valid": True, "sessionId": claims.session_id, "metadata": dict(claims.metadata)}
            )

        @app.api_route("/projects/client/extra-metadata", methods=["GET", "PATCH"])
        async def extra_metadata(request: Request) -> Response:
            stop, body = await fake._enter(request, "extra-metadata")
            if stop is not None:
                return stop
            session_id = request.query_params.get("sessionId") or body.get("sessionId")
            found = fake._session(session_id, check_token=False)
            if isinstance(found, str):
                return _error(404, "unknown_session")
            if request.method == "PATCH":
                patch = body.get("metadata")
                if not isinstance(patch, dict):
                    return _error(400, "invalid_request")
                for key, value in patch.items():
                    if value is None:
                        found.metadata.pop(key, None)
                    else:
                        found.metadata[key] = value
            return JSONResponse({"sessionId": found.session_id, "metadata": found.metadata})

        @app.post("/projects/client/rate-limit-check")
        async def rate_limit_check(request: Request) -> Response:
            stop, body = await fake._enter(request, "rate-limit-check")
            if stop is not None:
                return stop
            return fake._rate_limit(body)

        @app.post("/projects/client/request-logs")
        async def request_logs(request: Request) -> Response:
            stop, body = await fake._enter(request, "request-logs")
            if stop is not None:
                return stop
            events = body.get("events")
            if not isinstance(events, list) or not 1 <= len(events) <= 500:
                return _error(400, "invalid_request", "events must hold 1 to 500 events")
            fake.request_logs.extend(events)
            return JSONResponse({"accepted": len(events)}, status_code=202)

        @app.post("/projects/client/ato-login-attempt")
        async def login_attempt(request: Request) -> Response:
            stop, body = await fake._enter(request, "ato-login-attempt")
            if stop is not None:
                return stop
            found = fake._session(body.get("sessionId"), check_token=False)
            identifier = body.get("identifier")
            if isinstance(found, str):
                return _error(404, "unknown_session")
            if not isinstance(identifier, str) or not identifier:
                return _error(400, "invalid_request")
            prior = {
                "identifiers": list(found.identifiers),
                "trustedIdentifiers": list(found.trusted_identifiers),
                "attempts": found.attempts,
            }
            if identifier in found.trusted_identifiers:
                score = 5
            elif identifier in found.identifiers:
                score = 40
            else:
                score = 70 if found.identifiers else 30
            last = found.last_login_at
            found.attempts += 1
            if identifier not in found.identifiers:
                found.identifiers.append(identifier)
            if body.get("success") is True:
                found.last_login_at = fake.clock()
            return JSONResponse(
                {
                    "score": score,
                    "lastLoginAt": datetime.fromtimestamp(last, UTC).isoformat() if last else None,
                    "prior": prior,
                }
            )

        @app.post("/projects/client/ato-add-identifier")
        async def add_identifier(request: Request) -> Response:
            stop, body = await fake._enter(request, "ato-add-identifier")
            if stop is not None:
                return stop
            found = fake._session(body.get("sessionId"), check_token=False)
            identifier = body.get("identifier")
            if isinstance(found, str):
                return _error(404, "unknown_session")
            if not isinstance(identifier, str) or not identifier:
                return _error(400, "invalid_request")
            if identifier not in found.trusted_identifiers:
                found.trusted_identifiers.append(identifier)
            return JSONResponse({"trustedIdentifiers": found.trusted_identifiers})

        return app

    def _rate_limit(self, body: dict[str, Any]) -> Response:
        ip = body.get("ip")
        if not isinstance(ip, str) or not ip:
            return _error(400, "invalid_request", "ip is required")
        override = body.get("settingsOverride") or {}
        limit = int(override.get("limit", self.limit))
        window = float(override.get("windowSeconds", self.window_seconds))
        metadata = body.get("metadata") or {}
        buckets = [("ip", ip)] + [(f"metadata:{k}", str(v)) for k, v in sorted(metadata.items())]
        now = self.clock()
        states = []
        for name, value in buckets:
            start, used = self._windows.get((name, value), (now, 0))
            if now - start >= window:
                start, used = now, 0
            states.append((name, value, start, used))
        for name, _value, start, used in states:
            if used >= limit:
                retry = max(0.001, start + window - now)
                return JSONResponse(
                    {
                        "allowed": False,
                        "limit": limit,
                        "remaining": 0,
                        "resetSeconds": retry,
                        "retryAfterSeconds": retry,
                        "bucket": name,
                    }
                )
        for name, value, start, used in states:
            self._windows[(name, value)] = (start, used + 1)
        name, _value, start, used = min(states, key=lambda s: limit - s[3])
        return JSONResponse(
            {
                "allowed": True,
                "limit": limit,
                "remaining": limit - used - 1,
                "resetSeconds": start + window - now,
                "retryAfterSeconds": None,
                "bucket": name,
            }
        )


def _error(status: int, code: str, message: str | None = None) -> Response:
    return JSONResponse({"error": code, "message": message or code}, status_code=status)
