"""Login attempts: report them from the app's own login route, and ask for a risk score.

Two ways in, the same behaviour: a plain call, :func:`record_login_attempt`, and a dependency,
:func:`login_attempts`, which hands the route a :class:`LoginAttempts` bound to its request. Each
builds a :class:`~fastapi_authgate.events.LoginEvent` (identifier, outcome, client IP by the
gate's trusted-proxy rules, user agent, request id, session id) and:

* with a plain sink (``log``, a callable) queues it like any request event, and answers
  ``LoginRisk(status="not_scored")`` at once;
* with a scoring sink (:class:`~fastapi_authgate.protocols.LoginScorer`, such as Qyzar) delivers
  it through ``score_login`` and waits for the risk **at most** ``login_score_deadline`` seconds
  (default 0.3). A late answer gives ``status="late"``; the call still finishes in the background
  and is counted. A failure gives ``status="unavailable"``. The app decides what a score, or its
  absence, means: reporting never refuses a login by itself.

The session an attempt is scored for is, in order: the ``session_id`` argument, the verified
context's session id, or the cookie the scoring sink names (``session_cookie``; Qyzar's device
session ``qyzar_session_id``). With a scoring sink and no session there is nothing to score for:
the attempt answers ``not_scored`` and is not sent.

After a good login, :meth:`LoginAttempts.trust` (or :func:`trust_identifier`) marks the identifier
trusted on that device, in the background. With reporting off, every call is a cheap no-op.
The password never passes through here: pass only the identifier and the outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.requests import HTTPConnection
from starlette.types import Scope

from fastapi_authgate.context import AuthContext
from fastapi_authgate.events import LoginEvent, LoginRisk
from fastapi_authgate.protocols import LoginScorer
from fastapi_authgate.reporting.capture import read_headers
from fastapi_authgate.reporting.reporter import Reporter

__all__ = [
    "LoginAttempts",
    "REPORTER_SCOPE_KEY",
    "login_attempts",
    "record_login_attempt",
    "reporter_of",
    "trust_identifier",
]

logger = logging.getLogger(__name__)

REPORTER_SCOPE_KEY = "authgate.reporter"
"""ASGI scope key under which the installed gate's reporter travels (absent when it is off)."""

MAX_IDENTIFIER_LENGTH = 256
_NOT_SCORED = LoginRisk(status="not_scored")
_LATE = LoginRisk(status="late")
_UNAVAILABLE = LoginRisk(status="unavailable")


class LoginAttempts:
    """Login reporting bound to one request; what :func:`login_attempts` gives a route."""

    __slots__ = ("conn", "reporter")

    def __init__(self, conn: HTTPConnection, reporter: Reporter | None) -> None:
        self.conn = conn
        self.reporter = reporter

    @property
    def enabled(self) -> bool:
        """True when reporting is on for this app."""
        return self.reporter is not None

    async def record(
        self, identifier: str, *, success: bool | None, session_id: str | None = None
    ) -> LoginRisk:
        """Report an attempt to sign in as ``identifier``; see the module docstring.

        Args:
            identifier: what the user signed in with (user name, e-mail); never the password.
            success: the outcome, or ``None`` when asking for a score before checking.
            session_id: the device session to score for (default: see the module docstring).

        Returns:
            The risk verdict; never raises for a sink's failure or slowness.
        """
        reporter = self.reporter
        if reporter is None:
            return _NOT_SCORED
        scope = self.conn.scope
        scorer = reporter.scorer
        user_agent, request_id = read_headers(scope)
        event = LoginEvent(
            at=time.time(),
            identifier=_clean_identifier(identifier),
            success=success,
            ip=reporter.client_ip.resolve_scope(scope),
            user_agent=user_agent,
            session_id=session_id or _session_for(self.conn, scorer),
            request_id=request_id,
        )
        if scorer is None:
            reporter.submit(event)
            return _NOT_SCORED
        if event.session_id is None:
            logger.debug("login attempt not scored: no session id to score it for")
            return _NOT_SCORED
        task = reporter.spawn(lambda: _score(reporter, scorer, event))
        if task is None:
            return _UNAVAILABLE
        try:
            async with asyncio.timeout(reporter.login_score_deadline):
                return await asyncio.shield(task)
        except TimeoutError:
            return _LATE

    async def trust(self, identifier: str, *, session_id: str | None = None) -> bool:
        """Mark ``identifier`` trusted on this device after a good login, in the background.

        Returns:
            True when the call was started (a scoring sink and a session id were there).
        """
        reporter = self.reporter
        scorer = reporter.scorer if reporter is not None else None
        if reporter is None or scorer is None:
            return False
        session = session_id or _session_for(self.conn, scorer)
        if session is None:
            return False
        name = _clean_identifier(identifier)
        return reporter.spawn(lambda: _trust(reporter, scorer, session, name)) is not None


def login_attempts(conn: HTTPConnection) -> LoginAttempts:
    """Dependency: ``attempts: LoginAttempts = Depends(login_attempts)`` in a login route."""
    return LoginAttempts(conn, reporter_of(conn.scope))


async def record_login_attempt(
    conn: HTTPConnection,
    identifier: str,
    *,
    success: bool | None,
    session_id: str | None = None,
) -> LoginRisk:
    """Report a login attempt made on ``conn``; see :meth:`LoginAttempts.record`."""
    return await login_attempts(conn).record(identifier, success=success, session_id=session_id)


async def trust_identifier(
    conn: HTTPConnection, identifier: str, *, session_id: str | None = None
) -> bool:
    """Mark ``identifier`` trusted on the device of ``conn``; see :meth:`LoginAttempts.trust`."""
    return await login_attempts(conn).trust(identifier, session_id=session_id)


def reporter_of(scope: Scope) -> Reporter | None:
    """The reporter of the gate serving ``scope``, ``None`` when reporting is off."""
    reporter = scope.get(REPORTER_SCOPE_KEY)
    return reporter if isinstance(reporter, Reporter) else None


def _session_for(conn: HTTPConnection, scorer: LoginScorer | None) -> str | None:
    auth = conn.scope.get("auth")
    if isinstance(auth, AuthContext) and auth.session_id:
        return auth.session_id
    cookie = getattr(scorer, "session_cookie", None)
    if isinstance(cookie, str):
        value = conn.cookies.get(cookie)
        if value and len(value) <= 256:
            return value
    return None


def _clean_identifier(identifier: str) -> str:
    if not isinstance(identifier, str):
        raise TypeError("identifier must be a string (the user name or e-mail, never a password)")
    return identifier.strip()[:MAX_IDENTIFIER_LENGTH]


async def _score(reporter: Reporter, scorer: LoginScorer, event: LoginEvent) -> LoginRisk:
    try:
        async with asyncio.timeout(reporter.send_timeout):
            risk = await scorer.score_login(event)
    except Exception as exc:
        reporter.count(failed=1)
        logger.warning(
            "reporting: scoring a login attempt with %s failed (%s); the app got 'unavailable'",
            type(scorer).__name__,
            "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__,
        )
        return _UNAVAILABLE
    reporter.count(sent=1)
    return risk


async def _trust(reporter: Reporter, scorer: LoginScorer, session_id: str, name: str) -> None:
    try:
        async with asyncio.timeout(reporter.send_timeout):
            await scorer.trust_identifier(session_id=session_id, identifier=name)
    except Exception as exc:
        reporter.count(failed=1)
        logger.warning(
            "reporting: marking an identifier trusted with %s failed (%s)",
            type(scorer).__name__,
            "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__,
        )
        return
    reporter.count(sent=1)
