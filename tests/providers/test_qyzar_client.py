"""QyzarClient against the fake Qyzar over real HTTP: every method, and every way a call fails."""

from __future__ import annotations

import logging
import time
import traceback
from datetime import UTC, datetime

import jwt
import pytest
from fastapi import FastAPI, Request
from pydantic import SecretStr

from fastapi_authgate.errors import ConfigurationError, ProviderError
from fastapi_authgate.providers.qyzar import (
    UNSET,
    InvalidMetadataError,
    QyzarClient,
    QyzarError,
    QyzarSecretError,
    RequestEvent,
    verify_client_token,
)
from tests.providers.qyzar_support import Served, client, qyzar, served_qyzar
from tests.servers import serve

__all__ = ["client", "qyzar", "served_qyzar"]

pytestmark = pytest.mark.anyio


async def test_verify_session_from_cookies_sends_only_the_two_cookies(
    qyzar: Served, client: QyzarClient
) -> None:
    session = qyzar.fake.create_session(identifier="alice@example.com", metadata={"plan": "pro"})
    header = f"theme=dark; {session.cookie_header}; tracking=abc123"
    result = await client.verify_session_from_cookies(header)
    assert result.valid is True
    assert result.session_id == session.session_id
    assert result.identifier == "alice@example.com"
    assert result.metadata == {"plan": "pro"}
    assert result.expires_at == datetime.fromtimestamp(session.expires_at, UTC)
    sent = qyzar.fake.requests[-1]
    assert sent.method == "GET"
    assert sent.query["projectId"] == qyzar.fake.project_id
    assert "theme" not in sent.headers["cookie"] and "tracking" not in sent.headers["cookie"]
    assert sorted(part.split("=")[0] for part in sent.headers["cookie"].split("; ")) == [
        "qyzar_session_id",
        "qyzar_session_token",
    ]
    assert sent.headers["authorization"] == f"Bearer {qyzar.fake.project_secret}"


async def test_verify_session_from_a_cookie_mapping_and_the_pair(
    qyzar: Served, client: QyzarClient
) -> None:
    session = qyzar.fake.create_session()
    by_mapping = await client.verify_session_from_cookies({**session.cookies, "other": "x"})
    assert by_mapping.valid and by_mapping.identifier is None
    by_pair = await client.verify_session(
        session_id=session.session_id, session_token=session.session_token
    )
    assert by_pair.valid and by_pair.session_id == session.session_id
    assert qyzar.fake.requests[-1].method == "POST"
    assert qyzar.fake.requests[-1].body["sessionToken"] == session.session_token


async def test_invalid_sessions_say_why(qyzar: Served, client: QyzarClient) -> None:
    revoked = qyzar.fake.create_session()
    qyzar.fake.revoke_session(revoked.session_id)
    expired = qyzar.fake.create_session(ttl=-1)
    assert (await client.verify_session_from_cookies(revoked.cookies)).reason == "revoked"
    assert (await client.verify_session_from_cookies(expired.cookies)).reason == "expired"
    wrong = {**revoked.cookies, "qyzar_session_token": "forged"}
    result = await client.verify_session_from_cookies(wrong)
    assert (result.valid, result.reason) == (False, "unknown")


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("theme=dark", "missing"),
        ("qyzar_session_id=abc", "incomplete"),
        ("qyzar_session_id=a; qyzar_session_token=t; qyzar_session_id=b", "duplicate"),
        ("qyzar_session_id=a; qyzar_session_token=" + "t" * 5000, "malformed"),
        ("qyzar_session_id=a b; qyzar_session_token=t", "malformed"),
    ],
)
async def test_untrustworthy_cookies_are_refused_without_a_call(
    qyzar: Served, client: QyzarClient, header: str, reason: str
) -> None:
    result = await client.verify_session_from_cookies(header)
    assert (result.valid, result.reason) == (False, reason)
    assert qyzar.fake.calls["session-verify"] == 0


