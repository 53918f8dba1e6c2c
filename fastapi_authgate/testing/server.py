"""Serve an ASGI app (a fake provider, your app) on 127.0.0.1 for the length of a ``with`` block.

The fake providers in this package are real HTTP servers: the code under test talks to them over a
socket exactly as it would talk to the real provider, so timeouts, redirects, status codes and
bodies take the same path they take in production. Needs ``uvicorn`` (in the ``[test]`` and
``[example]`` extras).

Example::

    from fastapi_authgate.testing import FakeQyzar, serve

    with serve(FakeQyzar().app) as base_url:
        ...  # AUTHGATE_QYZAR__API_URL=base_url
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["serve"]


@contextmanager
def serve(
    app: Any, *, host: str = "127.0.0.1", start_timeout: float = 10, **options: Any
) -> Iterator[str]:
    """Run ``app`` under uvicorn in a daemon thread on a free port; yields ``http://host:port``.

    ``options`` go to ``uvicorn.Config`` (``root_path="/svc"`` is ``uvicorn --root-path /svc``).

    The port is bound before the server starts, so there is no race for it; the server stops
    (and the thread is joined) when the block ends, even when the block raises.

    Raises:
        RuntimeError: the server did not start within ``start_timeout`` seconds.
    """
    import uvicorn

    class _ThreadServer(uvicorn.Server):
        def install_signal_handlers(self) -> None:  # signals belong to the main thread
            pass

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False, **options)
    server = _ThreadServer(config)

    def run() -> None:
        # uvicorn exits when the app's startup fails; that is reported below, not as a crash
        with contextlib.suppress(SystemExit):
            server.run(sockets=[sock])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    try:
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"test server on {host}:{port} did not start")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
