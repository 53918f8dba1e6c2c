"""``rate_limited`` on real routes behind the real AuthGate: statuses, headers, keys, modes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from fastapi_authgate import AuthContext, rate_limited
from fastapi_authgate.errors import ConfigurationError
from fastapi_authgate.ratelimit.limiter import RateLimiter
from tests.conftest import FixedClock
from tests.ratelimit.support import add_websocket, bearer, build_app

pytestmark = pytest.mark.anyio


def client_for(app: FastAPI, peer: str = "203.0.113.9") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_headers_on_every_response_and_exact_429(clock: FixedClock) -> None:
    app, _ = build_app(RateLimiter(clock=clock), [("/search", rate_limited("10/minute"))])
    async with client_for(app) as client:
        first = await client.get("/search")
        assert first.status_code == 200
        assert first.headers["ratelimit-policy"] == '"default";q=10;w=60'
        assert first.headers["ratelimit"] == '"default";r=9;t=6'
        for _ in range(9):
            last = await client.get("/search")
        assert last.headers["ratelimit"] == '"default";r=0;t=60'
        clock.advance(1.5)
        refused = await client.get("/search")
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert refused.headers["retry-after"] == "5"  # 6 s refill interval, 1.5 s gone, rounded up
        assert refused.headers["ratelimit"] == '"default";r=0;t=59'
        assert refused.headers["ratelimit-policy"] == '"default";q=10;w=60'
        clock.advance(4.5)
        assert (await client.get("/search")).status_code == 200


async def test_several_rules_on_one_route(clock: FixedClock) -> None:
    app, _ = build_app(RateLimiter(clock=clock), [("/r", rate_limited("100/hour;5/second"))])
    async with client_for(app) as client:
        statuses = [(await client.get("/r")).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        refused = await client.get("/r")
        assert refused.headers["ratelimit-policy"] == '"100/hour";q=100;w=3600, "5/second";q=5;w=1'
        assert refused.headers["ratelimit"] == '"5/second";r=0;t=1'
        assert refused.headers["retry-after"] == "1"
        clock.advance(1)
        ok = await client.get("/r")
        assert ok.status_code == 200
        assert ok.headers["ratelimit"] == '"5/second";r=4;t=1'


async def test_two_routes_with_the_same_rule_do_not_share_a_bucket(clock: FixedClock) -> None:
    shared = rate_limited("1/minute", name="shared")
    app, _ = build_app(
        RateLimiter(clock=clock),
        [
            ("/a", rate_limited("1/minute")),
            ("/b", rate_limited("1/minute")),
            ("/c", shared),
            ("/d", shared),
        ],
    )
    async with client_for(app) as client:
        assert [(await client.get(p)).status_code for p in ("/a", "/b", "/a", "/b")] == [
            200,
            200,
            429,
            429,
        ]
        assert [(await client.get(p)).status_code for p in ("/c", "/d")] == [200, 429]


async def test_path_parameters_do_not_split_the_bucket(clock: FixedClock) -> None:
    gate_app, _ = build_app(RateLimiter(clock=clock), [])
    dependency = rate_limited("2/minute")

    @gate_app.get("/items/{item_id}", dependencies=[Depends(dependency)])
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    async with client_for(gate_app) as client:
        statuses = [(await client.get(f"/items/{i}")).status_code for i in range(3)]
    assert statuses == [200, 200, 429]


async def test_spoofed_forwarded_for_without_trusted_proxies_changes_nothing(
    clock: FixedClock,
) -> None:
    app, _ = build_app(RateLimiter(clock=clock), [("/s", rate_limited("2/minute"))])
    async with client_for(app) as client:
        statuses = [
            (
                await client.get(
                    "/s", headers={"X-Forwarded-For": f"10.0.0.{i}", "Forwarded": f"for=10.1.0.{i}"}
                )
            ).status_code
            for i in range(4)
        ]
    assert statuses == [200, 200, 429, 429]


async def test_trusted_proxy_forwarded_for_separates_clients(clock: FixedClock) -> None:
    app, _ = build_app(
        RateLimiter(clock=clock),
        [("/s", rate_limited("1/minute"))],
        trusted_proxies=["10.0.0.0/8"],
    )
    async with client_for(app, peer="10.0.0.2") as client:
        one = {"X-Forwarded-For": "198.51.100.1"}
        two = {"X-Forwarded-For": "198.51.100.2"}
        statuses = [(await client.get("/s", headers=h)).status_code for h in (one, two, one)]
    assert statuses == [200, 200, 429]


async def test_user_key_needs_an_identity_and_counts_per_subject(clock: FixedClock) -> None:
    app, _ = build_app(RateLimiter(clock=clock), [("/u", rate_limited("1/minute", key="user"))])
    async with client_for(app) as client:
        anonymous = await client.get("/u")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"] == "not_authenticated"
        assert (await client.get("/u", headers=bearer("forged"))).status_code == 401
        assert (await client.get("/u", headers=bearer("alice"))).status_code == 200
        assert (await client.get("/u", headers=bearer("alice"))).status_code == 429
        assert (await client.get("/u", headers=bearer("bob"))).status_code == 200


async def test_metadata_key_groups_by_field_with_claims_and_subject_fallbacks(
    clock: FixedClock,
) -> None:
    app, _ = build_app(
        RateLimiter(clock=clock), [("/m", rate_limited("1/minute", key="metadata:org"))]
    )
    async with client_for(app) as client:
        # alice and bob share org "acme" in user metadata; carol has org "globex" in claims;
        # dave has neither and falls back to his own subject.
        results = [
            (await client.get("/m", headers=bearer(user))).status_code
            for user in ("alice", "bob", "carol", "dave", "dave")
        ]
    assert results == [200, 429, 200, 200, 429]


async def test_callable_keys_sync_and_async(clock: FixedClock) -> None:
    def by_header(conn: HTTPConnection, auth: AuthContext | None) -> str:
        return conn.headers.get("x-tenant", "none")

    async def by_subject_or_ip(conn: HTTPConnection, auth: AuthContext | None) -> str:
        await asyncio.sleep(0)
        return auth.subject if auth is not None else "anon"

    app, _ = build_app(
        RateLimiter(clock=clock),
        [
            ("/t", rate_limited("1/minute", key=by_header)),
            ("/s", rate_limited("1/minute", key=by_subject_or_ip)),
        ],
    )
    async with client_for(app) as client:
        tenants = [
            (await client.get("/t", headers={"x-tenant": t})).status_code for t in ("a", "b", "a")
        ]
        subjects = [
            (await client.get("/s", headers=h)).status_code
            for h in ({}, bearer("alice"), {}, bearer("alice"))
        ]
    assert tenants == [200, 200, 429]
    assert subjects == [200, 200, 429, 429]


async def test_shadow_mode_never_refuses_but_counts(clock: FixedClock) -> None:
    app, gate = build_app(RateLimiter(clock=clock), [("/s", rate_limited("2/minute", shadow=True))])
    async with client_for(app) as client:
        responses = [await client.get("/s") for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert all("ratelimit" not in r.headers for r in responses)
    assert gate.limiter.stats.shadow_refusals == 3
    assert gate.limiter.stats.refusals == 0


async def test_failure_only_counting_charges_client_errors_only(clock: FixedClock) -> None:
    app, _ = build_app(RateLimiter(clock=clock), [])
    login_limit = rate_limited("3/minute", count="failures")

    @app.post("/login", dependencies=[Depends(login_limit)])
    async def login(password: str) -> Any:
        if password == "right":
            return {"ok": True}
        if password == "boom":
            return JSONResponse({"error": "down"}, status_code=503)
        return JSONResponse({"error": "wrong"}, status_code=401)

    async with client_for(app) as client:
        for _ in range(10):  # successful users are never charged
            assert (await client.post("/login?password=right")).status_code == 200
        for _ in range(5):  # server errors never lock anyone out
            assert (await client.post("/login?password=boom")).status_code == 503
        wrong = [(await client.post("/login?password=wrong")).status_code for _ in range(3)]
        assert wrong == [401, 401, 401]
        refused = await client.post("/login?password=right")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "20"
        # a validation error is a client error too, and is charged
        clock.advance(20)
        assert (await client.post("/login")).status_code == 422
        assert (await client.post("/login?password=right")).status_code == 429


async def test_failure_counting_without_the_hook_middleware_charges_everything(
    clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi_authgate import AuthGate
    from tests.ratelimit.support import TableVerifier

    gate = AuthGate(TableVerifier(), limiter=RateLimiter(clock=clock))
    app = FastAPI()
    app.state.authgate = gate  # state only: no middleware, no handlers

    @app.get("/x", dependencies=[Depends(rate_limited("2/minute", count="failures"))])
    async def x() -> dict[str, bool]:
        return {"ok": True}

    async with client_for(app) as client:
        assert [(await client.get("/x")).status_code for _ in range(2)] == [200, 200]
    assert "ResponseHooksMiddleware is not installed" in caplog.text


async def test_websocket_refusal_closes_with_1013(clock: FixedClock) -> None:
    app, _ = build_app(RateLimiter(clock=clock), [])
    add_websocket(app, "/ws", rate_limited("1/minute"))
    client = TestClient(app)
    with client.websocket_connect("/ws") as socket:
        assert socket.receive_text() == "hello"
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/ws"):
        pass
    assert info.value.code == 1013


async def test_200_concurrent_requests_allow_exactly_the_limit() -> None:
    app, _ = build_app(RateLimiter(), [("/hot", rate_limited("50/hour"))])
    async with client_for(app) as client:
        responses = await asyncio.gather(*(client.get("/hot") for _ in range(200)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 50
    assert statuses.count(429) == 150


def test_bad_arguments_fail_when_the_route_is_declared() -> None:
    with pytest.raises(ConfigurationError, match="rule"):
        rate_limited("lots/minute")
    with pytest.raises(ConfigurationError, match="key"):
        rate_limited("1/minute", key="cookie")
    with pytest.raises(ConfigurationError, match="key"):
        rate_limited("1/minute", key="metadata:")
    with pytest.raises(ConfigurationError, match="count"):
        rate_limited("1/minute", count="some")  # type: ignore[arg-type]


def test_each_call_returns_a_new_dependency() -> None:
    assert rate_limited("1/minute") is not rate_limited("1/minute")


def test_without_an_installed_gate_the_limit_answers_503_not_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()

    @app.get("/search", dependencies=[Depends(rate_limited("10/minute"))])
    async def search() -> dict[str, bool]:
        return {"ok": True}

    response = TestClient(app).get("/search")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "gate.install(app)" in caplog.text
