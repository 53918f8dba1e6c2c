"""Shared pieces of the rate-limit tests: a table verifier, an app factory, Redis helpers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from fastapi import Depends, FastAPI, WebSocket

from fastapi_authgate import AuthContext, AuthenticationError, AuthGate, Credentials
from fastapi_authgate.context import User
from fastapi_authgate.ratelimit.limiter import RateLimiter
from fastapi_authgate.reporting import Reporter

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def redis_answers() -> bool:
    """True when a Redis server answers PING on 127.0.0.1:6379."""
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


USERS: dict[str, AuthContext] = {
    "alice": AuthContext(
        subject="alice",
        provider="table",
        credential="bearer",
        user=User(id="alice", metadata={"org": "acme"}),
    ),
    "bob": AuthContext(
        subject="bob",
        provider="table",
        credential="bearer",
        user=User(id="bob", metadata={"org": "acme"}),
    ),
    "carol": AuthContext(
        subject="carol", provider="table", credential="bearer", claims={"org": "globex"}
    ),
    "dave": AuthContext(subject="dave", provider="table", credential="bearer"),
}


class TableVerifier:
    """Tokens are user names from :data:`USERS`; anything else is a bad token."""

    provider = "table"

    async def verify(self, credentials: Credentials) -> AuthContext | None:
        if credentials.bearer is None:
            return None
        context = USERS.get(credentials.bearer)
        if context is None:
            raise AuthenticationError("The token signature is invalid")
        return context


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def build_app(
    limiter: RateLimiter,
    routes: Sequence[tuple[str, Any]],
    *,
    trusted_proxies: Sequence[str] = (),
    reporter: Reporter | None = None,
) -> tuple[FastAPI, AuthGate]:
    """An app with the real gate and one ``GET`` route per ``(path, dependency)``.

    With a ``reporter`` the gate's reporting middleware watches responses (and runs the response
    hooks) instead of ``ResponseHooksMiddleware``.
    """
    gate = AuthGate(
        TableVerifier(), limiter=limiter, trusted_proxies=trusted_proxies, reporter=reporter
    )
    app = FastAPI()
    gate.install(app)
    for path, dependency in routes:

        async def endpoint() -> dict[str, bool]:
            return {"ok": True}

        app.add_api_route(path, endpoint, methods=["GET"], dependencies=[Depends(dependency)])
    return app, gate


def add_websocket(app: FastAPI, path: str, dependency: Any) -> None:
    async def socket_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    app.add_api_websocket_route(path, socket_endpoint, dependencies=[Depends(dependency)])


class TCPProxy:
    """A loopback TCP proxy to Redis that a test can slow down, cut and restore.

    Cutting closes every open connection and refuses new ones, which is what a dead Redis, a
    network partition or ``CLIENT KILL`` looks like to the client.
    """

    def __init__(self, target: tuple[str, int] = (REDIS_HOST, REDIS_PORT)) -> None:
        self.target = target
        self.latency = 0.0
        """Seconds added before each reply chunk is passed on (a slow Redis, or a slow network)."""
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers.update((writer, up_writer))

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, slow: bool = False
        ) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if slow and self.latency > 0:
                        await asyncio.sleep(self.latency)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer, slow=True))
        self.writers.difference_update((writer, up_writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()
        await self.server.wait_closed()
        self.server = None

    async def restore(self) -> None:
        await self.start()


ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def uvicorn_workers(count: int, env: Mapping[str, str]) -> Iterator[list[int]]:
    """``count`` uvicorn processes serving ``tests.ratelimit.worker_app``; yields their ports.

    Each is its own process on its own port (so a test knows which worker a connection talks
    to), started with ``env`` added to the environment, and terminated when the block ends.
    """
    ports = [_free_port() for _ in range(count)]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.ratelimit.worker_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
        )
        for port in ports
    ]
    try:
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        yield ports
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=10)
