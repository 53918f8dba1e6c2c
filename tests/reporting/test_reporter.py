"""The reporter's queue, worker, retries and shutdown flush, against recording and real sinks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx
import pytest

from fastapi_authgate.errors import ConfigurationError, ProviderError
from fastapi_authgate.events import Event, RequestEvent
from fastapi_authgate.reporting import CallableSink, Reporter, retry_hint
from tests.fakes.sink import FakeSinkServer, HTTPSink

pytestmark = pytest.mark.anyio


def event(n: int, status: int = 200) -> RequestEvent:
    return RequestEvent(
        at=1_800_000_000.0 + n,
        method="GET",
        path=f"/items/{n}",
        route="/items/{item_id}",
        status=status,
        duration_ms=1.5,
        ip="10.0.0.1",
    )


class Recorder:
    """A sink that keeps every batch; ``fail`` holds exceptions to raise, one per call."""

    def __init__(self, fail: Sequence[BaseException] = ()) -> None:
        self.batches: list[list[Event]] = []
        self.fail = list(fail)
        self.calls = 0

    async def send(self, events: Sequence[Event]) -> None:
        self.calls += 1
        if self.fail:
            raise self.fail.pop(0)
        self.batches.append(list(events))

    @property
    def events(self) -> list[RequestEvent]:
        return [e for batch in self.batches for e in batch if isinstance(e, RequestEvent)]


class Sleeps:
    """An injected sleep that records each delay and yields once instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class Status(Exception):
    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


async def test_overflow_drops_the_oldest_and_counts_exactly_what_was_lost() -> None:
    sink = Recorder()
    reporter = Reporter(sink, queue_size=100, batch_size=10, flush_seconds=0.01)
    for n in range(1000):  # the worker is not running: nothing drains while we overfill
        reporter.submit(event(n))
    assert reporter.counters.dropped == 900
    assert reporter.counters.pending == 100
    await reporter.start()
    await reporter.aclose()
    delivered = [e.path for e in sink.events]
    assert delivered == [f"/items/{n}" for n in range(900, 1000)]  # the newest survive, in order
    counters = reporter.counters
    assert counters.queued == 1000
    assert counters.sent == 100
    assert counters.dropped == 1000 - len(delivered)
    assert counters.failed == 0


async def test_batches_fill_up_to_batch_size_before_the_flush_interval() -> None:
    sink = Recorder()
    reporter = Reporter(sink, batch_size=25, flush_seconds=60)
    await reporter.start()
    for n in range(100):
        reporter.submit(event(n))
    for _ in range(200):
        if len(sink.events) == 100:
            break
        await asyncio.sleep(0.01)
    assert [len(batch) for batch in sink.batches] == [25, 25, 25, 25]
    await reporter.aclose()


async def test_a_lone_event_is_flushed_after_flush_seconds() -> None:
    sink = Recorder()
    reporter = Reporter(sink, batch_size=100, flush_seconds=0.05)
    await reporter.start()
    reporter.submit(event(1))
    for _ in range(300):
        if sink.events:
            break
        await asyncio.sleep(0.01)
    assert [e.path for e in sink.events] == ["/items/1"]  # delivered before any shutdown
    assert reporter.running
    await reporter.aclose()


async def test_retries_429_and_5xx_with_backoff_and_honours_retry_after() -> None:
    sink = Recorder(fail=[Status(503), Status(429, retry_after=7), Status(502)])
    sleeps = Sleeps()
    reporter = Reporter(sink, batch_size=3, backoff=0.5, sleep=sleeps, jitter=lambda: 0.999)
    await reporter.start()
    for n in range(3):
        reporter.submit(event(n))
    await reporter.aclose()
    assert len(sink.events) == 3
    assert sink.calls == 4
    # first retry ~0.5 s, second asked for 7 s by Retry-After, third doubles to ~2 s
    assert sleeps.delays[0] == pytest.approx(0.5, rel=0.01)
    assert sleeps.delays[1] == pytest.approx(7.0)
    assert sleeps.delays[2] == pytest.approx(2.0, rel=0.01)
    counters = reporter.counters
    assert (counters.sent, counters.retried, counters.failed) == (3, 9, 0)


async def test_jitter_spreads_delays_within_the_upper_half() -> None:
    sleeps = Sleeps()
    sink = Recorder(fail=[Status(500), Status(500)])
    reporter = Reporter(sink, batch_size=1, backoff=1.0, sleep=sleeps, jitter=lambda: 0.0)
    await reporter.start()
    reporter.submit(event(1))
    await reporter.aclose()
    assert sleeps.delays == [pytest.approx(0.5), pytest.approx(1.0)]


async def test_a_client_error_fails_the_batch_at_once(caplog: pytest.LogCaptureFixture) -> None:
    sink = Recorder(fail=[Status(400)])
    sleeps = Sleeps()
    reporter = Reporter(sink, batch_size=2, sleep=sleeps)
    await reporter.start()
    reporter.submit(event(1))
    reporter.submit(event(2))
    with caplog.at_level(logging.WARNING, "fastapi_authgate.reporting"):
        await reporter.aclose()
    assert sink.calls == 1 and sleeps.delays == []
    assert reporter.counters.failed == 2 and reporter.counters.sent == 0
    assert "could not deliver 2 event(s): Status (HTTP 400); not retried" in caplog.text


