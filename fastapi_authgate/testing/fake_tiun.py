"""A fake tiun UserVerification API: a real FastAPI app following ``tiun-verify-server-side.txt``.

One :class:`FakeTiun` plays one environment (live or sandbox) with its own API key and its own
users, as the real ones do: a sandbox key on the live fake answers 401, and a token minted by one
fake is unknown to the other. Serve ``fake.app`` on 127.0.0.1 (uvicorn in a thread) and point
:class:`~fastapi_authgate.providers.tiun.TiunVerifier` at it with ``api_url=``.

Tokens are real HS256 JWTs signed with a key only the fake knows, valid 5 minutes by default;
:meth:`FakeTiun.issue_token` mints one for a user, and the fake answers ``isAuthenticated: false``
for a token it did not sign, an expired one, or one of a user signed out since.

Knobs: :meth:`~FakeTiun.fail` (any status, optionally a number of times), ``hang_seconds``,
``garbage`` (a 200 that is not JSON), :meth:`~FakeTiun.answer` (any JSON body and status),
``redirect_to`` (a 307 to another URL); ``calls`` and ``keys_seen`` count every verification
request, and :meth:`~FakeTiun.reset` clears knobs and counters.

Example::

    fake = FakeTiun(environment="live")
    token = fake.issue_token("u_1", email="a@example.com", product_access=["pro"])
    with serve(fake.app) as url:
        verifier = TiunVerifier(fake.api_key, environment="live", api_url=url)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

__all__ = ["FakeTiun", "FakeTiunUser"]

VERIFY_PATH = "/live_api/s2s/v1/users/verification"


@dataclass
class FakeTiunUser:
    """A user the fake knows; ``product_access`` is served exactly as given (list or object)."""

    user_id: str
    email: str | None = None
    product_access: list[str] | dict[str, bool] = field(default_factory=list)
    signed_in: bool = True


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class FakeTiun:
    """One tiun environment: an API key, users, minted tokens, failure knobs and counters.

    Args:
        environment: ``"live"`` or ``"sandbox"`` (reported in tokens; keys never cross).
        api_key: the key the fake accepts (random when omitted).
        clock: returns UNIX seconds, for token expiry.
    """

    def __init__(
        self,
        environment: Literal["live", "sandbox"] = "sandbox",
        *,
        api_key: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.environment = environment
        self.api_key = api_key or f"tiun_{environment}_{secrets.token_urlsafe(24)}"
        self.clock = clock
        self._signing_key = secrets.token_bytes(32)
        self.users: dict[str, FakeTiunUser] = {}
        self.calls = 0
        self.keys_seen: list[bool] = []
        """One entry per verification request: whether its API key was accepted."""
        self.hang_seconds = 0.0
        self.garbage = False
        self.redirect_to: str | None = None
        self._fail_status: int | None = None
        self._fail_times: int | None = None
        self.canned: tuple[int, Any] | None = None
        """``(status, JSON body)`` served instead of the real answer (see :meth:`answer`)."""
        self.app = self._build_app()

    def add_user(
        self,
        user_id: str,
        *,
        email: str | None = None,
        product_access: Iterable[str] | Mapping[str, bool] = (),
    ) -> FakeTiunUser:
        """Register (or replace) a signed-in user."""
        access: list[str] | dict[str, bool] = (
            dict(product_access) if isinstance(product_access, Mapping) else list(product_access)
        )
        user = FakeTiunUser(user_id, email=email, product_access=access)
        self.users[user_id] = user
        return user

    def issue_token(
        self,
        user_id: str,
        *,
        email: str | None = None,
        product_access: Iterable[str] | Mapping[str, bool] | None = None,
        ttl: float = 300,
    ) -> str:
        """A verification token for ``user_id`` (registering the user when new or when given)."""
        if user_id not in self.users or email is not None or product_access is not None:
            self.add_user(user_id, email=email, product_access=product_access or ())
        now = int(self.clock())
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {
            "sub": user_id,
            "iat": now,
            "exp": now + int(ttl),
            "env": self.environment,
            "jti": secrets.token_hex(8),
        }
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}".encode("ascii")
        signature = hmac.new(self._signing_key, signing_input, hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def sign_out(self, user_id: str) -> None:
        """The user's session ends: their tokens now answer ``isAuthenticated: false``."""
        self.users[user_id].signed_in = False

    def fail(self, status: int | None, *, times: int | None = None) -> None:
        """Answer ``status`` (with a JSON error body) ``times`` times, or until ``fail(None)``."""
        self._fail_status = status
        self._fail_times = times

    def answer(self, body: Any, *, status: int = 200) -> None:
        """Serve ``body`` (any JSON value) to every accepted request until :meth:`reset`."""
        self.canned = (status, body)

    def reset(self) -> None:
        """Clear every knob and counter (users and tokens stay)."""
        self.calls = 0
        self.keys_seen.clear()
        self.hang_seconds = 0.0
        self.garbage = False
        self.redirect_to = None
        self.canned = None
        self.fail(None)

    def _user_for(self, token: object) -> FakeTiunUser | None:
        if not isinstance(token, str) or token.count(".") != 2:
            return None
        header, payload, signature = token.split(".")
        expected = hmac.new(
            self._signing_key, f"{header}.{payload}".encode("ascii"), hashlib.sha256
        ).digest()
        try:
            if not hmac.compare_digest(_unb64(signature), expected):
                return None
            claims = json.loads(_unb64(payload))
        except ValueError:
            return None
        if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
            return None
        if claims["exp"] <= self.clock():
            return None
        user = self.users.get(str(claims.get("sub")))
        return user if user is not None and user.signed_in else None

    def _decide(self, supplied_key: str) -> Response | None:
        """The answer the knobs impose, if any (consuming one counted failure)."""
        if self._fail_status is not None:
            status = self._fail_status
            if self._fail_times is not None:
                self._fail_times -= 1
                if self._fail_times <= 0:
                    self.fail(None)
            return JSONResponse(
                {"error": "fake_failure", "message": "failing on purpose"}, status_code=status
            )
        if self.redirect_to is not None:
            return RedirectResponse(self.redirect_to, status_code=307)
        accepted = hmac.compare_digest(supplied_key.encode(), self.api_key.encode())
        self.keys_seen.append(accepted)
        if not accepted:
            return JSONResponse(
                {"error": "invalid_api_key", "message": "API key is invalid"}, status_code=401
            )
        if self.garbage:
            return PlainTextResponse("<html>surprise</html>", status_code=200)
        if self.canned is not None:
            return JSONResponse(self.canned[1], status_code=self.canned[0])
        return None

    def _answer(self, body: Any) -> Response:
        """The document's answer to a well-formed request with an accepted key."""
        if not isinstance(body, dict) or not isinstance(body.get("userVerificationToken"), str):
            return JSONResponse(
                {"error": "bad_request", "message": "userVerificationToken is required"},
                status_code=400,
            )
        user = self._user_for(body["userVerificationToken"])
        if user is None:
            return JSONResponse({"isAuthenticated": False, "userInfo": None})
        return JSONResponse(
            {
                "isAuthenticated": True,
                "userInfo": {
                    "userId": user.user_id,
                    "email": user.email,
                    "productAccess": user.product_access,
                },
            }
        )

    def _build_app(self) -> FastAPI:
        app = FastAPI(title=f"fake tiun ({self.environment})")

        @app.post(VERIFY_PATH)
        async def verify(request: Request) -> Response:
            # The answer is decided when the request arrives and only sent after the hang, so a
            # request still hanging when the knobs change (the next test) keeps its own answer.
            self.calls += 1
            hang = self.hang_seconds
            response = self._decide(request.headers.get("x-tiun-api-key", ""))
            if response is None:
                try:
                    body: Any = await request.json()
                except ValueError:
                    body = None
                response = self._answer(body)
            if hang:
                await anyio.sleep(hang)
            return response

        return app
