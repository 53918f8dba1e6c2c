"""The Qyzar sink's mapping onto WIRE.md: request-logs batches of 1 to 500, anti-ATO calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from fastapi_authgate.events import LoginEvent, RequestEvent
from fastapi_authgate.reporting import QyzarSink, Reporter
from fastapi_authgate.reporting.qyzar_sink import request_log_entry

pytestmark = pytest.mark.anyio


@dataclass
class Prior:
    identifiers: Sequence[str] = ()
    trusted_identifiers: Sequence[str] = ()
    attempts: int = 0


@dataclass
class Attempt:
    score: int
    last_login_at: Any
    prior: Prior


@dataclass
class Client:
    """Records the calls the sink makes, with the keyword arguments of ``QyzarClient``."""

    uploads: list[list[dict[str, Any]]] = field(default_factory=list)
    logins: list[dict[str, Any]] = field(default_factory=list)
    trusted: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False

    async def log_user_api_request(self, *, events: Sequence[Mapping[str, object]]) -> object:
        assert 1 <= len(events) <= 500
        self.uploads.append([dict(e) for e in events])
        return {"accepted": len(events)}

    async def log_attempted_login(
        self, *, session_id: str, identifier: str, success: bool | None = None
    ) -> object:
        self.logins.append({"session_id": session_id, "identifier": identifier, "success": success})
        return Attempt(
            score=73, last_login_at=None, prior=Prior(trusted_identifiers=["bob"], attempts=4)
        )

    async def add_ato_trusted_identifier(self, *, session_id: str, identifier: str) -> object:
        self.trusted.append({"session_id": session_id, "identifier": identifier})
        return {"trustedIdentifiers": [identifier]}

    async def aclose(self) -> None:
        self.closed = True


def request(n: int, **fields: Any) -> RequestEvent:
    base: dict[str, Any] = {
        "at": 1_800_000_000.5,
        "method": "POST",
        "path": f"/orders/{n}",
        "route": "/orders/{order_id}",
        "status": 201,
        "duration_ms": 3.25,
        "ip": "203.0.113.7",
    }
    base.update(fields)
    return RequestEvent(**base)


def test_request_events_take_the_wire_names() -> None:
    full = request(1, user_agent="ua/1", subject="alice", session_id="S", request_id="r1")
    assert request_log_entry(full) == {
        "method": "POST",
        "path": "/orders/1",
        "route": "/orders/{order_id}",
        "status": 201,
        "durationMs": 3.25,
        "ip": "203.0.113.7",
        "userAgent": "ua/1",
        "sessionId": "S",
        "subject": "alice",
        "requestId": "r1",
        "at": 1_800_000_000.5,
    }
    bare = request_log_entry(request(2, route=None))
    assert bare["route"] == "/orders/2" and bare["userAgent"] == ""
    assert not {"sessionId", "subject", "requestId"} & bare.keys()  # optional: left out


async def test_batches_never_exceed_500_and_every_event_arrives() -> None:
    client = Client()
    reporter = Reporter(QyzarSink(client), batch_size=10_000, queue_size=20_000)
    assert reporter.batch_size == 500
    for n in range(1234):
        reporter.submit(request(n))
    await reporter.start()
    await reporter.aclose()
    assert [len(u) for u in client.uploads] == [500, 500, 234]
    assert sorted(e["path"] for u in client.uploads for e in u) == sorted(
        f"/orders/{n}" for n in range(1234)
    )
    assert not client.closed  # shared with the verifier unless told otherwise


async def test_login_events_never_go_to_request_logs() -> None:
    client = Client()
    sink = QyzarSink(client, own_client=True)
    login = LoginEvent(at=1.0, identifier="bob", success=True, ip="1.2.3.4", session_id="S")
    await sink.send([login, request(1)])
    assert [len(u) for u in client.uploads] == [1]
    await sink.send([login])
    assert len(client.uploads) == 1  # nothing to upload: no empty call
    await sink.aclose()
    assert client.closed


async def test_score_and_trust_map_the_answer() -> None:
    client = Client()
    sink = QyzarSink(client)
    risk = await sink.score_login(
        LoginEvent(at=1.0, identifier="bob", success=None, ip="1.2.3.4", session_id="S")
    )
    assert (risk.status, risk.score, risk.trusted, risk.attempts) == ("scored", 73, True, 4)
    assert client.logins == [{"session_id": "S", "identifier": "bob", "success": None}]
    await sink.trust_identifier(session_id="S", identifier="bob")
    assert client.trusted == [{"session_id": "S", "identifier": "bob"}]
    no_session = await sink.score_login(
        LoginEvent(at=1.0, identifier="bob", success=None, ip="1.2.3.4")
    )
    assert no_session.status == "not_scored" and len(client.logins) == 1


class SecretRefused(Exception):
    status = None  # no usable status: without the mark it would look like an outage


async def test_permanent_errors_fail_the_batch_without_retries() -> None:
    class Refusing(Client):
        async def log_user_api_request(self, *, events: Sequence[Mapping[str, object]]) -> object:
            self.uploads.append([dict(e) for e in events])
            raise SecretRefused()

    client = Refusing()
    reporter = Reporter(QyzarSink(client, permanent_errors=(SecretRefused,)), batch_size=5)
    for n in range(5):
        reporter.submit(request(n))
    await reporter.start()
    await reporter.aclose()
    assert len(client.uploads) == 1
    assert (reporter.counters.failed, reporter.counters.retried) == (5, 0)
