"""Run an ASGI app under uvicorn on 127.0.0.1, a free port, in a background thread.

Fake providers are real HTTP servers: the code under test talks to them over a socket exactly as
it would talk to the real provider.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


class TestServer(uvicorn.Server):
    """A uvicorn server that does not install signal handlers (it lives in a thread)."""

    __test__ = False

    def install_signal_handlers(self) -> None:
        pass


@contextmanager
def serve(app: Any, *, host: str = "127.0.0.1", **options: Any) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL (``http://127.0.0.1:PORT``).

    ``options`` go to ``uvicorn.Config`` (``root_path="/svc"`` is ``uvicorn --root-path /svc``).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False, **options)
    server = TestServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
