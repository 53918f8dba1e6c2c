"""A context counts only for the gate that verified it, and only from the gate's private slot.

Over real HTTP (uvicorn on loopback). The installed gate trusts two issuers (main and partner);
``main_only`` is a guard bound to a gate that trusts main alone. Whatever ran first on the request
(the middleware, a router-level guard, ``rate_limited(key="user")``), a partner token must never
pass ``main_only``; and nothing at ``request.state.auth`` (lifespan state, another middleware) may
stand in for a verification.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import APIRouter, Depends, FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from fastapi_authgate import (
    AuthContext,
    AuthDependency,
    AuthGate,
    AuthGateMiddleware,
    rate_limited,
    require_user,
)
from fastapi_authgate.providers.dev import DevIssuer
from tests.servers import serve

MAIN = DevIssuer(issuer="https://main.example")
PARTNER = DevIssuer(issuer="https://partner.example")
FAKE = AuthContext(subject="admin", provider="forged", credential="bearer", scopes=frozenset({"a"}))


def bearer(issuer: DevIssuer, sub: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.issue(sub)}


def two_issuer_app(*, middleware: bool = False) -> FastAPI:
    app = FastAPI()
    if middleware:
        app.add_middleware(AuthGateMiddleware, include=["/*"])
    AuthGate([MAIN.verifier(), PARTNER.verifier()]).install(app)
    main_only = AuthDependency("user", gate=AuthGate(MAIN.verifier()))

    @app.get("/main")
    async def main(auth: AuthContext = Depends(main_only)) -> dict[str, Any]:
        return {"subject": auth.subject, "iss": auth.claims["iss"]}

    router = APIRouter(dependencies=[Depends(require_user)])

    @router.get("/router/main")
    async def router_main(auth: AuthContext = Depends(main_only)) -> dict[str, Any]:
        return {"subject": auth.subject}

    app.include_router(router)

    @app.get("/limited/main", dependencies=[Depends(rate_limited("100/minute", key="user"))])
    async def limited_main(auth: AuthContext = Depends(main_only)) -> dict[str, Any]:
        return {"subject": auth.subject}

    return app


def test_a_partner_token_never_passes_a_main_only_guard_after_the_middleware() -> None:
    with serve(two_issuer_app(middleware=True)) as base, httpx.Client(base_url=base) as client:
        refused = client.get("/main", headers=bearer(PARTNER, "mallory"))
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "invalid_token"
        ok = client.get("/main", headers=bearer(MAIN, "alice"))
        assert ok.json() == {"subject": "alice", "iss": "https://main.example"}


def test_a_partner_token_never_passes_a_main_only_guard_after_a_router_guard() -> None:
    with serve(two_issuer_app()) as base, httpx.Client(base_url=base) as client:
        assert client.get("/router/main", headers=bearer(PARTNER, "mallory")).status_code == 401
        ok = client.get("/router/main", headers=bearer(MAIN, "alice"))
        assert ok.json() == {"subject": "alice"}


def test_a_partner_token_never_passes_a_main_only_guard_after_rate_limited() -> None:
    with serve(two_issuer_app()) as base, httpx.Client(base_url=base) as client:
        assert client.get("/limited/main", headers=bearer(PARTNER, "mallory")).status_code == 401
        ok = client.get("/limited/main", headers=bearer(MAIN, "alice"))
        assert ok.json() == {"subject": "alice"}


def test_rate_limited_keys_on_the_identity_of_the_routes_guard() -> None:
    """The installed gate knows only main; the route's guard admits partner tokens."""
    app = FastAPI()
    AuthGate(MAIN.verifier()).install(app)
    partner_only = AuthDependency("user", gate=AuthGate(PARTNER.verifier()))

    @app.get("/partner", dependencies=[Depends(rate_limited("2/minute", key="user"))])
    async def partner(auth: AuthContext = Depends(partner_only)) -> dict[str, Any]:
        return {"subject": auth.subject}

    with serve(app) as base, httpx.Client(base_url=base) as client:
        bob = bearer(PARTNER, "bob")
        first = client.get("/partner", headers=bob)
        assert first.json() == {"subject": "bob"}, first.text
        assert client.get("/partner", headers=bob).status_code == 200
        limited = client.get("/partner", headers=bob)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        # another partner identity has its own bucket: the key is the guard's subject
        assert client.get("/partner", headers=bearer(PARTNER, "carol")).status_code == 200


def test_lifespan_state_named_auth_is_not_an_identity() -> None:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {"auth": FAKE}

    app = FastAPI(lifespan=lifespan)
    AuthGate(MAIN.verifier()).install(app)

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, str]:
        return {"subject": auth.subject}

    with serve(app) as base, httpx.Client(base_url=base) as client:
        refused = client.get("/me")
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "not_authenticated"
        assert client.get("/me", headers=bearer(MAIN, "alice")).json() == {"subject": "alice"}


class WritesAuth:
    """Third-party middleware that leaves something at ``request.state.auth``, ``scope["auth"]``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["auth"] = FAKE
            scope["auth"] = FAKE
        await self.app(scope, receive, send)


def test_another_middlewares_request_state_auth_is_not_an_identity() -> None:
    app = FastAPI()
    AuthGate(MAIN.verifier()).install(app)
    app.add_middleware(WritesAuth)

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, str]:
        return {"subject": auth.subject}

    with serve(app) as base, httpx.Client(base_url=base) as client:
        assert client.get("/me").status_code == 401
        ok = client.get("/me", headers=bearer(MAIN, "alice"))
        assert ok.json() == {"subject": "alice"}
