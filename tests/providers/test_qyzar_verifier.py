"""QyzarSessionVerifier behind a real app, against the fake Qyzar over real HTTP.

The app under test runs in process (httpx's ASGI transport) or under uvicorn for the load test;
the fake Qyzar always listens on a socket, so every upstream call is real HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from fastapi_authgate import AuthContext, AuthGate, require_session, require_user
from fastapi_authgate.errors import ConfigurationError
from fastapi_authgate.providers.qyzar import QyzarSessionVerifier, verifier_from_settings
from fastapi_authgate.settings import AuthGateSettings
from fastapi_authgate.testing import FakeQyzarSession
from tests.conftest import FixedClock
from tests.providers.qyzar_support import Served, qyzar, served_qyzar
from tests.ratelimit.support import REDIS_URL, redis_answers
from tests.servers import serve

__all__ = ["qyzar", "served_qyzar"]

pytestmark = pytest.mark.anyio


def build_app(verifier: QyzarSessionVerifier) -> FastAPI:
    app = FastAPI()
    AuthGate(verifier).install(app)

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, object]:
        return {
            "subject": auth.subject,
            "session_id": auth.session_id,
            "provider": auth.provider,
            "metadata": dict(auth.user.metadata) if auth.user else None,
        }

    @app.get("/session")
    async def session(auth: AuthContext = Depends(require_session)) -> dict[str, object]:
        return {"session_id": auth.session_id}

    return app


@pytest.fixture
async def verifier(qyzar: Served, clocked: FixedClock) -> AsyncIterator[QyzarSessionVerifier]:
    made = QyzarSessionVerifier(qyzar.client(), clock=clocked)
    yield made
    await made.aclose()


@pytest.fixture
async def app_client(verifier: QyzarSessionVerifier) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(verifier))
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as made:
        yield made


@pytest.fixture
def clocked(qyzar: Served, clock: FixedClock) -> Iterator[FixedClock]:
    """The fake Qyzar reads the same clock as the verifier's cache."""
    original = qyzar.fake.clock
    qyzar.fake.clock = clock
    yield clock
    qyzar.fake.clock = original


def _cookie(session: FakeQyzarSession, extra: str = "") -> dict[str, str]:
    return {"cookie": session.cookie_header + extra}


async def test_cookies_make_a_session_context(qyzar: Served, app_client: httpx.AsyncClient) -> None:
    session = qyzar.fake.create_session(identifier="alice@example.com", metadata={"plan": "pro"})
    answer = await app_client.get("/me", headers=_cookie(session))
    assert answer.status_code == 200
    assert answer.json() == {
        "subject": "alice@example.com",
        "session_id": session.session_id,
        "provider": "qyzar",
        "metadata": {"plan": "pro"},
    }
    anonymous = qyzar.fake.create_session()
    answer = await app_client.get("/session", headers=_cookie(anonymous))
    assert answer.json() == {"session_id": anonymous.session_id}
    me = await app_client.get("/me", headers=_cookie(anonymous))
    assert me.json()["subject"] == anonymous.session_id  # no identifier: the session id


async def test_only_the_two_cookies_go_upstream(
    qyzar: Served, app_client: httpx.AsyncClient
) -> None:
    session = qyzar.fake.create_session()
    headers = {"cookie": f"csrftoken=abc; {session.cookie_header}; analytics=xyz"}
    assert (await app_client.get("/me", headers=headers)).status_code == 200
    sent = qyzar.fake.requests[-1].headers["cookie"]
    assert "csrftoken" not in sent and "analytics" not in sent
    assert sorted(part.split("=", 1)[0] for part in sent.split("; ")) == [
        "qyzar_session_id",
        "qyzar_session_token",
    ]


@pytest.mark.parametrize(
    "case",
    ["duplicate_id", "duplicate_token", "oversized", "token_only", "id_only", "bad_chars"],
)
async def test_smuggled_cookies_are_refused_without_a_call(
    qyzar: Served, app_client: httpx.AsyncClient, case: str
) -> None:
    session = qyzar.fake.create_session()
    other = qyzar.fake.create_session()
    sid, tok = session.session_id, session.session_token
    cookie = {
        "duplicate_id": f"qyzar_session_id={other.session_id}; {session.cookie_header}",
        "duplicate_token": f"{session.cookie_header}; qyzar_session_token={other.session_token}",
        "oversized": f"qyzar_session_id={sid}; qyzar_session_token={'t' * 5000}",
        "token_only": f"qyzar_session_token={tok}",
        "id_only": f"qyzar_session_id={sid}",
        "bad_chars": f"qyzar_session_id={sid} x; qyzar_session_token={tok}",
    }[case]
    answer = await app_client.get("/me", headers={"cookie": cookie})
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    assert qyzar.fake.calls["session-verify"] == 0


