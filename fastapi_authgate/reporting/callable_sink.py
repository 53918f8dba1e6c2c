"""``CallableSink``: any ``async def deliver(events) -> None`` as a sink.

This is how events reach a queue, a database or an HTTP endpoint of your own without writing a
class: the function gets each batch (a read-only sequence of events) and raises to signal a
failure. Raise an exception with a ``status`` of 429 or 5xx (and optionally ``retry_after``), a
``TimeoutError`` or a connection error to have the batch retried; anything else fails it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from fastapi_authgate.events import Event

__all__ = ["CallableSink", "DeliverFunc"]

DeliverFunc = Callable[[Sequence[Event]], Awaitable[None]]
"""An async callable that delivers one batch of events."""


class CallableSink:
    """Adapts ``deliver`` to :class:`~fastapi_authgate.protocols.EventSink`.

    Args:
        deliver: awaited with each batch.
        max_batch: the largest batch ``deliver`` accepts (``None``: the reporter's batch size).
    """

    def __init__(self, deliver: DeliverFunc, *, max_batch: int | None = None) -> None:
        if not callable(deliver):
            raise TypeError("CallableSink needs an async callable")
        self.deliver = deliver
        self.max_batch = max_batch

    async def send(self, events: Sequence[Event]) -> None:
        """Hand the batch to ``deliver``."""
        await self.deliver(events)

    def __repr__(self) -> str:
        name = getattr(self.deliver, "__qualname__", type(self.deliver).__name__)
        return f"CallableSink({name})"
