"""Background reporting of API requests and login attempts; it never slows or fails a request.

* :class:`Reporter`: the bounded queue, the batching worker, retries and the shutdown flush.
* :class:`ReportingMiddleware`: pure-ASGI capture of every request, refused ones included.
* Sinks, one small module each: :class:`LogSink` (JSON lines on a logger), :class:`CallableSink`
  (any async callable) and :class:`QyzarSink` (Qyzar's request logs and anti-ATO calls).
* Login attempts: :func:`record_login_attempt`, the :func:`login_attempts` dependency and
  :func:`trust_identifier`.

``AuthGate(reporter=...)`` or ``AUTHGATE_REPORTING__SINK`` switches it on; ``gate.install(app)``
adds the middleware and ties the worker to the app's lifespan.
"""

from fastapi_authgate.events import Event, LoginEvent, LoginRisk, RequestEvent
from fastapi_authgate.reporting.callable_sink import CallableSink, DeliverFunc
from fastapi_authgate.reporting.capture import ReportingMiddleware
from fastapi_authgate.reporting.log_sink import EVENT_LOGGER, LogSink
from fastapi_authgate.reporting.login import (
    REPORTER_SCOPE_KEY,
    LoginAttempts,
    login_attempts,
    record_login_attempt,
    reporter_of,
    trust_identifier,
)
from fastapi_authgate.reporting.qyzar_sink import QyzarReportingClient, QyzarSink
from fastapi_authgate.reporting.reporter import Reporter, ReportingCounters, retry_hint

__all__ = [
    "CallableSink",
    "DeliverFunc",
    "EVENT_LOGGER",
    "Event",
    "LoginAttempts",
    "LoginEvent",
    "LoginRisk",
    "LogSink",
    "QyzarReportingClient",
    "QyzarSink",
    "REPORTER_SCOPE_KEY",
    "Reporter",
    "ReportingCounters",
    "ReportingMiddleware",
    "RequestEvent",
    "login_attempts",
    "record_login_attempt",
    "reporter_of",
    "retry_hint",
    "trust_identifier",
]
