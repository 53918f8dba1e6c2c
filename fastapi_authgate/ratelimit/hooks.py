"""A pure-ASGI middleware that tells interested code the response status before it is sent.

A dependency cannot see the status of the response its route produces (a dependency with
``yield`` sees exceptions, but not a returned ``JSONResponse(status_code=401)``). Failure-only rate
limits need it, so :class:`ResponseHooksMiddleware` puts a list under
``scope["authgate.response_hooks"]``; code running inside the request appends
``async (status) -> None`` callbacks, and the middleware awaits them when the app sends
``http.response.start``, *before* forwarding it, so a client cannot fire its next attempt before
this one is counted. An exception escaping the app with no response started counts as status 500.
A failing hook is logged and never breaks the response.

The same middleware also copies ``scope_items`` into every HTTP and WebSocket scope. The gate puts
itself there (``AuthGate.install``), so a guard finds it with one dict lookup instead of
``app.state.authgate``, whose ``__getattr__`` fallback raises and catches an ``AttributeError``
inside attribute lookup on every request; that alone cost more than a cached token check.

With background reporting on, the gate installs
:class:`~fastapi_authgate.reporting.capture.ReportingMiddleware` outermost in this one's place: it
watches every response anyway, so it runs the hooks and copies the scope items too, and a request
pays for one watching layer instead of two.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastapi_authgate._response_hooks import (
    RESPONSE_HOOKS_KEY,
    ResponseHook,
    run_response_hooks,
    send_after_hooks,
)

# the hook contract itself lives one layer down (``_response_hooks``), shared with the reporting
# middleware, which does this middleware's job when reporting is on; re-exported here
__all__ = ["RESPONSE_HOOKS_KEY", "ResponseHook", "ResponseHooksMiddleware"]


class ResponseHooksMiddleware:
    """Calls the hooks registered in ``scope["authgate.response_hooks"]`` with the status.

    Hooks run for ``http`` scopes only; ``scope_items`` are added to ``http`` and ``websocket``
    scopes; lifespan passes straight through.
    """

    def __init__(self, app: ASGIApp, *, scope_items: Mapping[str, object] | None = None) -> None:
        self.app = app
        self.scope_items = dict(scope_items or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket" and self.scope_items:
                scope.update(self.scope_items)
            await self.app(scope, receive, send)
            return
        if self.scope_items:
            scope.update(self.scope_items)
        hooks: list[ResponseHook] = []
        scope[RESPONSE_HOOKS_KEY] = hooks
        started = False

        def send_with_hooks(message: Message) -> Awaitable[None]:
            # a plain function handing back an awaitable: no coroutine of its own per message
            nonlocal started
            if not started and message["type"] == "http.response.start":
                started = True
                if hooks:
                    return send_after_hooks(hooks, send, message)
            return send(message)

        try:
            await self.app(scope, receive, send_with_hooks)
        except Exception:
            if not started and hooks:
                await run_response_hooks(hooks, 500)
            raise
