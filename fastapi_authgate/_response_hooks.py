"""The response-hook contract: code inside a request learns the response status before it is sent.

A dependency cannot see the status of the response its route produces, yet failure-only rate
limits must charge or refund by it. So the outermost piece of the gate that watches responses
puts a list under ``scope[RESPONSE_HOOKS_KEY]``; code running inside the request appends
``async (status) -> None`` callbacks, and the watcher awaits :func:`run_response_hooks` when the
app sends ``http.response.start``, *before* forwarding it, so a client cannot fire its next
attempt before this one is counted.

Two watchers exist: :class:`~fastapi_authgate.ratelimit.hooks.ResponseHooksMiddleware` (the
gate installs it when reporting is off) and
:class:`~fastapi_authgate.reporting.capture.ReportingMiddleware`, which takes over the job when
reporting is on, so a request pays for one watching layer, not two. Both need these pieces, and
neither package may import the other, so they live here, below both.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.types import Message, Send

__all__ = ["RESPONSE_HOOKS_KEY", "ResponseHook", "run_response_hooks", "send_after_hooks"]

# the name the hook runner always logged under, so operators' logging configuration still applies
logger = logging.getLogger("fastapi_authgate.ratelimit.hooks")

RESPONSE_HOOKS_KEY = "authgate.response_hooks"
"""Scope key of the list of hooks (absent when no watcher is installed)."""

ResponseHook = Callable[[int], Awaitable[None]]
"""Called once with the HTTP status of the response."""


async def run_response_hooks(hooks: list[ResponseHook], status: int) -> None:
    """Await every hook once with ``status``; a failing hook is logged and never breaks the rest."""
    pending = hooks[:]
    hooks.clear()
    for hook in pending:
        try:
            await hook(status)
        except Exception:
            logger.exception("response hook %r failed for status %d", hook, status)


async def send_after_hooks(hooks: list[ResponseHook], send: Send, message: Message) -> None:
    """Run the hooks with the status of ``message`` (an ``http.response.start``), then send it."""
    await run_response_hooks(hooks, message["status"])
    await send(message)
