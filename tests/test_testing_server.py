"""fastapi_authgate.testing.serve: a real server on loopback for the length of a block."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from fastapi_authgate.testing import serve


def test_serves_over_real_http_then_stops() -> None:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    with serve(app) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        assert httpx.get(base_url + "/ping", timeout=5).json() == {"pong": "yes"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url + "/ping", timeout=2)


def test_a_block_that_raises_still_stops_the_server() -> None:
    app = FastAPI()
    with pytest.raises(ZeroDivisionError), serve(app) as base_url:
        url = base_url
        _ = 1 / 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/", timeout=2)


def test_an_app_that_cannot_start_is_reported() -> None:
    async def broken_lifespan_app(scope: dict[str, object], receive: object, send: object) -> None:
        raise RuntimeError("cannot start")

    with (
        pytest.raises(RuntimeError, match="did not start"),
        serve(broken_lifespan_app, start_timeout=3),
    ):
        pass
