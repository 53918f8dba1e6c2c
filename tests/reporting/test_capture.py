"""The capture middleware through a real app: every request reported, refused ones too."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Security, WebSocket
from fastapi.testclient import TestClient
from starlette.responses import PlainTextResponse

from fastapi_authgate import AuthContext, AuthGate, ProviderError, rate_limited, require_user
from fastapi_authgate.events import Event, RequestEvent
from fastapi_authgate.ratelimit.hooks import ResponseHooksMiddleware
from fastapi_authgate.reporting import Reporter
from fastapi_authgate.reporting.capture import ReportingMiddleware, read_headers
from fastapi_authgate.testing import DevIssuer


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def send(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def requests(self) -> list[RequestEvent]:
        return [e for e in self.events if isinstance(e, RequestEvent)]


def down() -> None:
    raise ProviderError()


def build_app(
    reporter: Reporter, issuer: DevIssuer, *, trusted_proxies: Sequence[str] = ()
) -> FastAPI:
    gate = AuthGate(issuer.verifier(), reporter=reporter, trusted_proxies=trusted_proxies)
    app = FastAPI()
    gate.install(app)

    @app.get("/items/{item_id}")
    async def item(item_id: int, auth: AuthContext = Depends(require_user)) -> dict[str, Any]:
        return {"item": item_id}

    @app.get("/admin")
    async def admin(auth: AuthContext = Security(require_user, scopes=["admin"])) -> dict[str, Any]:
        return {}

    @app.get("/limited", dependencies=[Depends(rate_limited("1/minute", key="ip"))])
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/down", dependencies=[Depends(down)])
    async def unavailable() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/boom")
    async def boom() -> dict[str, bool]:
        raise RuntimeError("route bug")

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    sub = FastAPI()

    @sub.get("/things/{name}")
    async def thing(name: str) -> PlainTextResponse:
        return PlainTextResponse(name)

    app.mount("/sub", sub)
    return app


@pytest.fixture
def issuer() -> DevIssuer:
    return DevIssuer()


@pytest.fixture
def sink() -> Recorder:
    return Recorder()


def test_refused_requests_are_reported_with_their_status(sink: Recorder, issuer: DevIssuer) -> None:
    reporter = Reporter(sink, flush_seconds=0.05)
    app = build_app(reporter, issuer)
    token = issuer.issue("alice", scopes=["read"])
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/items/7").status_code == 401
        assert client.get("/items/7", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get("/admin", headers={"Authorization": f"Bearer {token}"}).status_code == 403
        assert client.get("/limited").status_code == 200
        assert client.get("/limited").status_code == 429
        assert client.get("/down").status_code == 503
        assert client.get("/boom").status_code == 500
        assert client.get("/nowhere").status_code == 404
        ok = client.get("/items/7", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
    seen = [(e.method, e.path, e.route, e.status, e.subject) for e in sink.requests()]
    assert seen == [
        ("GET", "/items/7", "/items/{item_id}", 401, None),
        ("GET", "/items/7", "/items/{item_id}", 401, None),
        ("GET", "/admin", "/admin", 403, "alice"),
        ("GET", "/limited", "/limited", 200, None),
        ("GET", "/limited", "/limited", 429, None),
        ("GET", "/down", "/down", 503, None),
        ("GET", "/boom", "/boom", 500, None),
        ("GET", "/nowhere", None, 404, None),
        ("GET", "/items/7", "/items/{item_id}", 200, "alice"),
    ]
    assert all(e.duration_ms >= 0 and e.ip == "testclient" for e in sink.requests())
    assert reporter.counters.sent == 9 and reporter.counters.pending == 0


def test_session_subject_user_agent_request_id_and_mounts(
    sink: Recorder, issuer: DevIssuer
) -> None:
    app = build_app(Reporter(sink), issuer)
    session_id, session_token = issuer.new_session("bob")
    with TestClient(app) as client:
        client.cookies.set("authgate_session", session_token)
        response = client.get(
            "/items/1", headers={"User-Agent": "probe/1.0", "X-Request-ID": "req-42"}
        )
        assert response.status_code == 200
        client.cookies.clear()
        client.get("/sub/things/x", headers={"X-Request-ID": "has space", "User-Agent": "u" * 999})
        assert client.get("/sub/nothing/here").status_code == 404
    first, second, third = sink.requests()
    assert (third.route, third.status) == (None, 404)  # the mount matched, nothing inside it
    assert (first.subject, first.session_id) == ("bob", session_id)
    assert (first.user_agent, first.request_id) == ("probe/1.0", "req-42")
    assert second.route == "/sub/things/{name}" and second.path == "/sub/things/x"
    assert second.request_id is None  # not a plain token: not reported rather than cleaned up
    assert second.user_agent == "u" * 256


def _from_peer(app: Any, peer: tuple[str, int]) -> Any:
    """``app`` as if every connection came from ``peer`` (Starlette 0.37's TestClient has no
    ``client=`` argument)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "client": peer}
        await app(scope, receive, send)

    return wrapped


def test_client_ip_follows_the_trusted_proxy_rules(sink: Recorder, issuer: DevIssuer) -> None:
    app = build_app(Reporter(sink), issuer, trusted_proxies=["127.0.0.1"])
    with TestClient(_from_peer(app, ("127.0.0.1", 5000))) as client:
        client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
    with TestClient(build_app(Reporter(sink2 := Recorder()), issuer)) as client:
        client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
    assert [e.ip for e in sink.requests()] == ["203.0.113.9"]
    assert [e.ip for e in sink2.requests()] == ["testclient"]  # no trusted proxy: header ignored


