"""tiun over real HTTP: our app under test, TiunVerifier calling the fake tiun on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI, Security

from fastapi_authgate import AuthContext, AuthGate, Credentials, require_user
from fastapi_authgate.errors import AuthenticationError, ProviderError
from fastapi_authgate.providers.tiun import TiunVerifier, parse_product_access
from fastapi_authgate.testing import FakeTiun
from tests.conftest import FixedClock
from tests.servers import serve

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def live_server() -> Iterator[tuple[FakeTiun, str]]:
    fake = FakeTiun("live")
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[tuple[FakeTiun, str]]:
    fake = FakeTiun("sandbox")
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture
def live(live_server: tuple[FakeTiun, str]) -> Iterator[FakeTiun]:
    live_server[0].reset()
    yield live_server[0]
    live_server[0].reset()


@pytest.fixture
def live_url(live_server: tuple[FakeTiun, str]) -> str:
    return live_server[1]


def build_app(verifier: TiunVerifier) -> FastAPI:
    gate = AuthGate(verifier)
    app = FastAPI()
    gate.install(app)

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, object]:
        assert auth.user is not None
        return {
            "subject": auth.subject,
            "email": auth.user.email,
            "products": sorted(auth.user.product_access),
            "scopes": sorted(auth.scopes),
            "provider": auth.provider,
        }

    @app.get("/pro")
    async def pro(
        auth: AuthContext = Security(require_user, scopes=["product:pro"]),
    ) -> dict[str, object]:
        return {"subject": auth.subject}

    return app


async def call(
    verifier: TiunVerifier, path: str, token: str | None, **headers: str
) -> httpx.Response:
    """One request to our app (in process); the verifier's call to tiun is real HTTP."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    transport = httpx.ASGITransport(app=build_app(verifier))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        return await client.get(path, headers=headers)


def make(fake: FakeTiun, url: str, **kwargs: Any) -> TiunVerifier:
    kwargs.setdefault("api_key", fake.api_key)
    return TiunVerifier(environment=fake.environment, api_url=url, **kwargs)


async def test_an_authenticated_user_gets_a_context(live: FakeTiun, live_url: str) -> None:
    token = live.issue_token("u_1", email="a@example.com", product_access=["pro", "api"])
    verifier = make(live, live_url)
    try:
        response = await call(verifier, "/me", token)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "subject": "u_1",
            "email": "a@example.com",
            "products": ["api", "pro"],
            "scopes": ["product:api", "product:pro"],
            "provider": "tiun",
        }
        context = await verifier.verify(Credentials(bearer=token))
        assert context is not None and context.credential == "bearer"
        assert context.claims["userId"] == "u_1"
        assert context.expires_at is not None
        assert live.calls == 1 and live.keys_seen == [True]  # the second was a cache hit
    finally:
        await verifier.aclose()


@pytest.mark.parametrize("case", ["signed_out", "forged", "expired", "other_environment"])
async def test_not_authenticated_is_401_invalid_token(
    case: str, live: FakeTiun, live_url: str, sandbox_server: tuple[FakeTiun, str]
) -> None:
    token = live.issue_token("u_2")
    if case == "signed_out":
        live.sign_out("u_2")
    elif case == "forged":
        head, payload, signature = token.split(".")
        # change one character in the middle: still canonical base64url, so tiun is asked
        swapped = "B" if signature[10] == "A" else "A"
        token = f"{head}.{payload}.{signature[:10]}{swapped}{signature[11:]}"
    elif case == "expired":
        token = live.issue_token("u_2", ttl=-1)
    else:
        token = sandbox_server[0].issue_token("u_2")
    verifier = make(live, live_url)
    try:
        response = await call(verifier, "/me", token)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert live.calls == 1
        await call(verifier, "/me", token)
        assert live.calls == 2  # refusals are never cached
    finally:
        await verifier.aclose()
        live.add_user("u_2")


