"""``count="failures"`` under a race: charged up front, refunded unless the response failed.

Every test runs with each of the two layers that can watch the response and run the hooks: the
gate's ``ResponseHooksMiddleware`` (reporting off) and the reporting middleware, which takes over
that job when reporting is on, also for a path it does not report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest
from fastapi import Depends
from starlette.responses import JSONResponse

from fastapi_authgate import rate_limited
from fastapi_authgate.events import Event
from fastapi_authgate.protocols import RateLimitStore
from fastapi_authgate.ratelimit.limiter import RateLimiter
from fastapi_authgate.reporting import Reporter
from tests.ratelimit.support import build_app

pytestmark = pytest.mark.anyio


async def _ignore(batch: Sequence[Event]) -> None:
    return None


@pytest.fixture(params=["hooks middleware", "reporting", "reporting, path excluded"])
def reporter(request: pytest.FixtureRequest) -> Reporter | None:
    """Which layer runs the response hooks (the reporter's worker is never started here)."""
    if request.param == "hooks middleware":
        return None
    excluded = ["/login"] if request.param.endswith("excluded") else []
    return Reporter(_ignore, exclude_paths=excluded)


async def test_parallel_guesses_never_exceed_the_limit_in_flight(
    store: RateLimitStore, reporter: Reporter | None
) -> None:
    """#12 item 3: twenty parallel wrong passwords against 5/minute: five are evaluated."""
    app, gate = build_app(RateLimiter(store, store_timeout=5), [], reporter=reporter)
    evaluated = 0
    in_flight = 0
    most_in_flight = 0

    @app.post("/login", dependencies=[Depends(rate_limited("5/minute", count="failures"))])
    async def login() -> JSONResponse:
        nonlocal evaluated, in_flight, most_in_flight
        evaluated += 1
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        await asyncio.sleep(0.05)  # checking the password takes a while; the others arrive
        in_flight -= 1
        return JSONResponse({"error": "wrong password"}, status_code=401)

    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        responses = await asyncio.gather(*(client.post("/login") for _ in range(20)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [401] * 5 + [429] * 15
        assert evaluated == 5 and most_in_flight <= 5
        # The failures keep their charge: the next guess is refused too.
        assert (await client.post("/login")).status_code == 429
    await gate.limiter.aclose()


async def test_successes_and_server_errors_are_refunded(
    store: RateLimitStore, reporter: Reporter | None
) -> None:
    app, gate = build_app(RateLimiter(store, store_timeout=5), [], reporter=reporter)

    @app.post("/login", dependencies=[Depends(rate_limited("2/minute", count="failures"))])
    async def login(password: str) -> JSONResponse:
        await asyncio.sleep(0.01)
        if password == "right":
            return JSONResponse({"ok": True})
        if password == "boom":
            return JSONResponse({"error": "down"}, status_code=503)
        return JSONResponse({"error": "wrong"}, status_code=401)

    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for password in ("right", "boom") * 10:  # one at a time: each charge is given back
            response = await client.post(f"/login?password={password}")
            assert response.status_code in (200, 503)
        # Two parallel successes fit in 2/minute, and both are refunded afterwards.
        pair = await asyncio.gather(*(client.post("/login?password=right") for _ in range(2)))
        assert [r.status_code for r in pair] == [200, 200]
        wrong = [(await client.post("/login?password=wrong")).status_code for _ in range(3)]
        assert wrong == [401, 401, 429]
    await gate.limiter.aclose()


async def test_an_exception_escaping_the_route_is_a_refunded_server_error(
    store: RateLimitStore, reporter: Reporter | None
) -> None:
    """No response started, an exception escapes: the hooks still run, once, with 500."""
    app, gate = build_app(RateLimiter(store, store_timeout=5), [], reporter=reporter)

    @app.post("/login", dependencies=[Depends(rate_limited("1/minute", count="failures"))])
    async def login() -> JSONResponse:
        raise RuntimeError("the password store is down")

    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        statuses = [(await client.post("/login")).status_code for _ in range(3)]
    assert statuses == [500, 500, 500]  # each charge given back: never a 429
    await gate.limiter.aclose()