async def test_client_token_online_verifies_offline_and_back(
    qyzar: Served, client: QyzarClient
) -> None:
    session = qyzar.fake.create_session(ttl=300)
    minted = await client.create_client_token(
        session_id=session.session_id,
        session_token=session.session_token,
        metadata={"email": "  Alice@Example.COM ", "tier": {"level": 2}},
    )
    assert "client_token" not in repr(minted)
    assert minted.expires_at <= datetime.fromtimestamp(session.expires_at, UTC)
    offline = verify_client_token(
        minted.client_token, qyzar.fake.project_secret, qyzar.fake.project_id
    )
    assert offline.session_id == session.session_id
    assert offline.metadata == {"email": "alice@example.com", "tier": {"level": 2}}
    # PyJWT, an independent implementation, agrees on the format
    claims = jwt.decode(
        minted.client_token,
        qyzar.fake.project_secret,
        algorithms=["HS256"],
        audience=qyzar.fake.project_id,
        issuer="qyzar",
    )
    assert claims["sid"] == session.session_id
    online = await client.verify_client_token(minted.client_token)
    assert (online.valid, online.session_id) == (True, session.session_id)
    assert dict(online.metadata) == {"email": "alice@example.com", "tier": {"level": 2}}
    forged = minted.client_token[:-4] + ("AAAA" if minted.client_token[-4:] != "AAAA" else "BBBB")
    assert (await client.verify_client_token(forged)).valid is False


async def test_unbound_token_and_bad_metadata(qyzar: Served, client: QyzarClient) -> None:
    minted = await client.create_client_token(metadata={"identifier": "u1"})
    lifetime = minted.expires_at.timestamp() - time.time()
    assert 800 < lifetime <= 900
    assert (await client.verify_client_token(minted.client_token)).session_id is None
    with pytest.raises(InvalidMetadataError, match="phone"):
        await client.create_client_token(metadata={"phone": "555-1234"})
    assert qyzar.fake.calls["token"] == 1  # the bad metadata never left the process


async def test_generate_client_token_is_a_deprecated_alias(client: QyzarClient) -> None:
    with pytest.warns(DeprecationWarning, match="create_client_token"):
        minted = await client.generate_client_token(metadata={"identifier": "u1"})
    assert (await client.verify_client_token(minted.client_token)).valid


async def test_extra_metadata_patch_is_tri_state(qyzar: Served, client: QyzarClient) -> None:
    session = qyzar.fake.create_session(metadata={"email": "a@x.io", "phone": "+15550001", "k": 1})
    read = await client.get_extra_metadata(session_id=session.session_id)
    assert read.metadata == {"email": "a@x.io", "phone": "+15550001", "k": 1}
    patched = await client.patch_extra_metadata(
        session_id=session.session_id,
        metadata={"k": None, "new": {"deep": True}, "skipped": UNSET},
        email="b@x.io",
    )
    assert patched.metadata == {"email": "b@x.io", "phone": "+15550001", "new": {"deep": True}}
    assert qyzar.fake.requests[-1].body["metadata"] == {
        "k": None,
        "new": {"deep": True},
        "email": "b@x.io",
    }
    with pytest.raises(ValueError):
        await client.patch_extra_metadata(session_id=session.session_id, phone=UNSET)


async def test_unknown_session_metadata_is_a_404_error(client: QyzarClient) -> None:
    with pytest.raises(QyzarError) as caught:
        await client.get_extra_metadata(session_id="qs_nope")
    assert (caught.value.status, caught.value.code) == (404, "unknown_session")
    assert not isinstance(caught.value, QyzarSecretError)