async def test_a_session_id_cookie_and_a_token_elsewhere_are_never_combined(
    qyzar: Served, app_client: httpx.AsyncClient
) -> None:
    session = qyzar.fake.create_session()
    for headers in (
        {"cookie": f"qyzar_session_id={session.session_id}"},
        {
            "cookie": f"qyzar_session_id={session.session_id}",
            "authorization": f"Bearer {session.session_token}",
        },
        {
            "cookie": f"qyzar_session_id={session.session_id}",
            "x-qyzar-session-token": session.session_token,
        },
        {"authorization": f"Bearer {session.session_token}"},
    ):
        assert (await app_client.get("/me", headers=headers)).status_code == 401
    assert qyzar.fake.calls["session-verify"] == 0


async def test_invalid_sessions_are_401(qyzar: Served, app_client: httpx.AsyncClient) -> None:
    session = qyzar.fake.create_session()
    qyzar.fake.revoke_session(session.session_id)
    forged = {"cookie": f"qyzar_session_id={session.session_id}; qyzar_session_token=forged"}
    for headers in (_cookie(session), forged):
        answer = await app_client.get("/me", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_token"
    assert qyzar.fake.calls["session-verify"] == 2  # refusals are not cached


async def test_cache_hit_miss_and_expiry(
    qyzar: Served, app_client: httpx.AsyncClient, clocked: FixedClock
) -> None:
    session = qyzar.fake.create_session(ttl=3600)
    for _ in range(5):
        assert (await app_client.get("/me", headers=_cookie(session))).status_code == 200
    assert qyzar.fake.calls["session-verify"] == 1
    clocked.advance(29)
    assert (await app_client.get("/me", headers=_cookie(session))).status_code == 200
    assert qyzar.fake.calls["session-verify"] == 1
    clocked.advance(2)  # past the 30 s cache life
    assert (await app_client.get("/me", headers=_cookie(session))).status_code == 200
    assert qyzar.fake.calls["session-verify"] == 2


async def test_cache_never_outlives_the_session(
    qyzar: Served, app_client: httpx.AsyncClient, clocked: FixedClock
) -> None:
    session = qyzar.fake.create_session(ttl=10)
    assert (await app_client.get("/me", headers=_cookie(session))).status_code == 200
    clocked.advance(11)  # the session expired before the 30 s cache life
    answer = await app_client.get("/me", headers=_cookie(session))
    assert answer.status_code == 401
    assert qyzar.fake.calls["session-verify"] == 2


async def test_revocation_is_seen_after_one_cache_life(
    qyzar: Served, app_client: httpx.AsyncClient, clocked: FixedClock
) -> None:
    session = qyzar.fake.create_session()
    assert (await app_client.get("/me", headers=_cookie(session))).status_code == 200
    qyzar.fake.revoke_session(session.session_id)
    assert (await app_client.get("/me", headers=_cookie(session))).status_code == 200  # cached
    clocked.advance(31)
    assert (await app_client.get("/me", headers=_cookie(session))).status_code == 401


async def test_fifty_concurrent_requests_make_one_upstream_call(
    qyzar: Served, app_client: httpx.AsyncClient, verifier: QyzarSessionVerifier
) -> None:
    session = qyzar.fake.create_session()
    qyzar.fake.hang(0.5, times=1)  # the first call is slow, so the others pile up behind it
    answers = await asyncio.gather(
        *(app_client.get("/me", headers=_cookie(session)) for _ in range(50))
    )
    assert [a.status_code for a in answers] == [200] * 50
    assert qyzar.fake.calls["session-verify"] == 1
    assert verifier.upstream_calls == 1


@pytest.mark.parametrize("knob", ["fail_503", "fail_500", "garbage", "redirect"])
async def test_outage_is_503_then_recovery(
    qyzar: Served, app_client: httpx.AsyncClient, knob: str
) -> None:
    session = qyzar.fake.create_session()
    if knob == "garbage":
        qyzar.fake.garbage()
    elif knob == "redirect":
        qyzar.fake.redirect("http://127.0.0.1:9/elsewhere")
    else:
        qyzar.fake.fail(int(knob.split("_")[1]))
    answer = await app_client.get("/me", headers=_cookie(session))
    assert answer.status_code == 503
    assert answer.json()["error"] == "provider_unavailable"
    assert int(answer.headers["retry-after"]) >= 1
    qyzar.fake.reset()
    assert (await app_client.get("/me", headers=_cookie(session))).status_code == 200


async def test_slow_qyzar_is_503_within_the_deadline(qyzar: Served, clock: FixedClock) -> None:
    verifier = QyzarSessionVerifier(qyzar.client(timeout=0.3), clock=clock)
    transport = httpx.ASGITransport(app=build_app(verifier))
    session = qyzar.fake.create_session()
    qyzar.fake.hang(10)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as app_client:
        answer = await app_client.get("/me", headers=_cookie(session))
    await verifier.aclose()
    assert answer.status_code == 503 and "retry-after" in answer.headers


async def test_bad_secret_is_503_with_a_loud_log(
    qyzar: Served, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "definitely-not-the-secret-" + uuid.uuid4().hex
    verifier = QyzarSessionVerifier(qyzar.client(secret=secret), clock=clock)
    transport = httpx.ASGITransport(app=build_app(verifier))
    session = qyzar.fake.create_session()
    with caplog.at_level(logging.WARNING):
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as made:
            answer = await made.get("/me", headers=_cookie(session))
    await verifier.aclose()
    assert answer.status_code == 503
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("AUTHGATE_QYZAR__PROJECT_SECRET" in r.getMessage() for r in loud)
    assert secret not in caplog.text and session.session_token not in caplog.text
    assert secret not in answer.text


def _settings(**env: str) -> AuthGateSettings:
    values: dict[str, Any] = {"provider": "qyzar", "qyzar": {}}
    for name, value in env.items():
        values["qyzar"][name] = value
    return AuthGateSettings(**values)


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({}, "AUTHGATE_QYZAR__API_URL"),
        ({"api_url": "https://q.test"}, "AUTHGATE_QYZAR__PROJECT_ID"),
        ({"api_url": "https://q.test", "project_id": "p"}, "AUTHGATE_QYZAR__PROJECT_SECRET"),
        (
            {"api_url": "https://q.test", "project_id": "p", "project_secret": " "},
            "AUTHGATE_QYZAR__PROJECT_SECRET",
        ),
    ],
)
def test_missing_settings_name_the_variable(given: dict[str, str], missing: str) -> None:
    with pytest.raises(ConfigurationError, match=missing):
        verifier_from_settings(_settings(**given))


