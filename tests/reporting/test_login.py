"""Login attempts from the app's own login route: events, risk scores within a deadline, trust."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

from fastapi_authgate import AuthGate
from fastapi_authgate.events import Event, LoginEvent, LoginRisk
from fastapi_authgate.reporting import (
    LoginAttempts,
    Reporter,
    login_attempts,
    record_login_attempt,
    trust_identifier,
)
from fastapi_authgate.testing import DevIssuer

USERS = {"alice": "correct horse battery staple"}


class Credentials(BaseModel):
    username: str
    password: str


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def send(self, events: Sequence[Event]) -> None:
        self.events.extend(events)


class Scorer(Recorder):
    """A scoring sink; ``delay`` stalls each score, ``broken`` makes it raise."""

    session_cookie = "device_session"

    def __init__(self, *, delay: float = 0.0, broken: bool = False) -> None:
        super().__init__()
        self.delay = delay
        self.broken = broken
        self.scored: list[LoginEvent] = []
        self.trusted: list[tuple[str, str]] = []
        self.finished = 0

    async def score_login(self, event: LoginEvent) -> LoginRisk:
        self.scored.append(event)
        await asyncio.sleep(self.delay)
        if self.broken:
            raise ConnectionError("risk service down")
        self.finished += 1
        return LoginRisk(status="scored", score=80 if event.success is False else 10, attempts=3)

    async def trust_identifier(self, *, session_id: str, identifier: str) -> None:
        self.trusted.append((session_id, identifier))


def build_app(reporter: Reporter | None) -> FastAPI:
    app = FastAPI()
    AuthGate(DevIssuer().verifier(), reporter=reporter).install(app)

    @app.post("/login")
    async def login(
        body: Credentials, attempts: LoginAttempts = Depends(login_attempts)
    ) -> dict[str, Any]:
        ok = USERS.get(body.username) == body.password
        risk = await attempts.record(body.username, success=ok)
        trusted = ok and await attempts.trust(body.username)
        return {"ok": ok, "status": risk.status, "score": risk.score, "trusted": trusted}

    @app.post("/plain-login")
    async def plain_login(request: Request, body: Credentials) -> dict[str, Any]:
        ok = USERS.get(body.username) == body.password
        risk = await record_login_attempt(request, body.username, success=ok)
        if ok:
            await trust_identifier(request, body.username)
        return {"ok": ok, "status": risk.status}

    return app


def test_log_sink_style_records_identifier_and_outcome_never_the_password() -> None:
    sink = Recorder()
    app = build_app(Reporter(sink))
    with TestClient(app) as client:
        good = client.post("/login", json={"username": "alice", "password": USERS["alice"]})
        bad = client.post(
            "/plain-login",
            json={"username": " mallory ", "password": "hunter2"},
            headers={"User-Agent": "curl/8", "X-Request-ID": "r-1"},
        )
    assert good.json() == {"ok": True, "status": "not_scored", "score": None, "trusted": False}
    assert bad.json() == {"ok": False, "status": "not_scored"}
    logins = [e for e in sink.events if isinstance(e, LoginEvent)]
    assert [(e.identifier, e.success) for e in logins] == [("alice", True), ("mallory", False)]
    second = logins[1]
    assert (second.user_agent, second.request_id, second.ip) == ("curl/8", "r-1", "testclient")
    assert "hunter2" not in repr(sink.events) and USERS["alice"] not in repr(sink.events)


def test_reporting_off_answers_not_scored_and_costs_nothing() -> None:
    app = build_app(None)
    with TestClient(app) as client:
        response = client.post("/login", json={"username": "alice", "password": USERS["alice"]})
    assert response.json()["status"] == "not_scored"


def test_a_scoring_sink_answers_within_the_deadline_and_trusts_after_a_good_login() -> None:
    scorer = Scorer()
    reporter = Reporter(scorer, login_score_deadline=5)
    app = build_app(reporter)
    with TestClient(app) as client:
        client.cookies.set("device_session", "dev-session-1")
        good = client.post("/login", json={"username": "alice", "password": USERS["alice"]})
        bad = client.post("/login", json={"username": "alice", "password": "wrong"})
    assert good.json() == {"ok": True, "status": "scored", "score": 10, "trusted": True}
    assert bad.json()["score"] == 80
    assert [(e.session_id, e.identifier, e.success) for e in scorer.scored] == [
        ("dev-session-1", "alice", True),
        ("dev-session-1", "alice", False),
    ]
    assert scorer.trusted == [("dev-session-1", "alice")]
    assert scorer.events == [e for e in scorer.events if not isinstance(e, LoginEvent)]
    counters = reporter.counters
    assert counters.sent >= 3 and counters.failed == 0


def test_a_slow_score_is_late_and_still_completes_in_the_background() -> None:
    scorer = Scorer(delay=0.5)
    reporter = Reporter(scorer, login_score_deadline=0.05, shutdown_deadline=10)
    app = build_app(reporter)
    with TestClient(app) as client:
        client.cookies.set("device_session", "s-2")
        response = client.post("/login", json={"username": "alice", "password": "wrong"})
        assert response.json()["status"] == "late"
    assert scorer.finished == 1  # the shutdown waited for it
    assert reporter.counters.failed == 0


def test_a_failing_score_is_unavailable_and_counted() -> None:
    scorer = Scorer(broken=True)
    reporter = Reporter(scorer, login_score_deadline=5)
    with TestClient(build_app(reporter)) as client:
        client.cookies.set("device_session", "s-3")
        response = client.post("/login", json={"username": "bob", "password": "x"})
    assert response.json()["status"] == "unavailable"
    assert reporter.counters.failed == 1


def test_without_a_session_there_is_nothing_to_score() -> None:
    scorer = Scorer()
    with TestClient(build_app(Reporter(scorer))) as client:
        response = client.post("/login", json={"username": "alice", "password": USERS["alice"]})
    assert response.json() == {"ok": True, "status": "not_scored", "score": None, "trusted": False}
    assert scorer.scored == []


@pytest.mark.anyio
async def test_too_many_pending_calls_are_refused_not_piled_up() -> None:
    scorer = Scorer(delay=0.3)
    reporter = Reporter(scorer, login_score_deadline=0.01, max_pending_calls=3)
    await reporter.start()
    scope: dict[str, Any] = {
        "type": "http",
        "headers": [(b"cookie", b"device_session=s")],
        "client": ("10.0.0.1", 1),
    }
    attempts = LoginAttempts(Request(scope), reporter)
    risks = [await attempts.record("eve", success=False) for _ in range(5)]
    assert [r.status for r in risks] == ["late"] * 3 + ["unavailable"] * 2
    await reporter.aclose()
    assert reporter.counters.dropped == 2 and scorer.finished == 3
