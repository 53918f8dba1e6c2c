"""AuthGateMiddleware path rules match the route path, under a root path and inside a mount.

Served by uvicorn on loopback: ``uvicorn --root-path`` is what puts ``root_path`` into the scope
(and prefixes ``path`` with it), so only a real server shows what the rules see.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request

from fastapi_authgate import AuthGate, AuthGateMiddleware
from fastapi_authgate.middleware import PathRules
from fastapi_authgate.providers.dev import DevIssuer
from tests.servers import serve

ISSUER = DevIssuer()


def api_app() -> FastAPI:
    """The README's shape: the middleware guards ``/api/*`` and leaves ``/health`` open."""
    app = FastAPI()
    app.add_middleware(AuthGateMiddleware, include=["/api/*"], exclude=["/api/open"])
    AuthGate(ISSUER.verifier()).install(app)

    @app.get("/api/data")
    async def data(request: Request) -> dict[str, Any]:
        return {"subject": request.state.auth.subject}

    @app.get("/api/open")
    async def open_route() -> dict[str, bool]:
        return {"open": True}

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    return app


def _check_rules(base: str) -> None:
    token = ISSUER.issue("alice")
    with httpx.Client(base_url=base) as client:
        refused = client.get("/api/data")
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "not_authenticated"
        ok = client.get("/api/data", headers={"Authorization": f"Bearer {token}"})
        assert ok.json() == {"subject": "alice"}
        assert client.get("/api/open").json() == {"open": True}
        assert client.get("/health").json() == {"ok": True}


def test_include_matches_the_route_path_under_uvicorn_root_path() -> None:
    with serve(api_app(), root_path="/svc") as base:
        _check_rules(base)  # uvicorn serves /api/data as path /svc/api/data, root_path /svc


def test_include_matches_the_route_path_inside_a_mount() -> None:
    outer = FastAPI()
    outer.mount("/v1", api_app())
    with serve(outer) as base:
        _check_rules(base + "/v1")


def test_mount_and_root_path_together() -> None:
    outer = FastAPI()
    outer.mount("/v1", api_app())
    with serve(outer, root_path="/svc") as base:
        _check_rules(base + "/v1")


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/api/x", "", "/api/x"),
        ("/svc/api/x", "/svc", "/api/x"),
        ("/svc", "/svc", "/"),
        ("/svcx/api", "/svc", "/svcx/api"),  # a longer segment is not under the root
        ("/other", "/svc", "/other"),
        ("/a.b/api/x", "/a.b", "/api/x"),  # no pattern matching: "." is a dot
        ("/axb/api/x", "/a.b", "/axb/api/x"),
    ],
)
def test_route_path(path: str, root: str, expected: str) -> None:
    from fastapi_authgate.middleware import route_path

    assert route_path({"type": "http", "path": path, "root_path": root}) == expected


def test_path_rules_exact_and_prefix() -> None:
    rules = PathRules(["/api/*", "/exact"])
    assert rules.matches("/api/anything") and rules.matches("/exact")
    assert not rules.matches("/exact/more") and not rules.matches("/apix")
