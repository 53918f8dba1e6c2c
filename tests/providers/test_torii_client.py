"""ToriiClient over real HTTP against the fake torii: every method, its answers and its errors."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr

from fastapi_authgate.errors import ConfigurationError, ProviderError
from fastapi_authgate.providers.torii import (
    ToriiAPIError,
    ToriiClient,
    ToriiSession,
    ToriiUser,
)
from fastapi_authgate.testing import FakeTorii
from tests.providers.torii_support import SECRET, fake, served

__all__ = ["fake", "served"]

Call = Callable[[ToriiClient, str], Awaitable[object]]

# Every client method, as a call against one existing user id.
METHODS: dict[str, Call] = {
    "users.get": lambda c, uid: c.users.get(uid),
    "users.list": lambda c, uid: c.users.list(limit=10),
    "users.create": lambda c, uid: c.users.create(email="new@example.com"),
    "users.ban": lambda c, uid: c.users.ban(uid),
    "users.update": lambda c, uid: c.users.update(uid, name="Ada"),
    "sessions.list_for_user": lambda c, uid: c.sessions.list_for_user(uid),
    "sessions.revoke_all_for_user": lambda c, uid: c.sessions.revoke_all_for_user(uid),
}


def client_for(fake: FakeTorii, *, secret: str = SECRET, timeout: float = 5) -> ToriiClient:
    return ToriiClient(secret_key=secret, api_url=fake.issuer, timeout=timeout)


@pytest.mark.anyio
async def test_get_returns_a_typed_frozen_user(fake: FakeTorii) -> None:
    stored = fake.add_user(
        "ada@example.com",
        name="Ada",
        address={"city": "London"},
        emailVerified=True,
        createdAt="2026-01-02T03:04:05Z",
        updatedAt=1767225600,
        futureField="kept",
    )
    async with client_for(fake) as torii:
        user = await torii.users.get(stored["id"])
    assert isinstance(user, ToriiUser)
    assert (user.id, user.email, user.name, user.phone) == (
        stored["id"],
        "ada@example.com",
        "Ada",
        None,
    )
    assert user.address == {"city": "London"}
    assert user.email_verified is True and user.banned is False
    assert user.environment_id == "env_test"
    assert user.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert user.updated_at == datetime.fromtimestamp(1767225600, tz=UTC)
    assert user.raw["futureField"] == "kept"  # unknown fields are ignored, not lost
    with pytest.raises(AttributeError):
        user.name = "Eve"  # type: ignore[misc]
    with pytest.raises(TypeError):
        user.raw["id"] = "x"  # type: ignore[index]
    [request] = fake.received
    assert (request.method, request.path) == ("GET", f"/v1/users/{stored['id']}")
    assert request.authorization == f"Bearer {SECRET}"


@pytest.mark.anyio
async def test_update_is_tri_state_on_the_wire(fake: FakeTorii) -> None:
    user = fake.add_user("ada@example.com", name="A", phone="+441234567", address="1 Road")
    async with client_for(fake) as torii:
        updated = await torii.users.update(user["id"], name="Ada", phone=None)
        untouched = await torii.users.update(user["id"])
        moved = await torii.users.update(user["id"], address={"city": "Paris"})
    first, second, third = (r for r in fake.received if r.method == "PATCH")
    # a value sets, None is sent as JSON null, an omitted argument is absent
    assert first.json == {"name": "Ada", "phone": None}
    assert b'"phone":null' in first.raw_body.replace(b" ", b"")
    assert b"address" not in first.raw_body
    assert second.json == {}
    assert third.json == {"address": {"city": "Paris"}}
    # and the server did what each means
    assert (updated.name, updated.phone, updated.address) == ("Ada", None, "1 Road")
    assert (untouched.name, untouched.phone, untouched.address) == ("Ada", None, "1 Road")
    assert (moved.name, moved.phone, moved.address) == ("Ada", None, {"city": "Paris"})


@pytest.mark.anyio
async def test_create_sends_only_given_fields(fake: FakeTorii) -> None:
    async with client_for(fake) as torii:
        plain = await torii.users.create(email="a@example.com")
        full = await torii.users.create(email="b@example.com", name="Bo", phone=None)
        with pytest.raises(ToriiAPIError) as taken:
            await torii.users.create(email="a@example.com")
    bodies = [r.json for r in fake.received if r.method == "POST"]
    assert bodies == [
        {"email": "a@example.com"},
        {"email": "b@example.com", "name": "Bo", "phone": None},
        {"email": "a@example.com"},
    ]
    assert plain.id in fake.users and full.name == "Bo"
    assert (taken.value.status, taken.value.code) == (409, "email_taken")


@pytest.mark.anyio
async def test_pagination_to_the_end(fake: FakeTorii) -> None:
    ids = [fake.add_user(f"u{i}@example.com")["id"] for i in range(23)]
    async with client_for(fake) as torii:
        first = await torii.users.list(limit=10)
        assert len(first.data) == 10 and first.next_cursor is not None
        second = await torii.users.list(limit=10, cursor=first.next_cursor)
        assert [u.id for u in second.data] == ids[10:20]
        fake.reset_counters()
        pages = [page async for page in torii.users.pages(limit=10)]
        assert [len(p.data) for p in pages] == [10, 10, 3]
        assert pages[-1].next_cursor is None
        assert fake.calls["GET /v1/users"] == 3
        everyone = [user.id async for user in torii.users.iterate(limit=7)]
    assert everyone == ids
    queries = [r.query for r in fake.received if r.path == "/v1/users"]
    assert queries[0] == "limit=10" and queries[1].startswith("limit=10&cursor=c_")


@pytest.mark.anyio
@pytest.mark.parametrize("limit", [0, 101, -1])
async def test_list_limit_is_checked_before_any_call(fake: FakeTorii, limit: int) -> None:
    async with client_for(fake) as torii:
        with pytest.raises(ValueError, match="1 to 100"):
            await torii.users.list(limit=limit)
    assert fake.received == []


@pytest.mark.anyio
async def test_a_repeating_cursor_is_refused_not_followed_forever() -> None:
    calls = 0

    def loop(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, json={"data": [], "nextCursor": "same"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(loop)) as http:
        torii = ToriiClient(secret_key=SECRET, http_client=http)
        with pytest.raises(ProviderError):
            async for _ in torii.users.iterate():
                pass
    assert calls == 2


@pytest.mark.anyio
async def test_ban_sessions_and_revoke_all(fake: FakeTorii) -> None:
    user = fake.add_user("ada@example.com")
    other = fake.add_user("bob@example.com")
    fake.start_session(user["id"])
    fake.start_session(user["id"])
    fake.start_session(other["id"])
    async with client_for(fake) as torii:
        banned = await torii.users.ban(user["id"])
        sessions = await torii.sessions.list_for_user(user["id"])
        revoked = await torii.sessions.revoke_all_for_user(user["id"])
        again = await torii.sessions.revoke_all_for_user(user["id"])
        after = await torii.sessions.list_for_user(user["id"])
        bobs = await torii.sessions.list_for_user(other["id"])
    assert banned.banned is True and fake.users[user["id"]]["banned"] is True
    assert len(sessions) == 2 and all(isinstance(s, ToriiSession) for s in sessions)
    assert {s.status for s in sessions} == {"active"} and sessions[0].user_id == user["id"]
    assert sessions[0].expires_at is not None and sessions[0].expires_at > datetime.now(UTC)
    assert (revoked, again) == (2, 0)
    assert {s.status for s in after} == {"revoked"}
    assert [s.status for s in bobs] == ["active"]


# -- errors, for every method ------------------------------------------------------------


@pytest.fixture
def user_id(fake: FakeTorii) -> str:
    return str(fake.add_user("existing@example.com")["id"])


@pytest.mark.anyio
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("status", "code"), [(400, "bad_request"), (404, "user_not_found"), (500, "boom"), (503, None)]
)
async def test_status_answers_raise_torii_api_errors(
    fake: FakeTorii, user_id: str, method: str, status: int, code: str | None
) -> None:
    fake.fail(status, error=code, message="said torii" if code else None)
    async with client_for(fake) as torii:
        with pytest.raises(ToriiAPIError) as raised:
            await METHODS[method](torii, user_id)
    error = raised.value
    assert isinstance(error, ProviderError)
    assert (error.status, error.code) == (status, code)
    assert error.body == ({"error": code, "message": "said torii"} if code else None)
    assert error.message == ("said torii" if code else None)


@pytest.mark.anyio
@pytest.mark.parametrize("method", METHODS)
async def test_bad_secret_key_is_401(fake: FakeTorii, user_id: str, method: str) -> None:
    async with client_for(fake, secret="sk_live_someone_elses_key_1") as torii:
        with pytest.raises(ToriiAPIError) as raised:
            await METHODS[method](torii, user_id)
    assert (raised.value.status, raised.value.code) == (401, "invalid_secret_key")
    assert fake.users[user_id]["banned"] is False  # nothing happened


@pytest.mark.anyio
@pytest.mark.parametrize(
    "method",
    [
        "users.get",
        "users.ban",
        "users.update",
        "sessions.list_for_user",
        "sessions.revoke_all_for_user",
    ],
)
async def test_unknown_user_is_404(fake: FakeTorii, method: str) -> None:
    async with client_for(fake) as torii:
        with pytest.raises(ToriiAPIError) as raised:
            await METHODS[method](torii, "user_nobody")
    assert (raised.value.status, raised.value.code) == (404, "user_not_found")


@pytest.mark.anyio
@pytest.mark.parametrize("method", METHODS)
async def test_429_carries_retry_after(fake: FakeTorii, user_id: str, method: str) -> None:
    fake.fail(429, error="rate_limited", retry_after="17")
    async with client_for(fake) as torii:
        with pytest.raises(ToriiAPIError) as raised:
            await METHODS[method](torii, user_id)
    assert raised.value.status == 429
    assert raised.value.provider_retry_after == 17
    assert raised.value.retry_after == 17  # also what an unhandled one answers on the wire


@pytest.mark.anyio
@pytest.mark.parametrize("method", METHODS)
async def test_redirects_are_refused_not_followed(
    fake: FakeTorii, user_id: str, method: str
) -> None:
    fake.redirect(status=307)
    async with client_for(fake) as torii:
        with pytest.raises(ToriiAPIError) as raised:
            await METHODS[method](torii, user_id)
    assert raised.value.status == 307
    assert len(fake.received) == 1  # the secret never went anywhere else


@pytest.mark.anyio
@pytest.mark.parametrize("method", METHODS)
async def test_garbage_and_wrong_shapes_are_provider_errors(
    fake: FakeTorii, user_id: str, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with client_for(fake) as torii:
        fake.garbage()
        with pytest.raises(ProviderError) as garbage:
            await METHODS[method](torii, user_id)
        fake.wrong_shape()
        with pytest.raises(ProviderError) as shape:
            await METHODS[method](torii, user_id)
    assert type(garbage.value) is ProviderError and type(shape.value) is ProviderError
    assert "response is not JSON" in caplog.text
    assert f"torii {method} answered an unexpected body" in caplog.text


@pytest.mark.anyio
@pytest.mark.parametrize("method", METHODS)
async def test_timeouts_are_provider_errors_within_the_deadline(
    fake: FakeTorii, user_id: str, method: str
) -> None:
    fake.hang(5)
    async with client_for(fake, timeout=0.3) as torii:
        started = time.monotonic()
        with pytest.raises(ProviderError) as raised:
            await METHODS[method](torii, user_id)
        elapsed = time.monotonic() - started
    fake.heal()
    assert type(raised.value) is ProviderError
    assert elapsed < 4  # the deadline, not the server, ended the call


@pytest.mark.anyio
async def test_connection_refused_is_a_provider_error() -> None:
    torii = ToriiClient(secret_key=SECRET, api_url="http://127.0.0.1:9", timeout=2)
    with pytest.raises(ProviderError):
        await torii.users.get("user_1")
    await torii.aclose()


# -- the secret key and the ids ----------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        "sk_test_short",
        "sk_prod_0123456789abcdef",
        "pk_test_0123456789abcdef",
        "sk_test_0123456789abcdef!",
        "sk_test_0123456789abcde f",
        " sk_test_0123456789abcdef",
        "sk_live_0123456789abcdef\n",
    ],
)
def test_malformed_secret_keys_are_refused_without_echoing_them(key: str) -> None:
    with pytest.raises(ConfigurationError, match="sk_test_ or sk_live_") as raised:
        ToriiClient(secret_key=key)
    assert "AUTHGATE_TORII__SECRET_KEY" in str(raised.value)
    if key:
        assert key.strip() not in str(raised.value)
    if key.startswith("pk_"):
        assert "publishable key" in str(raised.value)


@pytest.mark.anyio
async def test_the_secret_key_never_shows(
    fake: FakeTorii, user_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk_live_do_not_leak_this_0123"
    torii = ToriiClient(secret_key=SecretStr(secret), api_url=fake.issuer)
    assert secret not in repr(torii) and "live" in repr(torii)
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    injections: list[Callable[[], None]] = [lambda: fake.fail(500), fake.garbage, fake.redirect]
    for inject in injections:
        inject()
        try:
            await torii.users.get(user_id)
        except ProviderError as exc:
            shown += [str(exc), repr(exc), repr(exc.__dict__), repr(exc.__cause__)]
    with pytest.raises(ToriiAPIError):  # our key is not the fake's: a 401 with its body
        await torii.users.get(user_id)
    await torii.aclose()
    assert len(shown) == 12
    assert all(secret not in text for text in shown)
    assert secret not in caplog.text
    assert fake.received[0].authorization == f"Bearer {secret}"  # it was sent, to torii only


@pytest.mark.anyio
async def test_ids_are_one_path_segment() -> None:
    seen: list[bytes] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        return httpx.Response(404, json={"error": "user_not_found"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as http:
        torii = ToriiClient(secret_key=SECRET, http_client=http)
        for hostile in ("a/b", "x/../../admin", "a?b=c", "%2e%2e"):
            with pytest.raises(ToriiAPIError):
                await torii.users.ban(hostile)
        for refused in ("", ".", ".."):
            with pytest.raises(ValueError):
                await torii.users.get(refused)
    assert seen == [
        b"/v1/users/a%2Fb/ban",
        b"/v1/users/x%2F..%2F..%2Fadmin/ban",
        b"/v1/users/a%3Fb%3Dc/ban",
        b"/v1/users/%252e%252e/ban",
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://api.torii.example", "must use https"),
        ("ftp://api.torii.example", r"http\(s\) URL"),
        ("https://api.torii.example/?k=1", "query"),
        ("https://user:pw@api.torii.example", "credentials"),
        ("not a url", r"http\(s\) URL"),
    ],
)
def test_bad_api_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        ToriiClient(secret_key=SECRET, api_url=url)
    assert "AUTHGATE_TORII__API_URL" in str(raised.value)


def test_defaults_and_local_http() -> None:
    assert ToriiClient(secret_key=SECRET).api_url == "https://api.torii.so"
    assert ToriiClient(secret_key=SECRET, api_url="http://localhost:8080/").api_url == (
        "http://localhost:8080"
    )
    with pytest.raises(ConfigurationError):
        ToriiClient(secret_key=SECRET, timeout=0)


def test_error_bodies_are_json_values(fake: FakeTorii) -> None:
    # the fake's error body is what WIRE.md fixes: {"error", "message"}
    fake.fail(418, error="teapot", message="short and stout")
    response = httpx.get(fake.issuer + "/v1/users", headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status_code == 418
    assert json.loads(response.content) == {"error": "teapot", "message": "short and stout"}


@pytest.mark.anyio
async def test_hundreds_of_concurrent_calls_share_one_client(fake: FakeTorii) -> None:
    users = [fake.add_user(f"c{i}@example.com") for i in range(250)]
    async with client_for(fake, timeout=60) as torii:
        answers = await asyncio.gather(*(torii.users.get(u["id"]) for u in users))
    assert [a.email for a in answers] == [u["email"] for u in users]
    assert (
        sum(count for call, count in fake.calls.items() if call.startswith("GET /v1/users/")) == 250
    )
