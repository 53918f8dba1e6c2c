"""A fake event collector: a real FastAPI app that takes batches the way a log backend does.

``POST /events`` with ``{"events": [...]}`` answers 202 ``{"accepted": n}`` and keeps the events.
Knobs (plain attributes, set from the test thread): ``fail_next`` (answer the next N batches with
``fail_status``, carrying ``retry_after`` when set), ``delay`` (seconds to stall before
answering; a large value makes it hang). ``received`` holds every accepted event, ``raw`` the
exact request bodies, ``calls`` counts every batch that arrived, accepted or not.

:class:`HTTPSink` is the client side: an ``EventSink`` that posts each batch over real HTTP and
raises ``httpx.HTTPStatusError`` (status and ``Retry-After`` readable) on a non-2xx answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fastapi_authgate.events import Event
from tests.servers import serve


class FakeSinkServer:
    """One collector; use :meth:`running` to serve it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.calls = 0
        self.fail_next = 0
        self.fail_status = 503
        self.retry_after: int | None = None
        self.delay = 0.0
        self._lock = threading.Lock()
        self.app = FastAPI()

        @self.app.post("/events")
        async def events(request: Request) -> JSONResponse:
            body = await request.body()
            with self._lock:
                self.calls += 1
                failing = self.fail_next > 0
                if failing:
                    self.fail_next -= 1
            if self.delay:
                await asyncio.sleep(self.delay)
            if failing:
                headers = {"Retry-After": str(self.retry_after)} if self.retry_after else {}
                return JSONResponse(
                    {"error": "unavailable"}, status_code=self.fail_status, headers=headers
                )
            data = await request.json()
            with self._lock:
                self.raw.append(body)
                self.received.extend(data["events"])
            return JSONResponse({"accepted": len(data["events"])}, status_code=202)

    @contextmanager
    def running(self) -> Iterator[str]:
        with serve(self.app) as url:
            yield url


class HTTPSink:
    """Posts each batch to a :class:`FakeSinkServer` (``max_batch`` as the server allows)."""

    max_batch = 500

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url + "/events"
        self.client = httpx.AsyncClient(timeout=timeout)
        self.closed = False

    async def send(self, events: Sequence[Event]) -> None:
        response = await self.client.post(
            self.url, json={"events": [event.as_dict() for event in events]}
        )
        response.raise_for_status()

    async def aclose(self) -> None:
        self.closed = True
        await self.client.aclose()
