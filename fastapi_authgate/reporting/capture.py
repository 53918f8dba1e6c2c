"""``ReportingMiddleware``: records every HTTP request the app answers, as pure ASGI.

FastAPI's ``BackgroundTasks`` run only when the route returns, so a request a dependency refuses
(401, 403, 429, 503) would never be reported; this middleware wraps the whole application instead
(``AuthGate.install`` puts it outside every other middleware, Starlette's error middleware
included) and reads the status from ``http.response.start``. After the app returns it builds one
:class:`~fastapi_authgate.events.RequestEvent` and hands it to
:meth:`Reporter.submit <fastapi_authgate.reporting.reporter.Reporter.submit>`, which only
appends to a queue: the middleware itself never awaits I/O.

What an event holds comes from the scope only: method, path without the query string, the
route template (``scope["route"]``, with the prefix of any mount), status, latency, the verified
subject and session id (``scope["auth"]``, set by the gate), the client IP by the gate's
trusted-proxy rules, the user agent (first 256 characters) and the ``X-Request-ID`` header when
it is short printable text. Never a header other than those two, a cookie or a body.

An exception escaping the app counts as status 500 when no response was started. Paths in
``exclude_paths`` (exact, or a prefix ending in ``*``) are not reported; ``sample_rate`` thins
successful requests only, so every refusal and error is kept. WebSocket and lifespan scopes are
not reported.

Installed by the gate, it also does the job of the gate's ``ResponseHooksMiddleware`` (scope
items and response hooks, see :mod:`fastapi_authgate._response_hooks`), which the gate then
leaves out: watching one response twice, in two layers, cost about 5 % of a cached request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from random import random
from time import perf_counter

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastapi_authgate._response_hooks import (
    RESPONSE_HOOKS_KEY,
    ResponseHook,
    run_response_hooks,
    send_after_hooks,
)
from fastapi_authgate.client_ip import ClientIPResolver
from fastapi_authgate.context import AuthContext
from fastapi_authgate.events import RequestEvent
from fastapi_authgate.reporting.reporter import Reporter

__all__ = ["ReportingMiddleware", "read_headers"]

_MAX_USER_AGENT = 256
_MAX_REQUEST_ID = 128
_USER_AGENT = b"user-agent"
_new_tuple = tuple.__new__


class _Paths:
    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = list(patterns)
        self.exact = frozenset(p for p in patterns if not p.endswith("*"))
        self.prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
        self.empty = not patterns

    def matches(self, path: str) -> bool:
        return path in self.exact or (bool(self.prefixes) and path.startswith(self.prefixes))


_VISIBLE_ASCII = bytes(range(0x21, 0x7F))
"""What a request id may hold: ``bytes.translate`` deleting these leaves nothing of a good one."""


def _request_id(value: bytes) -> str | None:
    """The request id when it is 1-128 visible ASCII characters (no spaces), else ``None``."""
    if 0 < len(value) <= _MAX_REQUEST_ID and not value.translate(None, _VISIBLE_ASCII):
        return value.decode("ascii")
    return None


def read_headers(
    scope: Scope, request_id_header: bytes = b"x-request-id"
) -> tuple[str | None, str | None]:
    """``(user agent, request id)`` in one pass over the headers.

    The user agent is cut to 256 characters; the request id is kept only when it is 1-128
    visible ASCII characters (no spaces), else it is ``None`` rather than cleaned up.
    """
    user_agent: str | None = None
    request_id: str | None = None
    for name, value in scope["headers"]:
        if name == _USER_AGENT:
            user_agent = value[:_MAX_USER_AGENT].decode("latin-1")
        elif name == request_id_header:
            request_id = _request_id(value)
    return user_agent, request_id


class ReportingMiddleware:
    """Reports each HTTP request to a :class:`Reporter` once its response is complete.

    Args:
        app: the application to wrap.
        reporter: where events go; its ``sample_rate`` and ``exclude_paths`` apply.
        client_ip: finds the client IP (default: the reporter's, which the gate sets to its own,
            so the reported IP follows the trusted-proxy rules).
        request_id_header: the header holding a request id.
        clock: UNIX time for the event's ``at`` (injected in tests).
        scope_items: copied into every HTTP and WebSocket scope (the gate's own entries).
        response_hooks: also run the response hooks of ``scope["authgate.response_hooks"]``
            (see :mod:`fastapi_authgate._response_hooks`), as ``ResponseHooksMiddleware`` would.

    With ``scope_items`` and ``response_hooks`` this one layer does the gate's
    ``ResponseHooksMiddleware``'s job as well, which is how ``AuthGate.install`` uses it: every
    request then pays for one layer watching its response, not two.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        reporter: Reporter,
        client_ip: ClientIPResolver | None = None,
        request_id_header: str = "x-request-id",
        clock: Callable[[], float] = time.time,
        scope_items: Mapping[str, object] | None = None,
        response_hooks: bool = False,
    ) -> None:
        self.app = app
        self.scope_items = dict(scope_items or {})
        self.response_hooks = response_hooks
        self.reporter = reporter
        self.client_ip = client_ip if client_ip is not None else reporter.client_ip
        self.request_id_header = request_id_header.lower().encode("latin-1")
        self.clock = clock
        self._exclude = _Paths(reporter.exclude_paths)
        self._sample_rate = reporter.sample_rate
        self._submit = reporter.submit
        self._resolve_ip = self.client_ip.resolve_scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        items = self.scope_items
        if kind != "http":
            if items and kind == "websocket":
                scope.update(items)
            await self.app(scope, receive, send)
            return
        if items:
            scope.update(items)
        hooks: list[ResponseHook] | None = None
        if self.response_hooks:
            hooks = []
            scope[RESPONSE_HOOKS_KEY] = hooks
        reported = self._exclude.empty or not self._exclude.matches(scope["path"])
        at = self.clock()
        started = perf_counter()
        root_path = scope.get("root_path", "")
        status = 0

        def send_and_watch(message: Message) -> Awaitable[None]:
            # a plain function handing back the inner send's awaitable: no coroutine of its own
            # per message, which is most of what watching the status costs
            nonlocal status
            if not status and message["type"] == "http.response.start":
                status = message["status"]
                if hooks:  # before the client sees the status (failure-only limits count first)
                    return send_after_hooks(hooks, send, message)
            return send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except Exception:
            if not status and hooks:
                await run_response_hooks(hooks, 500)
            raise
        finally:
            # Inlined on purpose (no helper calls): this runs for every request.
            elapsed_ms = (perf_counter() - started) * 1000.0
            if not status:
                status = 500
            rate = self._sample_rate
            if reported and (
                rate >= 1.0 or status >= 400 or random() < rate  # noqa: S311 (sampling)
            ):
                user_agent: str | None = None
                request_id: str | None = None
                wanted = self.request_id_header
                for name, value in scope["headers"]:
                    if name == _USER_AGENT:
                        user_agent = value[:_MAX_USER_AGENT].decode("latin-1")
                    elif name == wanted:
                        request_id = _request_id(value)
                auth = scope.get("auth")
                if type(auth) is AuthContext:  # not another library's auth object
                    subject: str | None = auth.subject
                    session_id = auth.session_id
                else:
                    subject = session_id = None
                route = scope.get("route")
                template = getattr(route, "path", None)
                if type(template) is not str or isinstance(route, Mount):
                    template = None  # no route, or a mount that matched nothing inside
                else:
                    mounted = scope.get("root_path", "")
                    if mounted != root_path and type(mounted) is str:
                        template = mounted[len(root_path) :] + template
                self._submit(
                    _new_tuple(  # what RequestEvent(...) does, without its Python-level __new__
                        RequestEvent,
                        (
                            at,
                            scope["method"],
                            scope["path"],
                            template,
                            status,
                            elapsed_ms,
                            self._resolve_ip(scope),
                            user_agent,
                            subject,
                            session_id,
                            request_id,
                        ),
                    )
                )