async def test_a_bad_api_key_is_503_with_a_loud_line_naming_the_variable(
    live: FakeTiun, live_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = live.issue_token("u_3")
    bad_key = "tiun_live_WRONG_0123456789abcdef"
    verifier = make(live, live_url, api_key=bad_key)
    try:
        with caplog.at_level(logging.DEBUG):
            response = await call(verifier, "/me", token)
            again = await call(verifier, "/me", live.issue_token("u_3"))
        assert response.status_code == 503 and again.status_code == 503
        assert response.json()["error"] == "provider_unavailable"
        assert int(response.headers["retry-after"]) >= 1
        assert "www-authenticate" not in response.headers  # not blamed on the user
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1  # loud, but once a minute rather than once a request
        assert "AUTHGATE_TIUN__API_KEY" in errors[0].getMessage()
        assert "live" in errors[0].getMessage()
        assert bad_key not in caplog.text and bad_key[10:] not in caplog.text
        assert token not in caplog.text
        assert live.keys_seen == [False, False]
    finally:
        await verifier.aclose()


async def test_a_sandbox_key_on_live_is_refused_and_explained(
    live: FakeTiun,
    live_url: str,
    sandbox_server: tuple[FakeTiun, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox, sandbox_url = sandbox_server
    sandbox_key = sandbox.api_key
    verifier = make(live, live_url, api_key=sandbox_key)
    control = make(sandbox, sandbox_url)
    try:
        with caplog.at_level(logging.INFO):
            response = await call(verifier, "/me", live.issue_token("u_4"))
        assert response.status_code == 503
        line = next(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
        assert "AUTHGATE_TIUN__API_KEY" in line and "other environment" in line
        assert sandbox_key not in caplog.text
        # the same key is fine where it belongs
        assert (await call(control, "/me", sandbox.issue_token("s_1"))).status_code == 200
    finally:
        await verifier.aclose()
        await control.aclose()


async def test_a_hanging_tiun_is_503_within_the_deadline(live: FakeTiun, live_url: str) -> None:
    live.hang_seconds = 5
    verifier = make(live, live_url, timeout=0.5)
    try:
        started = time.monotonic()
        with anyio.fail_after(4):
            response = await call(verifier, "/me", live.issue_token("u_5"))
        assert response.status_code == 503 and "retry-after" in response.headers
        assert time.monotonic() - started < 4
    finally:
        await verifier.aclose()


@pytest.mark.parametrize("status", [500, 502, 503, 429, 404, 400])
async def test_error_statuses_are_503_and_recovery_follows(
    status: int, live: FakeTiun, live_url: str
) -> None:
    token = live.issue_token("u_6")
    live.fail(status, times=1)
    verifier = make(live, live_url)
    try:
        failed = await call(verifier, "/me", token)
        assert failed.status_code == 503 and failed.json()["error"] == "provider_unavailable"
        assert (await call(verifier, "/me", token)).status_code == 200  # the error was not cached
        assert live.calls == 2
    finally:
        await verifier.aclose()


async def test_malformed_json_is_503(live: FakeTiun, live_url: str) -> None:
    live.garbage = True
    verifier = make(live, live_url)
    try:
        assert (await call(verifier, "/me", live.issue_token("u_7"))).status_code == 503
    finally:
        await verifier.aclose()


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"isAuthenticated": "true", "userInfo": {"userId": "u"}},
        {"isAuthenticated": True},
        {"isAuthenticated": True, "userInfo": {"userId": ""}},
        {"isAuthenticated": True, "userInfo": {"userId": 7}},
        {"isAuthenticated": True, "userInfo": {"userId": "u", "email": 1}},
        {"isAuthenticated": True, "userInfo": {"userId": "u", "productAccess": "pro"}},
        {"isAuthenticated": True, "userInfo": {"userId": "u", "productAccess": [1]}},
        {"isAuthenticated": True, "userInfo": {"userId": "u", "productAccess": {"pro": "yes"}}},
    ],
)
async def test_json_of_the_wrong_shape_is_503(body: Any, live: FakeTiun, live_url: str) -> None:
    live.answer(body)
    verifier = make(live, live_url)
    try:
        assert (await call(verifier, "/me", live.issue_token("u_8"))).status_code == 503
    finally:
        await verifier.aclose()


async def test_extra_fields_are_tolerated(live: FakeTiun, live_url: str) -> None:
    live.answer(
        {
            "isAuthenticated": True,
            "plan": "x",
            "userInfo": {"userId": "u_9", "email": None, "avatar": "https://a.example/p.png"},
        }
    )
    verifier = make(live, live_url)
    try:
        response = await call(verifier, "/me", live.issue_token("u_9"))
        assert response.status_code == 200
        assert response.json()["products"] == [] and response.json()["email"] is None
    finally:
        await verifier.aclose()


async def test_a_redirect_is_503_and_the_key_never_travels(
    live: FakeTiun, live_url: str, sandbox_server: tuple[FakeTiun, str]
) -> None:
    elsewhere, elsewhere_url = sandbox_server  # stands for "another host"
    elsewhere.reset()
    live.redirect_to = elsewhere_url + "/live_api/s2s/v1/users/verification"
    verifier = make(live, live_url)
    try:
        response = await call(verifier, "/me", live.issue_token("u_10"))
        assert response.status_code == 503
        assert elsewhere.calls == 0
    finally:
        await verifier.aclose()


@pytest.mark.parametrize(
    "access",
    [["pro"], {"pro": True, "api": False}, ["api"], {"pro": False, "api": True}, [], {}],
)
async def test_product_access_in_both_shapes(
    access: list[str] | dict[str, bool], live: FakeTiun, live_url: str
) -> None:
    token = live.issue_token("u_11", product_access=access)
    has_pro = "pro" in access and (isinstance(access, list) or access["pro"])
    verifier = make(live, live_url)
    try:
        response = await call(verifier, "/pro", token)
        if has_pro:
            assert response.status_code == 200
        else:
            assert response.status_code == 403
            assert response.json()["error"] == "insufficient_scope"
            challenge = response.headers["www-authenticate"]
            assert 'error="insufficient_scope"' in challenge and 'scope="product:pro"' in challenge
        me = (await call(verifier, "/me", token)).json()
        assert ("pro" in me["products"]) is has_pro
        assert "api" not in me["products"] or "product:api" in me["scopes"]
    finally:
        await verifier.aclose()


def test_parse_product_access() -> None:
    assert parse_product_access(None) == frozenset()
    assert parse_product_access(["a", "b"]) == {"a", "b"}
    assert parse_product_access({"a": True, "b": False}) == {"a"}
    for bad in ("a", 1, [None], [""], {"a": 1}):
        with pytest.raises(ValueError):
            parse_product_access(bad)


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.",  # unsigned
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.c2ln",  # alg none
        "eyJhbGciOiJIUzI1NiJ9." + "A" * 5000 + ".c2ln",  # too long
        "bm90IGpzb24.bm90IGpzb24.c2ln",  # segments that are not JSON
    ],
)
async def test_tokens_not_of_tiuns_shape_are_refused_without_a_call(
    token: str, live: FakeTiun, live_url: str
) -> None:
    verifier = make(live, live_url)
    try:
        response = await call(verifier, "/me", token)
        assert response.status_code == 401 and response.json()["error"] == "invalid_token"
        with pytest.raises(AuthenticationError):
            await verifier.verify(Credentials(bearer=token))
        assert live.calls == 0
    finally:
        await verifier.aclose()