async def test_the_gate_builds_qyzar_from_the_environment(
    qyzar: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHGATE_PROVIDER", "qyzar")
    monkeypatch.setenv("AUTHGATE_QYZAR__API_URL", qyzar.url)
    monkeypatch.setenv("AUTHGATE_QYZAR__PROJECT_ID", qyzar.fake.project_id)
    monkeypatch.setenv("AUTHGATE_QYZAR__PROJECT_SECRET", qyzar.fake.project_secret)
    gate = AuthGate.from_settings()
    assert isinstance(gate.verifier, QyzarSessionVerifier)
    assert qyzar.fake.project_secret not in repr(gate.verifier)
    app = build_app_with(gate)
    session = qyzar.fake.create_session()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as made:
        assert (await made.get("/me", headers=_cookie(session))).status_code == 200
    await gate.aclose()


def build_app_with(gate: AuthGate) -> FastAPI:
    app = FastAPI()
    gate.install(app)

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, str]:
        return {"subject": auth.subject}

    return app


async def test_load_one_session_hundreds_of_connections_one_upstream_call(
    qyzar: Served, clocked: FixedClock
) -> None:
    """A bounded loopback load test: 400 requests, 200 connections at once, real sockets."""
    verifier = QyzarSessionVerifier(qyzar.client(timeout=10), clock=clocked)
    sessions = [qyzar.fake.create_session() for _ in range(10)]
    qyzar.fake.hang(0.5, times=1)
    with serve(build_app(verifier)) as url:
        # a fresh connection per request: a loaded machine can keep a connection idle past
        # uvicorn's keep-alive timeout, and reusing it just as the server closes it would fail
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as load:

            def session_of(index: int) -> FakeQyzarSession:
                return sessions[0] if index % 2 == 0 else sessions[index % 10]

            async def one(index: int) -> int:
                session = session_of(index)
                return (await load.get("/me", headers=_cookie(session))).status_code

            statuses = await asyncio.wait_for(
                asyncio.gather(*(one(i) for i in range(400))), timeout=120
            )
    await verifier.aclose()
    assert statuses == [200] * 400
    # one call per distinct session, however many connections asked at once
    used = {session_of(i).session_id for i in range(400)}
    assert len(used) == 6
    assert qyzar.fake.calls["session-verify"] == len(used)