async def test_retries_stop_after_max_retries() -> None:
    sink = Recorder(fail=[Status(503)] * 10)
    reporter = Reporter(sink, batch_size=1, max_retries=2, sleep=Sleeps())
    await reporter.start()
    reporter.submit(event(1))
    await reporter.aclose()
    assert sink.calls == 3
    assert reporter.counters.failed == 1 and reporter.counters.retried == 2


def test_retry_hint_reads_status_retry_after_and_transport_errors() -> None:
    request = httpx.Request("POST", "http://sink/events")
    throttled = httpx.Response(429, headers={"Retry-After": "12"}, request=request)
    error = httpx.HTTPStatusError("429", request=request, response=throttled)
    assert retry_hint(error) == (True, 12.0)
    bad = httpx.Response(422, request=request)
    assert retry_hint(httpx.HTTPStatusError("422", request=request, response=bad)) == (
        False,
        None,
    )
    assert retry_hint(httpx.ConnectError("refused")) == (True, None)
    assert retry_hint(TimeoutError()) == (True, None)
    assert retry_hint(ProviderError(retry_after=3)) == (True, 3.0)
    assert retry_hint(ValueError("bug")) == (False, None)


async def test_shutdown_delivers_every_queued_event_over_real_http() -> None:
    server = FakeSinkServer()
    server.fail_next = 2  # the first two batches are refused with 503 and retried
    with server.running() as url:
        sink = HTTPSink(url)
        reporter = Reporter(sink, batch_size=200, flush_seconds=30, backoff=0.01)
        await reporter.start()
        for n in range(1234):
            reporter.submit(event(n))
        await reporter.aclose()
        assert sink.closed
    assert len(server.received) == 1234
    assert sorted(e["path"] for e in server.received) == sorted(f"/items/{n}" for n in range(1234))
    counters = reporter.counters
    assert counters.sent == 1234 and counters.failed == 0 and counters.dropped == 0
    assert counters.retried == 2 * 200 and counters.pending == 0  # one batch refused twice


async def test_shutdown_deadline_bounds_a_hanging_sink_and_says_how_many_were_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def hang(events: Sequence[Event]) -> None:
        await release.wait()

    reporter = Reporter(CallableSink(hang), batch_size=10, shutdown_deadline=0.2, send_timeout=60)
    await reporter.start()
    for n in range(35):
        reporter.submit(event(n))
    await asyncio.sleep(0.05)  # the worker takes the first batch and hangs on it
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.WARNING, "fastapi_authgate.reporting"):
        await reporter.aclose()
    assert loop.time() - started < 5  # bounded by the deadline (0.2 s), with a wide margin
    assert reporter.counters.failed == 35 and reporter.counters.sent == 0
    assert "35 event(s) could not be sent within the 0.2s shutdown deadline" in caplog.text
    assert not reporter.running


async def test_a_hanging_send_times_out_and_is_retried() -> None:
    calls = 0

    async def slow_then_fine(events: Sequence[Event]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(60)

    reporter = Reporter(slow_then_fine, batch_size=1, send_timeout=0.05, sleep=Sleeps())
    await reporter.start()
    reporter.submit(event(1))
    await reporter.aclose()
    assert calls == 2 and reporter.counters.sent == 1 and reporter.counters.retried == 1


async def test_a_sink_bug_does_not_stop_the_worker() -> None:
    sink = Recorder(fail=[RuntimeError("bug")])
    reporter = Reporter(sink, batch_size=1, flush_seconds=0.01)
    await reporter.start()
    reporter.submit(event(1))
    reporter.submit(event(2))
    await reporter.aclose()
    assert [e.path for e in sink.events] == ["/items/2"]
    assert reporter.counters.failed == 1


async def test_restart_after_close_and_submit_after_close_is_counted() -> None:
    sink = Recorder()
    reporter = Reporter(sink, batch_size=1)
    await reporter.start()
    await reporter.aclose()
    reporter.submit(event(1))
    assert reporter.counters.dropped == 1
    await reporter.start()
    reporter.submit(event(2))
    await reporter.aclose()
    assert [e.path for e in sink.events] == ["/items/2"]


async def test_max_batch_of_the_sink_caps_the_batch_size() -> None:
    sink = Recorder()
    sink.max_batch = 3  # type: ignore[attr-defined]
    reporter = Reporter(sink, batch_size=100)
    assert reporter.batch_size == 3
    for n in range(7):
        reporter.submit(event(n))
    await reporter.start()
    await reporter.aclose()
    assert [len(b) for b in sink.batches] == [3, 3, 1]


def test_idle_reporter_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    reporter = Reporter(Recorder(), batch_size=1)
    with caplog.at_level(logging.WARNING, "fastapi_authgate.reporting"):
        reporter.submit(event(1))
        reporter.submit(event(2))
    assert caplog.text.count("the reporter is not running") == 1


@pytest.mark.parametrize(
    ("kwargs", "variable"),
    [
        ({"queue_size": 0}, "QUEUE_SIZE"),
        ({"batch_size": 0}, "BATCH_SIZE"),
        ({"flush_seconds": 0}, "FLUSH_SECONDS"),
        ({"sample_rate": 1.5}, "SAMPLE_RATE"),
        ({"shutdown_deadline": -1}, "SHUTDOWN_DEADLINE_SECONDS"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, float], variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        Reporter(Recorder(), **kwargs)  # type: ignore[arg-type]


def test_a_sink_must_be_a_sink() -> None:
    with pytest.raises(ConfigurationError, match="send"):
        Reporter(object())  # type: ignore[arg-type]