async def test_rate_limit_check_counts_and_refuses(qyzar: Served, client: QyzarClient) -> None:
    override = {"limit": 2, "windowSeconds": 60}
    first = await client.check_rate_limit(ip="10.9.8.7", settings_override=override)
    second = await client.check_rate_limit(ip="10.9.8.7", settings_override=override)
    third = await client.check_rate_limit(ip="10.9.8.7", settings_override=override, analytics=True)
    assert (first.allowed, first.remaining, second.remaining) == (True, 1, 0)
    assert third.allowed is False and third.bucket == "ip"
    assert third.retry_after_seconds is not None and 0 < third.retry_after_seconds <= 60
    assert qyzar.fake.requests[-1].body["analytics"] is True
    by_email = await client.check_rate_limit(
        ip="10.9.8.6", metadata={"email": "a@x.io"}, settings_override={"limit": 1}
    )
    assert by_email.allowed
    again = await client.check_rate_limit(
        ip="10.9.8.5", metadata={"email": "a@x.io"}, settings_override={"limit": 1}
    )
    assert (again.allowed, again.bucket) == (False, "metadata:email")


async def test_log_user_api_request_one_or_many(qyzar: Served, client: QyzarClient) -> None:
    event = RequestEvent(
        method="GET", path="/api/me", status=200, duration_ms=3.5, at=1.8e9, session_id="s1"
    )
    assert (await client.log_user_api_request(events=event)).accepted == 1
    receipt = await client.log_user_api_request(events=[event, event.to_wire()])
    assert receipt.accepted == 2
    assert qyzar.fake.request_logs[-1]["durationMs"] == 3.5
    assert qyzar.fake.request_logs[-1]["sessionId"] == "s1"
    assert "subject" not in qyzar.fake.request_logs[-1]
    with pytest.raises(ValueError):
        await client.log_user_api_request(events=[])
    with pytest.raises(ValueError):
        await client.log_user_api_request(events=[event] * 501)


async def test_login_attempts_and_trusted_identifiers(qyzar: Served, client: QyzarClient) -> None:
    session = qyzar.fake.create_session()
    first = await client.log_attempted_login(
        session_id=session.session_id, identifier="alice", success=True
    )
    assert first.prior.attempts == 0 and first.last_login_at is None
    trusted = await client.add_ato_trusted_identifier(
        session_id=session.session_id, identifier="alice"
    )
    assert trusted.trusted_identifiers == ("alice",)
    second = await client.log_attempted_login(session_id=session.session_id, identifier="alice")
    assert second.score < first.score
    assert second.prior.identifiers == ("alice",) and second.prior.attempts == 1
    assert second.last_login_at is not None
    assert "success" not in qyzar.fake.requests[-1].body


# ---- failures -------------------------------------------------------------------------------