async def test_no_bearer_is_not_tiuns(live: FakeTiun, live_url: str) -> None:
    verifier = make(live, live_url)
    try:
        assert await verifier.verify(Credentials(cookies={"authgate_session": "x"})) is None
        response = await call(verifier, "/me", None)
        assert response.status_code == 401 and response.json()["error"] == "not_authenticated"
        assert live.calls == 0
    finally:
        await verifier.aclose()


async def test_cache_life_with_an_injected_clock(live: FakeTiun, live_url: str) -> None:
    clock = FixedClock(time.time())
    verifier = make(live, live_url, clock=clock, cache_ttl=30)
    long_lived = live.issue_token("u_12", ttl=300)
    short_lived = live.issue_token("u_12", ttl=10)
    short_exp = json.loads(base64.urlsafe_b64decode(short_lived.split(".")[1] + "=="))["exp"]
    try:
        for _ in range(3):
            await verifier.verify(Credentials(bearer=long_lived))
        assert live.calls == 1
        clock.advance(29)
        await verifier.verify(Credentials(bearer=long_lived))
        assert live.calls == 1
        clock.advance(1)  # 30 s: the answer is too old
        await verifier.verify(Credentials(bearer=long_lived))
        assert live.calls == 2

        clock.now = short_exp - 10  # (the token's own clock, to the second)
        await verifier.verify(Credentials(bearer=short_lived))
        assert live.calls == 3
        clock.advance(9)
        await verifier.verify(Credentials(bearer=short_lived))
        assert live.calls == 3
        clock.advance(2)  # past the token's exp (the fake's real clock still accepts it)
        await verifier.verify(Credentials(bearer=short_lived))
        assert live.calls == 4
    finally:
        await verifier.aclose()


