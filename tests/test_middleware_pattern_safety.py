"""AuthGateMiddleware's path rules as the router sees paths, and patterns refused at startup.

A path the router serves as ``/admin`` must meet ``/admin``'s rule however it is spelled, and a
rule list that would guard nothing (a bare string, a pattern without its leading ``/``) is a
configuration error, never a quietly open app.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fastapi_authgate import AuthGate, AuthGateMiddleware, ConfigurationError
from fastapi_authgate.providers.dev import DevIssuer
from tests.servers import serve

ISSUER = DevIssuer()


def _app(**middleware: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(AuthGateMiddleware, **middleware)
    AuthGate(ISSUER.verifier()).install(app)

    @app.get("/admin")
    async def admin() -> dict[str, bool]:
        return {"secret": True}

    @app.get("/api/data")
    async def data() -> dict[str, bool]:
        return {"secret": True}

    return app


def _refused_at_startup(app: FastAPI, match: str) -> None:
    """The middleware refuses its configuration when the app is first built (first request)."""
    with pytest.raises(ConfigurationError, match=match), TestClient(app) as client:
        client.get("/api/data")


@pytest.mark.parametrize("encoded", ["/admin%0A", "/admin%0a"])
def test_trailing_encoded_newline_does_not_escape_an_exact_include(encoded: str) -> None:
    """``include=["/admin"]`` guards ``/admin``; ``/admin%0A`` reaches the same route unguarded.

    The server decodes ``%0A`` into ``scope["path"] == "/admin\\n"``. The rule compares exactly, so
    it does not apply, while Starlette's route regex ``^/admin$`` also matches before a final
    newline (Python ``$``), so the router serves ``/admin``.
    """
    app = _app(include=["/admin"])
    with TestClient(app) as client:
        assert client.get("/admin").status_code == 401
        response = client.get(encoded)
        assert response.status_code == 401, response.text  # the rule of /admin, never its 200


def test_trailing_newline_bypass_holds_under_uvicorn() -> None:
    """The same bypass over real HTTP (uvicorn decodes the target the same way)."""
    import httpx

    with serve(_app(include=["/admin"])) as base, httpx.Client(base_url=base) as client:
        assert client.get("/admin").status_code == 401
        response = client.get("/admin%0A")
        assert response.status_code == 401, response.text


def test_exclude_given_as_a_bare_string_does_not_switch_the_guard_off() -> None:
    """``exclude="/public/*"`` (a str, not a list) is split into characters; ``"*"`` is one of
    them, an empty prefix that matches every path, so nothing is guarded any more."""
    _refused_at_startup(_app(exclude="/public/*"), "takes a list of patterns")


def test_include_pattern_that_can_never_match_is_refused() -> None:
    """``include=["api/*"]`` (no leading slash) matches no route path, so the middleware guards
    nothing, silently; a pattern that cannot match a path should fail at startup."""
    _refused_at_startup(_app(include=["api/*"]), "must start with '/'")


def test_a_slash_pattern_and_the_match_everything_star_are_accepted() -> None:
    with TestClient(_app(include=["*"], exclude=["/api/*"])) as client:
        assert client.get("/admin").status_code == 401
        assert client.get("/api/data").status_code == 200