async def test_bad_secret_is_configuration_and_logged_loudly_without_the_secret(
    qyzar: Served, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "wrong-secret-value-0123456789"
    async with qyzar.client(secret=secret) as bad:
        assert secret not in repr(bad)
        with caplog.at_level(logging.ERROR), pytest.raises(QyzarSecretError) as caught:
            await bad.verify_session_from_cookies(qyzar.fake.create_session().cookies)
    error = caught.value
    assert (error.status, error.code) == (401, "invalid_project_secret")
    assert isinstance(error, ProviderError)
    assert "AUTHGATE_QYZAR__PROJECT_SECRET" in caplog.text
    rendered = "".join(traceback.format_exception(error)) + repr(error) + str(error)
    assert secret not in rendered and secret not in caplog.text


async def test_unknown_project_names_the_project_variable(
    qyzar: Served, caplog: pytest.LogCaptureFixture
) -> None:
    other = QyzarClient(
        api_url=qyzar.url,
        project_id="proj_other",
        resolve_project_secret=lambda _pid: qyzar.fake.project_secret,
    )
    async with other:
        with caplog.at_level(logging.ERROR), pytest.raises(QyzarSecretError) as caught:
            await other.check_rate_limit(ip="1.2.3.4")
    assert (caught.value.status, caught.value.code) == (404, "unknown_project")
    assert "AUTHGATE_QYZAR__PROJECT_ID" in caplog.text


async def test_async_resolver_per_project(qyzar: Served) -> None:
    asked: list[str] = []

    async def resolve(project_id: str) -> SecretStr:
        asked.append(project_id)
        return SecretStr(qyzar.fake.project_secret)

    async with QyzarClient(
        api_url=qyzar.url, project_id=qyzar.fake.project_id, resolve_project_secret=resolve
    ) as made:
        assert (await made.check_rate_limit(ip="7.7.7.7")).allowed
    assert asked == [qyzar.fake.project_id]


async def test_failing_resolver_is_a_secret_error(qyzar: Served) -> None:
    def resolve(project_id: str) -> str:
        raise KeyError("the vault is sealed")

    async with QyzarClient(
        api_url=qyzar.url, project_id="p", resolve_project_secret=resolve
    ) as made:
        with pytest.raises(QyzarSecretError):
            await made.check_rate_limit(ip="1.1.1.1")
    assert qyzar.fake.calls["rate-limit-check"] == 0


async def test_429_keeps_qyzar_retry_after(qyzar: Served, client: QyzarClient) -> None:
    qyzar.fake.fail(429, retry_after=17, body={"error": "rate_limited"}, times=1)
    with pytest.raises(QyzarError) as caught:
        await client.check_rate_limit(ip="1.2.3.4")
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (
        429,
        "rate_limited",
        17,
    )
    assert (await client.check_rate_limit(ip="1.2.3.4")).allowed  # the knob was used up


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_a_qyzar_error(qyzar: Served, client: QyzarClient, status: int) -> None:
    qyzar.fake.fail(status)
    with pytest.raises(QyzarError) as caught:
        await client.verify_session(session_id="s", session_token="t")
    assert caught.value.status == status and caught.value.code == "server_error"


async def test_timeout_respects_the_overall_deadline(qyzar: Served) -> None:
    qyzar.fake.hang(10)
    async with qyzar.client(timeout=0.3) as slow:
        started = time.monotonic()
        with pytest.raises(QyzarError) as caught:
            await slow.verify_session(session_id="s", session_token="t")
        elapsed = time.monotonic() - started
    assert caught.value.status is None
    assert elapsed < 5  # far below the 10 s hang: the deadline cut it


async def test_malformed_json_and_wrong_shapes_are_garbage(
    qyzar: Served, client: QyzarClient
) -> None:
    qyzar.fake.garbage(times=1)
    with pytest.raises(QyzarError):
        await client.verify_session(session_id="s", session_token="t")
    qyzar.fake.fail(200, body={"valid": "yes"}, times=1)
    with pytest.raises(QyzarError) as caught:
        await client.verify_session(session_id="s", session_token="t")
    assert caught.value.status == 200
    qyzar.fake.fail(200, body={"allowed": True, "limit": "ten"}, times=1)
    with pytest.raises(QyzarError):
        await client.check_rate_limit(ip="1.2.3.4")


async def test_redirect_to_another_host_is_not_followed(qyzar: Served, client: QyzarClient) -> None:
    elsewhere = FastAPI()
    seen: list[str | None] = []

    @elsewhere.api_route("/{path:path}", methods=["GET", "POST"])
    async def steal(request: Request) -> dict[str, bool]:
        seen.append(request.headers.get("authorization"))
        return {"valid": True}

    with serve(elsewhere) as other_url:
        for status in (302, 307, 308):
            qyzar.fake.redirect(f"{other_url}/steal", status=status, times=1)
            with pytest.raises(QyzarError) as caught:
                await client.verify_session(session_id="s", session_token="t")
            assert caught.value.status == status
    assert seen == []


def test_bad_configuration_fails_fast() -> None:
    def resolve(_pid: str) -> str:
        return "x"

    for url in ("ftp://qyzar.test", "https://user:pw@qyzar.test", "https://q.test/?a=1", "nope"):
        with pytest.raises(ConfigurationError, match="AUTHGATE_QYZAR__API_URL"):
            QyzarClient(api_url=url, project_id="p", resolve_project_secret=resolve)
    with pytest.raises(ConfigurationError, match="AUTHGATE_QYZAR__PROJECT_ID"):
        QyzarClient(api_url="https://q.test", project_id=" ", resolve_project_secret=resolve)
