"""The example app: ``uvicorn example_app.main:app`` (or ``scripts/run``) runs it with no account.

With ``AUTHGATE_PROVIDER`` unset (or ``dev``) it mounts the development issuer: a sign-in page at
``/``, ``POST /dev/token``, ``POST /dev/logout`` and the issuer's JWKS and discovery documents.
With ``AUTHGATE_PROVIDER`` naming a real provider it trusts that provider instead and refuses to
mount those routes, since they let anyone sign in as anyone.

With ``AUTHGATE_PROVIDER=qyzar`` (and ``AUTHGATE_QYZAR__API_URL``, ``__PROJECT_ID``,
``__PROJECT_SECRET``; a missing one stops the start naming it) the Qyzar session cookies sign
requests in, and two more routes show the Qyzar dependencies: ``GET /api/client-token``
(``require_client_token``) and ``GET /api/qyzar-limited`` (``qyzar_rate_limited``).

``EXAMPLE_RATE_LIMIT`` sets the rule of ``/api/limited`` (default ``5/minute``). ``/docs`` serves
Swagger UI from the ``fastapi-offline`` package when it is installed (the ``[example]`` extra), so
it works offline; ``EXAMPLE_SWAGGER_CDN=1`` switches back to FastAPI's CDN page.

``AUTHGATE_REPORTING__SINK=log`` turns on background reporting: one JSON line per request (and per
``POST /dev/token``, reported as a login attempt) on stderr.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from fastapi import Depends, FastAPI, Security

from example_app.docs import bundled_swagger_ui, serve_docs_offline
from fastapi_authgate import AuthContext, AuthGate, rate_limited, require_session, require_user
from fastapi_authgate.qyzar_dependencies import (
    QyzarClientToken,
    qyzar_client_of,
    qyzar_rate_limited,
    require_client_token,
)
from fastapi_authgate.reporting import EVENT_LOGGER, LogSink
from fastapi_authgate.testing import dev_issuer_router

__all__ = ["app", "create_app"]

SIGN_IN_PAGE = Path(__file__).with_name("static") / "index.html"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (as ``logging.lastResort`` does)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_EVENTS_TO_STDERR = _StderrHandler()
_EVENTS_TO_STDERR.setFormatter(logging.Formatter("%(message)s"))
_EVENTS_TO_STDERR.addFilter(lambda record: record.name == EVENT_LOGGER)  # events only


def log_events_to_stderr(gate: AuthGate) -> None:
    """Send the log sink's JSON lines to stderr (once, however many apps are built)."""
    if gate.reporter is None or not isinstance(gate.reporter.sink, LogSink):
        return
    events = logging.getLogger(EVENT_LOGGER)
    events.setLevel(logging.INFO)
    if _EVENTS_TO_STDERR not in events.handlers:
        events.addHandler(_EVENTS_TO_STDERR)


def describe(auth: AuthContext) -> dict[str, object]:
    """The body every ``/api`` route answers with."""
    return {
        "subject": auth.subject,
        "scopes": sorted(auth.scopes),
        "provider": auth.provider,
        "session_id": auth.session_id,
    }


def create_app(gate: AuthGate | None = None) -> FastAPI:
    """Build the example app; the gate comes from ``AUTHGATE_*`` variables unless given."""
    gate = gate if gate is not None else AuthGate.from_settings()
    swagger_assets = bundled_swagger_ui()
    app = FastAPI(
        title="fastapi_authgate example",
        description="Sign in at `/` (development issuer), then try the routes here with "
        "the Authorize button.",
        docs_url=None if swagger_assets is not None else "/docs",
    )
    gate.install(app)
    if swagger_assets is not None:
        serve_docs_offline(app, swagger_assets)
    log_events_to_stderr(gate)

    # Belt and braces: even a gate that carries a DevIssuer gets no sign-in routes when the
    # environment names a real provider, because those routes let anyone sign in as anyone.
    wants_dev = os.environ.get("AUTHGATE_PROVIDER", "dev").strip().lower() in ("", "dev")
    if gate.dev_issuer is not None and wants_dev:
        app.include_router(
            dev_issuer_router(
                gate.dev_issuer,
                cookie_name=gate.session_cookie,
                sign_in_page=SIGN_IN_PAGE.read_text(encoding="utf-8"),
            )
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, object]:
        return describe(auth)

    @app.get("/api/session")
    async def session(auth: AuthContext = Depends(require_session)) -> dict[str, object]:
        return describe(auth)

    @app.get("/api/admin")
    async def admin(
        auth: AuthContext = Security(require_user, scopes=["admin"]),
    ) -> dict[str, object]:
        return describe(auth)

    limit = os.environ.get("EXAMPLE_RATE_LIMIT", "5/minute")

    @app.get("/api/limited", dependencies=[Depends(rate_limited(limit, key="ip"))])
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    if qyzar_client_of(gate) is not None:
        _add_qyzar_routes(app, limit)
    return app


def _add_qyzar_routes(app: FastAPI, limit: str) -> None:
    """Routes that only make sense when Qyzar is the provider."""

    @app.get("/api/client-token")
    async def client_token(
        token: QyzarClientToken = Depends(require_client_token),
    ) -> dict[str, object]:
        return {"session_id": token.session_id, "metadata": dict(token.metadata)}

    @app.get("/api/qyzar-limited", dependencies=[Depends(qyzar_rate_limited(limit))])
    async def qyzar_limited() -> dict[str, bool]:
        return {"ok": True}


app = create_app()