def test_excluded_paths_and_sampling(sink: Recorder, issuer: DevIssuer) -> None:
    reporter = Reporter(sink, sample_rate=0.0, exclude_paths=["/healthz", "/sub/*"])
    app = build_app(reporter, issuer)
    with TestClient(app) as client:
        for _ in range(5):
            assert client.get("/healthz").status_code == 200
            assert client.get("/sub/things/a").status_code == 200
            assert client.get("/limited").status_code in (200, 429)
            assert client.get("/items/1").status_code == 401
    statuses = sorted(e.status for e in sink.requests())
    # sampling at 0 thins successes only: the one 200 from /limited is gone, refusals stay
    assert statuses == [401] * 5 + [429] * 4
    assert {e.path for e in sink.requests()} == {"/items/1", "/limited"}


def test_sampling_keeps_about_the_given_share(sink: Recorder, issuer: DevIssuer) -> None:
    app = build_app(Reporter(sink, sample_rate=0.5), issuer)
    with TestClient(app) as client:
        for _ in range(400):
            client.get("/healthz")
    assert 120 < len(sink.requests()) < 280  # binomial(400, 0.5): outside is ~1e-16 likely


def test_websockets_and_lifespan_pass_through(sink: Recorder, issuer: DevIssuer) -> None:
    app = build_app(Reporter(sink), issuer)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    @app.websocket("/ws/guarded")
    async def guarded(websocket: WebSocket, auth: AuthContext = Depends(require_user)) -> None:
        await websocket.accept()
        await websocket.send_text(auth.subject)
        await websocket.close()

    token = issuer.issue("alice")
    with TestClient(app) as client:
        with client.websocket_connect("/ws") as socket:
            assert socket.receive_text() == "hi"
        # the reporting layer put the gate into the socket's scope (it replaces the hooks layer)
        headers = {"Authorization": f"Bearer {token}"}
        with client.websocket_connect("/ws/guarded", headers=headers) as socket:
            assert socket.receive_text() == "alice"
    assert sink.requests() == []


def test_one_layer_watches_responses_when_reporting_is_on(
    sink: Recorder, issuer: DevIssuer
) -> None:
    """The reporting layer runs the response hooks itself: no second layer watches each response."""
    app = build_app(Reporter(sink), issuer)
    assert ResponseHooksMiddleware not in [m.cls for m in app.user_middleware]  # type: ignore[comparison-overlap]
    layer: Any = app.build_middleware_stack()
    assert isinstance(layer, ReportingMiddleware) and layer.response_hooks
    while layer is not None:
        assert not isinstance(layer, ResponseHooksMiddleware)
        layer = getattr(layer, "app", None)


def test_reporting_off_adds_no_middleware(issuer: DevIssuer) -> None:
    gate = AuthGate(issuer.verifier())
    app = FastAPI()
    gate.install(app)
    stack = app.build_middleware_stack()
    layers = []
    node: Any = stack
    while node is not None:
        layers.append(type(node).__name__)
        node = getattr(node, "app", None)
    assert "ReportingMiddleware" not in layers
    assert gate.reporter is None


def test_reporting_wraps_middleware_added_after_install(sink: Recorder, issuer: DevIssuer) -> None:
    from fastapi_authgate import AuthGateMiddleware

    app = build_app(Reporter(sink), issuer)
    app.add_middleware(AuthGateMiddleware, include=["/healthz"])
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 401  # refused before any route
    assert [(e.path, e.status, e.route) for e in sink.requests()] == [("/healthz", 401, None)]


def test_the_gate_counts_through_its_reporter(sink: Recorder, issuer: DevIssuer) -> None:
    app = build_app(Reporter(sink), issuer)
    gate = app.state.authgate
    with TestClient(app) as client:
        for _ in range(3):
            client.get("/healthz")
        assert gate.reporter.running
    assert gate.reporter.counters.sent == 3
    assert not gate.reporter.running


REQUEST_IDS = [
    (b"req-42", "req-42"),
    (b"a" * 128, "a" * 128),
    (b"a" * 129, None),  # too long: dropped, never cut
    (b"", None),
    (b"has space", None),
    (b"tab\there", None),
    (b"caf\xc3\xa9", None),  # not ASCII
    (b"\x7f", None),  # DEL is not visible
    (b"!~", "!~"),  # the two ends of the visible range
]


@pytest.mark.parametrize(("raw", "reported"), REQUEST_IDS)
def test_a_request_id_is_reported_only_when_it_is_short_visible_ascii(
    raw: bytes, reported: str | None
) -> None:
    """The middleware (inlined for speed) and ``read_headers`` (login events) agree on each id."""
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/x",
        "root_path": "",
        "headers": [(b"x-request-id", raw), (b"user-agent", b"probe/1")],
        "client": ("10.0.0.9", 1234),
    }
    assert read_headers(scope) == ("probe/1", reported)

    events: list[Event] = []
    reporter = Reporter(lambda batch: _collect(events, batch))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def one_request() -> None:
        await reporter.start()
        await ReportingMiddleware(app, reporter=reporter)(scope, receive, send)
        await reporter.aclose()  # the worker builds the event and delivers it

    asyncio.run(one_request())
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    (event,) = events
    assert isinstance(event, RequestEvent)
    assert (event.status, event.request_id, event.user_agent, event.ip) == (
        204,
        reported,
        "probe/1",
        "10.0.0.9",
    )


async def _collect(events: list[Event], batch: Sequence[Event]) -> None:
    events.extend(batch)
