"""InAIAuthClient against the fake InAI over real HTTP: every method, its answers and its errors."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import httpx
import jwt as pyjwt
import pytest

from fastapi_authgate.errors import ConfigurationError, ProviderError, ProviderResponseError
from fastapi_authgate.providers.inai_client import InAIAuthClient
from fastapi_authgate.providers.inai_models import (
    InAIApiKey,
    InAIApplication,
    InAIAuthError,
    InAITokens,
    InAIUser,
    MFARequired,
)
from fastapi_authgate.testing import FakeInAI
from tests.servers import serve

KEY = "pk_test_fakeinai00000000"
Call = Callable[[InAIAuthClient], Awaitable[Any]]


@pytest.fixture(scope="module")
def fake_server() -> Iterator[tuple[FakeInAI, str]]:
    fake = FakeInAI(publishable_key=KEY)
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(fake_server: tuple[FakeInAI, str]) -> Iterator[FakeInAI]:
    fake_server[0].reset()
    yield fake_server[0]
    fake_server[0].reset()


@pytest.fixture
async def client(fake_server: tuple[FakeInAI, str]) -> AsyncIterator[InAIAuthClient]:
    async with InAIAuthClient(publishable_key=KEY, api_url=fake_server[1], timeout=3) as client:
        yield client


def claims(token: str) -> dict[str, Any]:
    """The claims of a token, read without verification (PyJWT) to check what the fake minted."""
    return dict(pyjwt.decode(token, options={"verify_signature": False}))


def tokens(result: object) -> InAITokens:
    assert isinstance(result, InAITokens)
    return result


# -- app user auth ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_register_verify_email_and_get_me(fake: FakeInAI, client: InAIAuthClient) -> None:
    issued = await client.register("New@Example.com", "long-password", first_name="Ada")
    assert issued.token_type == "Bearer" and issued.expires_in == fake.token_ttl
    assert claims(issued.access_token)["type"] == "app_user"
    assert fake.bodies[-1] == (
        "POST /api/v1/auth/register",
        {"email": "New@Example.com", "password": "long-password", "firstName": "Ada"},
    )  # lastName was not given, so it is absent from the body
    me = await client.get_me(issued.access_token)
    assert isinstance(me, InAIUser)
    assert (me.email, me.first_name, me.last_name, me.email_verified) == (
        "new@example.com",
        "Ada",
        None,
        False,
    )
    mail = fake.outbox[-1]
    assert mail["kind"] == "verify_email" and mail["to"] == "new@example.com"
    await client.verify_email(mail["token"])
    assert (await client.get_me(issued.access_token)).email_verified is True
    with pytest.raises(InAIAuthError) as used:
        await client.verify_email(mail["token"])
    assert (used.value.status, used.value.code) == (400, "invalid_verification_token")
    with pytest.raises(InAIAuthError) as taken:
        await client.register("new@example.com", "long-password")
    assert taken.value.status == 409 and taken.value.message == "this email is already registered"
    assert "long-password" not in repr(issued) and issued.access_token not in repr(issued)


@pytest.mark.anyio
async def test_login_refresh_rotation_and_logout(fake: FakeInAI, client: InAIAuthClient) -> None:
    fake.add_account("lin@example.com", "pw-123456", roles=["admin"], permissions=["users:read"])
    first = tokens(await client.login("lin@example.com", "pw-123456"))
    assert claims(first.access_token)["roles"] == ["admin"]
    assert claims(first.access_token)["permissions"] == ["users:read"]
    assert first.refresh_token is not None
    second = await client.refresh(first.refresh_token)
    assert second.refresh_token not in (None, first.refresh_token)
    with pytest.raises(InAIAuthError) as reused:  # refresh tokens are single use
        await client.refresh(first.refresh_token)
    assert (reused.value.status, reused.value.code) == (401, "invalid_refresh_token")
    assert second.refresh_token is not None
    await client.logout(second.refresh_token)  # a 204
    with pytest.raises(InAIAuthError):
        await client.refresh(second.refresh_token)
    with pytest.raises(InAIAuthError) as wrong:
        await client.login("lin@example.com", "wrong")
    assert wrong.value.status == 401 and wrong.value.body == {
        "error": "invalid_credentials",
        "message": "wrong email or password",
    }


@pytest.mark.anyio
async def test_login_needing_mfa_is_its_own_result(fake: FakeInAI, client: InAIAuthClient) -> None:
    fake.add_account("mfa@example.com", "pw-123456", mfa_code="424242")
    result = await client.login("mfa@example.com", "pw-123456")
    assert isinstance(result, MFARequired) and not isinstance(result, InAITokens)
    assert result.mfa_token not in repr(result)
    with pytest.raises(InAIAuthError) as wrong:
        await client.mfa_challenge(result.mfa_token, "000000")
    assert (wrong.value.status, wrong.value.code) == (401, "invalid_mfa_code")
    done = await client.mfa_challenge(result.mfa_token, "424242")
    assert claims(done.access_token)["email"] == "mfa@example.com"
    with pytest.raises(InAIAuthError):  # the ticket is spent
        await client.mfa_challenge(result.mfa_token, "424242")


@pytest.mark.anyio
async def test_set_active_organization(fake: FakeInAI, client: InAIAuthClient) -> None:
    fake.add_account("org@example.com", "pw-123456", organizations={"org_1": "owner"})
    signed_in = tokens(await client.login("org@example.com", "pw-123456"))
    assert "org_id" not in claims(signed_in.access_token)
    switched = await client.set_active_organization(signed_in.access_token, "org_1")
    assert (claims(switched.access_token)["org_id"], claims(switched.access_token)["org_role"]) == (
        "org_1",
        "owner",
    )
    assert fake.bodies[-1][1] == {"organization_id": "org_1"}
    with pytest.raises(InAIAuthError) as refused:
        await client.set_active_organization(signed_in.access_token, "org_2")
    assert (refused.value.status, refused.value.code) == (403, "not_a_member")


@pytest.mark.anyio
async def test_forgot_and_reset_password(fake: FakeInAI, client: InAIAuthClient) -> None:
    fake.add_account("pat@example.com", "old-password")
    sent = len(fake.outbox)
    await client.forgot_password("nobody@example.com")  # same answer, no mail
    assert len(fake.outbox) == sent
    await client.forgot_password("pat@example.com")
    mail = fake.outbox[-1]
    assert mail["kind"] == "reset" and mail["to"] == "pat@example.com"
    await client.reset_password(mail["token"], "new-password")
    assert isinstance(await client.login("pat@example.com", "new-password"), InAITokens)
    with pytest.raises(InAIAuthError):
        await client.login("pat@example.com", "old-password")
    with pytest.raises(InAIAuthError) as used:
        await client.reset_password(mail["token"], "third-password")
    assert used.value.code == "invalid_reset_token"


@pytest.mark.anyio
async def test_access_tokens_are_checked_by_the_api(fake: FakeInAI, client: InAIAuthClient) -> None:
    with pytest.raises(InAIAuthError) as forged:
        await client.get_me(fake.issue("u_x")[:-4] + "AAAA")
    assert (forged.value.status, forged.value.code) == (401, "invalid_token")
    with pytest.raises(InAIAuthError) as expired:
        await client.get_me(fake.issue("u_x", ttl=-10))
    assert expired.value.code == "token_expired"
    with pytest.raises(InAIAuthError) as wrong_kind:  # an app user's token on a platform route
        await client.platform_get_me(fake.issue("u_x"))
    assert wrong_kind.value.status == 403
    with pytest.raises(ValueError):
        await client.get_me("a\r\nX-Injected: 1")


# -- platform ---------------------------------------------------------------------------------


async def platform_token(fake: FakeInAI, client: InAIAuthClient) -> str:
    fake.add_account("root@example.com", "root-password", platform=True, mfa_code="135790")
    step = await client.platform_login("root@example.com", "root-password")
    assert isinstance(step, MFARequired)
    return (await client.platform_mfa_challenge(step.mfa_token, "135790")).access_token


@pytest.mark.anyio
async def test_platform_auth(fake: FakeInAI, client: InAIAuthClient) -> None:
    fake.add_account("ops@example.com", "ops-password", platform=True)
    signed_in = tokens(await client.platform_login("ops@example.com", "ops-password"))
    assert claims(signed_in.access_token)["type"] == "platform"
    with pytest.raises(InAIAuthError):  # an app login does not know platform accounts
        await client.login("ops@example.com", "ops-password")
    me = await client.platform_get_me(signed_in.access_token)
    assert me.email == "ops@example.com" and me.id.startswith("pu_")
    with pytest.raises(InAIAuthError) as app_route:
        await client.get_me(signed_in.access_token)
    assert app_route.value.status == 403
    assert signed_in.refresh_token is not None
    fresh = await client.platform_refresh(signed_in.refresh_token)
    assert fresh.refresh_token is not None
    await client.platform_logout(fresh.refresh_token)
    with pytest.raises(InAIAuthError):
        await client.platform_refresh(fresh.refresh_token)
    assert isinstance(await platform_token(fake, client), str)


@pytest.mark.anyio
async def test_applications(fake: FakeInAI, client: InAIAuthClient) -> None:
    token = await platform_token(fake, client)
    created = await client.create_application(token, name="Shop", slug="shop-1")
    assert isinstance(created, InAIApplication)
    assert (created.name, created.slug) == ("Shop", "shop-1")
    assert created in await client.list_applications(token)
    assert await client.get_application(token, created.id) == created
    renamed = await client.update_application(token, created.id, name="Shop 2")
    assert (renamed.name, renamed.slug) == ("Shop 2", "shop-1")
    assert fake.bodies[-1] == ("PATCH /api/platform/applications/{app_id}", {"name": "Shop 2"})
    with pytest.raises(ValueError):
        await client.update_application(token, created.id)
    with pytest.raises(InAIAuthError) as taken:
        await client.create_application(token, name="Other", slug="shop-1")
    assert taken.value.status == 409
    with pytest.raises(InAIAuthError) as missing:
        await client.get_application(token, "app_nope")
    assert (missing.value.status, missing.value.code) == (404, "application_not_found")
    stats = await client.get_application_stats(token, created.id)
    assert stats.data == {"totalUsers": 0, "activeApiKeys": 0}


@pytest.mark.anyio
async def test_app_users_pages(fake: FakeInAI, client: InAIAuthClient) -> None:
    token = await platform_token(fake, client)
    app = await client.create_application(token, name="Pages", slug="pages-1")
    for n in range(5):
        env = "env_live" if n % 2 == 0 else "env_test"
        user = await client.create_app_user(
            token, app.id, email=f"p{n}@example.com", password="pw-123456", environment_id=env
        )
        assert user.environment_id == env and user.email == f"p{n}@example.com"
    assert fake.bodies[-1][1] == {
        "email": "p4@example.com",
        "password": "pw-123456",
        "environmentId": "env_live",
    }
    first = await client.list_app_users(token, app.id, page=1, limit=2)
    assert (first.total, first.page, first.limit, len(first.data)) == (5, 1, 2, 2)
    last = await client.list_app_users(token, app.id, page=3, limit=2)
    assert [u.email for u in last.data] == ["p4@example.com"]
    live = await client.list_app_users(token, app.id, environment_id="env_live")
    assert live.total == 3 and {u.environment_id for u in live.data} == {"env_live"}
    with pytest.raises(InAIAuthError) as bad:
        await client.list_app_users(token, app.id, limit=1000)
    assert bad.value.status == 400
    with pytest.raises(InAIAuthError) as dup:
        await client.create_app_user(
            token, app.id, email="p0@example.com", password="x", environment_id="env_live"
        )
    assert dup.value.status == 409
    assert (await client.get_application_stats(token, app.id)).data["totalUsers"] == 5


@pytest.mark.anyio
async def test_api_keys_and_key_rotation(fake: FakeInAI, fake_server: tuple[FakeInAI, str]) -> None:
    async with InAIAuthClient(publishable_key=KEY, api_url=fake_server[1]) as client:
        token = await platform_token(fake, client)
        app = await client.create_application(token, name="Keys", slug="keys-1")
        made = await client.create_app_api_key(token, app.id, "ci", "env_live")
        assert isinstance(made, InAIApiKey) and made.key is not None and made.key not in repr(made)
        await client.create_app_api_key(token, app.id, "staging", "env_test")
        listed = await client.list_app_api_keys(token, app.id)
        assert {k.name for k in listed} == {"ci", "staging"} and all(k.key is None for k in listed)
        live = await client.list_app_api_keys(token, app.id, "env_live")
        assert [k.id for k in live] == [made.id]
        await client.revoke_app_api_key(token, app.id, made.id)  # a 204
        assert [k.name for k in await client.list_app_api_keys(token, app.id)] == ["staging"]
        with pytest.raises(InAIAuthError) as gone:
            await client.revoke_app_api_key(token, app.id, made.id)
        assert gone.value.status == 404
        fresh_key = await client.rotate_app_keys(token, app.id, "env_live")
        assert fresh_key.startswith("pk_test_")
    async with InAIAuthClient(publishable_key=fresh_key, api_url=fake_server[1]) as rotated:
        assert len(await rotated.list_applications(token)) >= 1


@pytest.mark.anyio
async def test_ids_cannot_steer_a_call_to_another_route(
    fake: FakeInAI, client: InAIAuthClient
) -> None:
    token = await platform_token(fake, client)
    before = fake.calls["POST /api/v1/auth/login"]
    with pytest.raises(InAIAuthError) as raised:
        await client.get_application(token, "../../v1/auth/login")
    assert raised.value.status == 404
    with pytest.raises(InAIAuthError):
        await client.revoke_app_api_key(token, "app_1", "../../../v1/auth/logout")
    assert fake.calls["POST /api/v1/auth/login"] == before
    for bad in ("", ".", ".."):
        with pytest.raises(ValueError):
            await client.get_application(token, bad)


# -- every method, every way it can fail --------------------------------------------------------

T = "header.payload.signature"
ALL_METHODS: dict[str, Call] = {
    "login": lambda c: c.login("a@example.com", "pw"),
    "register": lambda c: c.register("a@example.com", "pw", last_name="L"),
    "mfa_challenge": lambda c: c.mfa_challenge("mfa_x", "123456"),
    "refresh": lambda c: c.refresh("rt_x"),
    "logout": lambda c: c.logout("rt_x"),
    "get_me": lambda c: c.get_me(T),
    "set_active_organization": lambda c: c.set_active_organization(T, "org_1"),
    "forgot_password": lambda c: c.forgot_password("a@example.com"),
    "reset_password": lambda c: c.reset_password("rp_x", "pw"),
    "verify_email": lambda c: c.verify_email("ve_x"),
    "platform_login": lambda c: c.platform_login("a@example.com", "pw"),
    "platform_refresh": lambda c: c.platform_refresh("rt_x"),
    "platform_logout": lambda c: c.platform_logout("rt_x"),
    "platform_mfa_challenge": lambda c: c.platform_mfa_challenge("mfa_x", "1"),
    "platform_get_me": lambda c: c.platform_get_me(T),
    "list_applications": lambda c: c.list_applications(T),
    "create_application": lambda c: c.create_application(T, name="n", slug="s"),
    "get_application": lambda c: c.get_application(T, "app_1"),
    "update_application": lambda c: c.update_application(T, "app_1", slug="s2"),
    "get_application_stats": lambda c: c.get_application_stats(T, "app_1"),
    "list_app_users": lambda c: c.list_app_users(T, "app_1", environment_id="e", page=2, limit=5),
    "create_app_user": lambda c: c.create_app_user(
        T, "app_1", email="a@example.com", password="pw", environment_id="e"
    ),
    "list_app_api_keys": lambda c: c.list_app_api_keys(T, "app_1", "e"),
    "create_app_api_key": lambda c: c.create_app_api_key(T, "app_1", "ci", "e"),
    "revoke_app_api_key": lambda c: c.revoke_app_api_key(T, "app_1", "key_1"),
    "rotate_app_keys": lambda c: c.rotate_app_keys(T, "app_1", "e"),
}


def test_the_table_covers_the_document() -> None:
    public = {
        name
        for name in vars(InAIAuthClient)
        if not name.startswith("_") and callable(getattr(InAIAuthClient, name))
    }
    assert len(ALL_METHODS) == 26
    assert public - {"aclose"} == set(ALL_METHODS)


async def outcomes(client: InAIAuthClient) -> dict[str, BaseException | Any]:
    """Run every method concurrently; each name maps to what it raised (or returned)."""
    results: dict[str, BaseException | Any] = {}

    async def one(name: str, call: Call) -> None:
        try:
            results[name] = await call(client)
        except Exception as exc:
            results[name] = exc

    async with anyio.create_task_group() as group:
        for name, call in ALL_METHODS.items():
            group.start_soon(one, name, call)
    return results


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 429, 500, 502, 503])
async def test_every_method_raises_inai_auth_error(
    fake: FakeInAI, client: InAIAuthClient, status: int
) -> None:
    headers = {"Retry-After": "7"} if status in (429, 503) else None
    body = {"error": f"code_{status}", "message": f"text {status}", "detail": {"n": 1}}
    fake.fail(status=status, body=body, headers=headers)
    for name, outcome in (await outcomes(client)).items():
        assert isinstance(outcome, InAIAuthError), (name, outcome)
        assert isinstance(outcome, ProviderResponseError | ProviderError)
        assert (outcome.status, outcome.message, outcome.code) == (
            status,
            f"text {status}",
            f"code_{status}",
        ), name
        assert outcome.body == body
        assert outcome.retry_after == (7 if headers else 5)
        assert outcome.error == "provider_unavailable"  # uncaught in a route: a 503


@pytest.mark.anyio
async def test_error_without_a_json_body(fake: FakeInAI, client: InAIAuthClient) -> None:
    fake.fail(status=502, body=b"<html>Bad gateway</html>")
    for name, outcome in (await outcomes(client)).items():
        assert isinstance(outcome, InAIAuthError), name
        assert outcome.status == 502 and outcome.body == "<html>Bad gateway</html>"
        assert outcome.message is None


@pytest.mark.anyio
@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirects_are_errors_never_followed(
    fake: FakeInAI, client: InAIAuthClient, status: int
) -> None:
    fake.fail(status=status, body={}, headers={"Location": "http://127.0.0.1:9/steal"})
    for name, outcome in (await outcomes(client)).items():
        assert isinstance(outcome, InAIAuthError), name
        assert outcome.status == status


@pytest.mark.anyio
async def test_malformed_json_on_success_is_a_provider_error(
    fake: FakeInAI, client: InAIAuthClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail(status=200, body=b'{"access_token": ')
    with caplog.at_level(logging.WARNING):
        results = await outcomes(client)
    for name, outcome in results.items():
        assert type(outcome) is ProviderError, (name, outcome)
    assert "not JSON" in caplog.text and KEY not in caplog.text


@pytest.mark.anyio
async def test_wrong_shape_on_success_is_a_provider_error(
    fake: FakeInAI, client: InAIAuthClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail(status=200, body={"unexpected": True})
    with caplog.at_level(logging.WARNING):
        results = await outcomes(client)
    nothing_to_read = {
        "logout",
        "forgot_password",
        "reset_password",
        "verify_email",
        "platform_logout",
        "revoke_app_api_key",
    }
    for name, outcome in results.items():
        if name in nothing_to_read:
            assert outcome is None, name
        else:
            assert type(outcome) is ProviderError, (name, outcome)
    assert "answered an unusable body" in caplog.text


@pytest.mark.anyio
async def test_timeout_is_a_provider_error(
    fake: FakeInAI, fake_server: tuple[FakeInAI, str]
) -> None:
    fake.hang(seconds=10)
    started = anyio.current_time()
    async with InAIAuthClient(publishable_key=KEY, api_url=fake_server[1], timeout=0.4) as client:
        results = await outcomes(client)
    assert anyio.current_time() - started < 5  # all 26 gave up together, well before 10 s
    for name, outcome in results.items():
        assert type(outcome) is ProviderError, (name, outcome)
        # the overall deadline, or httpx's own per-phase timeout when that fires first
        assert isinstance(outcome.__cause__, TimeoutError | httpx.TimeoutException), outcome


@pytest.mark.anyio
async def test_unreachable_api_is_a_provider_error() -> None:
    async with InAIAuthClient(publishable_key=KEY, api_url="http://127.0.0.1:9") as client:
        with pytest.raises(ProviderError) as raised:
            await client.login("a@example.com", "pw")
    assert not isinstance(raised.value, InAIAuthError)


@pytest.mark.anyio
async def test_requests_carry_the_documented_headers_and_bodies(
    fake: FakeInAI, client: InAIAuthClient, fake_server: tuple[FakeInAI, str]
) -> None:
    fake.fail(status=418, body={"error": "teapot"})  # every route records, then refuses
    fake.bodies.clear()
    await outcomes(client)
    assert dict(fake.bodies)["POST /api/v1/auth/mfa/challenge"] == {
        "mfa_token": "mfa_x",
        "code": "123456",
    }
    assert dict(fake.bodies)["POST /api/platform/applications/{app_id}/rotate-keys"] == {
        "environmentId": "e"
    }
    assert dict(fake.bodies)["POST /api/v1/auth/register"] == {
        "email": "a@example.com",
        "password": "pw",
        "lastName": "L",
    }
    fake.reset()
    async with InAIAuthClient(
        publishable_key="pk_live_notknowntothefake", api_url=fake_server[1]
    ) as stranger:
        with pytest.raises(InAIAuthError) as refused:
            await stranger.forgot_password("a@example.com")
    assert (refused.value.status, refused.value.code) == (401, "invalid_publishable_key")


def test_configuration_is_checked_and_the_key_never_shown() -> None:
    for bad in ("", "sk_live_abcdefgh", "pk_prod_abcdefgh", "pk_live_", "pk_test_a b c d e f"):
        with pytest.raises(ConfigurationError, match="AUTHGATE_INAI__PUBLISHABLE_KEY"):
            InAIAuthClient(publishable_key=bad)
    with pytest.raises(ConfigurationError, match="AUTHGATE_INAI__API_URL"):
        InAIAuthClient(publishable_key=KEY, api_url="ftp://apiauth.inai.dev")
    client = InAIAuthClient(publishable_key=KEY)
    assert client.api_url == "https://apiauth.inai.dev"
    assert KEY not in repr(client)


def test_auth_error_keeps_what_inai_said() -> None:
    error = InAIAuthError(429, "slow down", {"error": "rate_limited"}, retry_after=12)
    assert (error.status, error.message, error.body) == (
        429,
        "slow down",
        {"error": "rate_limited"},
    )
    assert error.retry_after == 12
    assert "slow down" not in error.description  # never forwarded to a client
    assert json.dumps(error.body)
