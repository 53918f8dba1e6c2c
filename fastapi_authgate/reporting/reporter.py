"""``Reporter``: a bounded queue of events drained by one background worker into a sink.

The request path only calls :meth:`Reporter.submit`, which appends to a ``deque`` and returns: no
lock, no await, no I/O, so a sink that is down or hangs cannot slow a request. The queue is bounded
(``queue_size``); when it is full the *oldest* event is dropped and counted, because the newest
traffic is what an operator looks at first and a stuck sink must not grow memory.

The worker (started by :meth:`start`, stopped by :meth:`aclose`; ``AuthGate.install`` ties both to
the app's lifespan) sends a batch when ``batch_size`` events are waiting or ``flush_seconds`` have
passed. A failed batch is retried when the error says a retry may help (see
:class:`~fastapi_authgate.protocols.EventSink`) with exponential backoff and jitter, never sooner
than the sink's ``Retry-After``; other errors fail the batch at once. Each ``send`` has its own
timeout, so a hanging sink costs a timeout per batch, not the worker.

On shutdown the worker stops waiting for full batches and drains the queue, for at most
``shutdown_deadline`` seconds; whatever is left then is counted as failed and one warning says how
many events were not sent. The worker uses ``asyncio`` directly (the app's event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, TypeVar, cast

import httpx

from fastapi_authgate.client_ip import ClientIPResolver
from fastapi_authgate.errors import ConfigurationError, ProviderError
from fastapi_authgate.events import Event
from fastapi_authgate.protocols import EventSink, LoginScorer
from fastapi_authgate.reporting.callable_sink import CallableSink, DeliverFunc
from fastapi_authgate.settings import ReportingSettings

__all__ = ["Reporter", "ReportingCounters", "retry_hint"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


class ReportingCounters(NamedTuple):
    """A snapshot of what the reporter did, in events.

    ``queued``: accepted by :meth:`Reporter.submit` (or started as a login call); ``sent``:
    delivered; ``dropped``: pushed out of a full queue (or submitted after shutdown); ``failed``:
    given up on (an error that is not worth retrying, retries exhausted, or not sent by the
    shutdown deadline); ``retried``: events sent again after a failed attempt (a batch of 50
    retried twice adds 100); ``pending``: waiting in the queue or in flight right now.
    """

    queued: int
    sent: int
    dropped: int
    failed: int
    retried: int
    pending: int


def retry_hint(exc: BaseException) -> tuple[bool, float | None]:
    """``(retry?, seconds to wait at least)`` for an exception raised by a sink.

    A boolean ``retryable`` attribute on the exception decides first; then its status (408, 429
    and 5xx are worth a retry); then its kind (timeouts, connection errors and ``ProviderError``
    without a status are). ``retry_after`` on the exception, or a ``Retry-After`` header of its
    ``response``, is the least wait.
    """
    status = getattr(exc, "status", None)
    if not isinstance(status, int):
        status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    if not isinstance(status, int) and response is not None:
        status = getattr(response, "status_code", None)
    wait: float | None = None
    hinted = getattr(exc, "retry_after", None)
    if isinstance(hinted, int | float) and not isinstance(hinted, bool) and hinted >= 0:
        wait = float(hinted)
    elif response is not None:
        header = getattr(response, "headers", {}).get("retry-after", "")
        if isinstance(header, str) and header.strip().isdigit():
            wait = float(header.strip())
    flag = getattr(exc, "retryable", None)
    if isinstance(flag, bool):  # the sink knows best (QyzarSink marks a refused secret)
        return flag, wait
    if isinstance(status, int):
        return status in (408, 429) or 500 <= status <= 599, wait
    retryable = isinstance(exc, TimeoutError | OSError | httpx.TransportError | ProviderError)
    return retryable, wait


class Reporter:
    """Queues events on the request path and delivers them in the background.

    Args:
        sink: where batches go: an :class:`~fastapi_authgate.protocols.EventSink`, or an async
            callable taking a batch (wrapped in a :class:`CallableSink`).
        queue_size: the most events held; beyond it the oldest are dropped and counted.
        batch_size: events per ``send`` (capped by the sink's ``max_batch``, if it has one).
        flush_seconds: the longest an event waits for its batch to fill.
        shutdown_deadline: seconds :meth:`aclose` spends delivering what is left.
        send_timeout: seconds one ``send`` may take before it counts as a retryable failure.
        max_retries: further attempts for a batch after its first failure.
        backoff: the first retry delay; each next one doubles, up to ``max_backoff``.
        max_backoff: the longest delay the backoff itself reaches (``Retry-After`` may ask more).
        sample_rate: share of successful requests (status < 400) the capture middleware reports;
            refused and failed requests are always reported.
        exclude_paths: paths the capture middleware never reports (exact, or a prefix with ``*``).
        login_score_deadline: seconds a login attempt waits for its risk score.
        max_pending_calls: login calls (scoring, trusting) allowed in flight at once; more are
            refused and counted as dropped, so a flood of logins cannot pile up tasks.
        sleep: awaited between retries (tests inject a recorder instead of waiting).
        jitter: returns a factor in [0, 1); the delay is scaled into its upper half by it.

    Raises:
        ConfigurationError: a size, rate or duration is out of range.
    """

    def __init__(
        self,
        sink: EventSink | DeliverFunc,
        *,
        queue_size: int = 10_000,
        batch_size: int = 100,
        flush_seconds: float = 1.0,
        shutdown_deadline: float = 5.0,
        send_timeout: float = 10.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        sample_rate: float = 1.0,
        exclude_paths: Sequence[str] = (),
        login_score_deadline: float = 0.3,
        max_pending_calls: int = 1000,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if callable(getattr(sink, "send", None)):
            resolved = cast(EventSink, sink)
        else:
            if not callable(sink):
                raise ConfigurationError(
                    "Reporter(sink=...) needs an object with a send() method or an async callable"
                )
            resolved = CallableSink(sink)
        _check(queue_size >= 1, "AUTHGATE_REPORTING__QUEUE_SIZE must be at least 1")
        _check(batch_size >= 1, "AUTHGATE_REPORTING__BATCH_SIZE must be at least 1")
        _check(flush_seconds > 0, "AUTHGATE_REPORTING__FLUSH_SECONDS must be positive")
        _check(shutdown_deadline >= 0, "AUTHGATE_REPORTING__SHUTDOWN_DEADLINE_SECONDS must be >= 0")
        _check(0 <= sample_rate <= 1, "AUTHGATE_REPORTING__SAMPLE_RATE must be between 0 and 1")
        _check(send_timeout > 0 and login_score_deadline > 0, "timeouts must be positive")
        _check(max_retries >= 0 and 0 <= backoff <= max_backoff, "bad retry settings")
        self.sink: EventSink = resolved
        scorer = resolved if callable(getattr(sink, "score_login", None)) else None
        self.scorer: LoginScorer | None = cast("LoginScorer | None", scorer)
        limit = getattr(resolved, "max_batch", None)
        if isinstance(limit, int) and limit > 0:
            batch_size = min(batch_size, limit)
        self.batch_size = batch_size
        self.queue_size = queue_size
        self.flush_seconds = flush_seconds
        self.shutdown_deadline = shutdown_deadline
        self.send_timeout = send_timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sample_rate = sample_rate
        self.exclude_paths = tuple(exclude_paths)
        self.login_score_deadline = login_score_deadline
        self.max_pending_calls = max_pending_calls
        self.client_ip = ClientIPResolver()
        """Finds the client IP of an event; ``AuthGate`` replaces it with its own resolver."""
        self._sleep = sleep
        self._jitter = jitter
        self._queue: deque[Event] = deque()
        self._inflight: Sequence[Event] = ()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._closed = False
        self._room = queue_size  # 0 once closed: submit() then counts a drop and returns
        self._batch_less_one = self.batch_size - 1
        self._warned_idle = False
        self._queued = self._sent = self._dropped = self._failed = self._retried = 0

    @classmethod
    def from_settings(cls, settings: ReportingSettings, sink: EventSink) -> Reporter:
        """A reporter with the ``AUTHGATE_REPORTING__*`` sizes, rates and deadlines."""
        return cls(
            sink,
            queue_size=settings.queue_size,
            batch_size=settings.batch_size,
            flush_seconds=settings.flush_seconds,
            shutdown_deadline=settings.shutdown_deadline_seconds,
            sample_rate=settings.sample_rate,
            exclude_paths=settings.exclude_paths,
            login_score_deadline=settings.login_score_deadline_seconds,
        )

    # -- the request path -------------------------------------------------------------------

    def submit(self, event: Event) -> None:
        """Queue ``event``; never blocks, never raises, drops the oldest event when full."""
        queue = self._queue
        size = len(queue)
        if size >= self._room:  # full, or closed (room 0)
            self._dropped += 1
            if self._closed:
                return
            queue.popleft()
            size -= 1
        queue.append(event)
        self._queued += 1
        if size >= self._batch_less_one:
            self._nudge()

    def _nudge(self) -> None:
        if not self._wake.is_set():
            self._wake.set()
        if self._task is None and not self._warned_idle:
            self._warned_idle = True
            logger.warning(
                "reporting: events are queued but the reporter is not running; run the app's "
                "lifespan (gate.install(app) ties the reporter to it) or call reporter.start()"
            )

    @property
    def counters(self) -> ReportingCounters:
        """What happened so far (see :class:`ReportingCounters`)."""
        return ReportingCounters(
            queued=self._queued,
            sent=self._sent,
            dropped=self._dropped,
            failed=self._failed,
            retried=self._retried,
            pending=len(self._queue) + len(self._inflight) + len(self._side_tasks),
        )

    @property
    def running(self) -> bool:
        """True while the worker runs."""
        return self._task is not None and not self._task.done()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker in the running event loop; a second call is a no-op."""
        if self.running:
            return
        self._closing = self._closed = False
        self._room = self.queue_size
        self._wake = asyncio.Event()
        if self._queue:
            self._wake.set()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="fastapi_authgate reporting worker"
        )

    async def aclose(self) -> None:
        """Deliver what is queued within ``shutdown_deadline``, then stop; safe to call twice."""
        if self._closed:
            return
        self._closing = True
        deadline = self.shutdown_deadline
        started = time.monotonic()
        task = self._task
        if task is not None and not task.done():
            self._wake.set()
            await asyncio.wait({task}, timeout=deadline)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        late: set[asyncio.Task[Any]] = set()
        if self._side_tasks:
            remaining = max(0.0, deadline - (time.monotonic() - started))
            pending = set(self._side_tasks)
            _done, late = await asyncio.wait(pending, timeout=remaining)
            for side in late:
                side.cancel()
            if late:
                await asyncio.wait(late)
        self._closed = True
        self._room = 0
        self._task = None
        unsent = len(self._queue) + len(self._inflight) + len(late)
        self._queue.clear()
        self._inflight = ()
        if unsent:
            self._failed += unsent
            logger.warning(
                "reporting: %d event(s) could not be sent within the %gs shutdown deadline "
                "(AUTHGATE_REPORTING__SHUTDOWN_DEADLINE_SECONDS); they are lost",
                unsent,
                deadline,
            )
        closer = getattr(self.sink, "aclose", None)
        if callable(closer):
            try:
                await closer()
            except Exception:
                logger.exception("reporting: closing the sink %r failed", type(self.sink).__name__)

    # -- background work --------------------------------------------------------------------

    def spawn(self, make: Callable[[], Awaitable[T]]) -> asyncio.Task[T] | None:
        """Run ``make()`` in the background, counted as one queued event.

        :meth:`aclose` waits for it within the shutdown deadline. Returns ``None`` (and counts a
        drop) when ``max_pending_calls`` are already in flight or the reporter is closed.
        """
        if self._closing or self._closed or len(self._side_tasks) >= self.max_pending_calls:
            self._dropped += 1
            return None
        self._queued += 1

        async def wrapped() -> T:
            return await make()

        task: asyncio.Task[T] = asyncio.get_running_loop().create_task(wrapped())
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)
        return task

    def count(self, *, sent: int = 0, failed: int = 0) -> None:
        """Account for calls made outside the queue (see :meth:`spawn`)."""
        self._sent += sent
        self._failed += failed

    async def _run(self) -> None:
        queue = self._queue
        while True:
            if len(queue) < self.batch_size and not self._closing:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_seconds):
                        await self._wake.wait()
            if not queue:
                if self._closing:
                    return
                continue
            size = min(self.batch_size, len(queue))
            batch = [queue.popleft() for _ in range(size)]
            self._inflight = batch
            try:
                await self._deliver(batch)
            except Exception:  # a bug in a sink must not end reporting for the process
                self._failed += len(batch)
                logger.exception("reporting: delivering a batch failed unexpectedly")
            self._inflight = ()

    async def _deliver(self, batch: Sequence[Event]) -> None:
        attempt = 0
        sink_name = type(self.sink).__name__
        while True:
            try:
                async with asyncio.timeout(self.send_timeout):
                    await self.sink.send(batch)
            except Exception as exc:
                retryable, wait = retry_hint(exc)
                reason = _describe(exc)
                if not retryable or attempt >= self.max_retries:
                    self._failed += len(batch)
                    logger.warning(
                        "reporting: %s could not deliver %d event(s): %s; %s",
                        sink_name,
                        len(batch),
                        reason,
                        f"giving up after {attempt + 1} attempts" if retryable else "not retried",
                    )
                    return
                delay = self._delay(attempt, wait)
                if self._closing:
                    logger.warning(
                        "reporting: %s failed during shutdown (%s); retrying in %.2fs",
                        sink_name,
                        reason,
                        delay,
                    )
                else:
                    logger.info(
                        "reporting: %s failed (%s); retrying %d event(s) in %.2fs",
                        sink_name,
                        reason,
                        len(batch),
                        delay,
                    )
                attempt += 1
                self._retried += len(batch)
                await self._sleep(delay)
                continue
            self._sent += len(batch)
            return

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        base = min(self.max_backoff, self.backoff * 2.0**attempt)
        delay = base * (0.5 + 0.5 * self._jitter())  # "equal jitter": spread, never near zero
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay


def _describe(exc: BaseException) -> str:
    """The reason for an operator: the class and status, never the message (it may hold data)."""
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, TimeoutError):
        return "timeout"
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if isinstance(status, int) else "")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigurationError(message)