@pytest.mark.redis
async def test_workers_share_verifications_through_redis(
    qyzar: Served, clocked: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two gates built from the same settings (two workers): the second is served from Redis."""
    if not redis_answers():
        pytest.skip("no Redis server answers")
    pytest.importorskip("redis.asyncio", reason="the [redis] extra is not installed")
    monkeypatch.setenv("AUTHGATE_PROVIDER", "qyzar")
    monkeypatch.setenv("AUTHGATE_QYZAR__API_URL", qyzar.url)
    monkeypatch.setenv("AUTHGATE_QYZAR__PROJECT_ID", qyzar.fake.project_id)
    monkeypatch.setenv("AUTHGATE_QYZAR__PROJECT_SECRET", qyzar.fake.project_secret)
    monkeypatch.setenv("AUTHGATE_REDIS_URL", REDIS_URL)
    session = qyzar.fake.create_session(identifier="shared@example.com", metadata={"n": 1})
    answers = []
    for _worker in range(2):
        gate = AuthGate.from_settings()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=build_app_with(gate)), base_url="http://app.test"
        ) as made:
            answers.append(await made.get("/me", headers=_cookie(session)))
        await gate.aclose()
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[1].json() == {"subject": "shared@example.com"}
    assert qyzar.fake.calls["session-verify"] == 1


@pytest.mark.parametrize(
    "variant",
    [
        "planted_id_first",
        "planted_id_last",
        "planted_id_spaced",
        "planted_token",
        "malformed_bearer",
        "name_inside_another_cookie",
    ],
)
async def test_a_cached_pair_is_not_served_to_smuggled_variants(
    qyzar: Served, app_client: httpx.AsyncClient, variant: str
) -> None:
    """Once a pair is cached, the fast path must not answer what the full path would refuse."""
    session = qyzar.fake.create_session()
    plain = session.cookie_header
    assert (await app_client.get("/me", headers={"cookie": plain})).status_code == 200
    sid = session.session_id
    headers = {
        "planted_id_first": {"cookie": f"qyzar_session_id=qs_planted; {plain}"},
        "planted_id_last": {"cookie": f"{plain}; qyzar_session_id=qs_planted"},
        "planted_id_spaced": {"cookie": f"{plain}; qyzar_session_id =qs_planted"},
        "planted_token": {"cookie": f"qyzar_session_token=planted; {plain}"},
        "malformed_bearer": {"cookie": plain, "authorization": "Bearer bad token!"},
        "name_inside_another_cookie": {"cookie": f"{plain}; other=qyzar_session_id={sid}"},
    }[variant]
    answer = await app_client.get("/me", headers=headers)
    if variant == "name_inside_another_cookie":
        assert answer.status_code == 200  # the full path reads it right: one real pair
    else:
        assert answer.status_code == 401
    assert qyzar.fake.calls["session-verify"] == 1


async def test_the_fast_path_matches_the_full_path(
    qyzar: Served, verifier: QyzarSessionVerifier, app_client: httpx.AsyncClient
) -> None:
    session = qyzar.fake.create_session(identifier="fast@example.com")
    raw = [(b"cookie", f"a=1; {session.cookie_header}; b=2".encode())]
    assert verifier.cached_cookies(raw) is None  # nothing verified yet
    assert (
        await app_client.get("/me", headers={"cookie": session.cookie_header})
    ).status_code == 200
    found = verifier.cached_cookies(raw)
    assert found is not None and found.subject == "fast@example.com"
    assert verifier.cached_cookies([*raw, (b"cookie", b"c=3")]) is None  # two Cookie headers
    assert verifier.cached_cookies([(b"cookie", session.cookie_header.encode() + b"x")]) is None