async def test_fifty_concurrent_requests_with_one_token_make_one_call(
    live: FakeTiun, live_url: str
) -> None:
    live.hang_seconds = 0.2  # every request arrives while the first call is still out
    token = live.issue_token("u_13", product_access=["pro"])
    verifier = make(live, live_url)
    try:
        with serve(build_app(verifier)) as app_url:
            limits = httpx.Limits(max_connections=50)
            async with httpx.AsyncClient(base_url=app_url, limits=limits, timeout=30) as client:
                responses = await asyncio.gather(
                    *(
                        client.get("/pro", headers={"Authorization": f"Bearer {token}"})
                        for _ in range(50)
                    )
                )
        assert [r.status_code for r in responses] == [200] * 50
        assert live.calls == 1
    finally:
        await verifier.aclose()


async def test_hundreds_of_connections_one_call_per_token(live: FakeTiun, live_url: str) -> None:
    """300 concurrent connections over 30 tokens, our app and tiun both real servers."""
    live.hang_seconds = 0.1
    tokens = [live.issue_token(f"load_{n}", product_access=["pro"]) for n in range(30)]
    verifier = make(live, live_url)
    try:
        with serve(build_app(verifier)) as app_url:
            limits = httpx.Limits(max_connections=300)
            async with httpx.AsyncClient(base_url=app_url, limits=limits, timeout=60) as client:

                async def one(i: int) -> tuple[int, str]:
                    token = tokens[i % len(tokens)]
                    response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
                    return response.status_code, response.json().get("subject", "")

                with anyio.fail_after(90):
                    results = await asyncio.gather(*(one(i) for i in range(300)))
        assert all(status == 200 for status, _ in results)
        assert all(subject == f"load_{i % 30}" for i, (_, subject) in enumerate(results))
        assert live.calls == 30
    finally:
        await verifier.aclose()


async def test_the_request_is_what_the_document_says(live_url: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"isAuthenticated": True, "userInfo": {"userId": "u"}})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    fake = FakeTiun("live")
    token = fake.issue_token("u")
    verifier = TiunVerifier("k3y", environment="live", http_client=client)
    try:
        await verifier.verify(Credentials(bearer=token))
    finally:
        await verifier.aclose()
        await client.aclose()
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "https://api.tiun.live/live_api/s2s/v1/users/verification"
    assert request.headers["x-tiun-api-key"] == "k3y"
    assert json.loads(request.content) == {"userVerificationToken": token}


async def test_provider_errors_reach_every_waiter(live: FakeTiun, live_url: str) -> None:
    live.hang_seconds = 0.2
    live.fail(502)
    token = live.issue_token("u_14")
    verifier = make(live, live_url)
    try:
        outcomes = await asyncio.gather(
            *(verifier.verify(Credentials(bearer=token)) for _ in range(20)),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, ProviderError) for outcome in outcomes)
        assert live.calls == 1
    finally:
        await verifier.aclose()
