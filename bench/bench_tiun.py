"""tiun token exchange with a warm cache, side by side with no-op guards, and upstream calls.

Routes (all return the same plain dict the same way, so only the guard differs):

- ``bare``          no dependency
- ``noop``          a no-op ``SecurityBase`` dependency: FastAPI's floor for any guard
- ``noop_scopes``   the same no-op also taking ``SecurityScopes``: the shape of ``require_user``
- ``tiun``          ``require_user`` with ``TiunVerifier``, one token repeated (answer cached)
- ``jwt_cached``    ``require_user`` on the development issuer's JWT verifier, one token repeated
                    (its verified-token cache): the same guard path with a local verifier
- ``noop_pro``      the scope-taking no-op behind ``Security(..., scopes=["product:pro"])``
- ``tiun_pro``      ``Security(require_user, scopes=["product:pro"])``, the product check too

The verifier talks to a fake tiun served by uvicorn on 127.0.0.1 (a real HTTP exchange on a miss).
The cache lifetime is set to 300 s so that the whole measurement stays inside one cache life; the
upstream calls it made are printed, so a refill would show.

Then the upstream calls for 1,000 requests with one token on a cold verifier: sequential, and as
one concurrent burst (single flight).

Run: ``.venv/bin/python -m bench.bench_tiun`` (add ``--quick`` for a short run).
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Security

from bench._apps import one_route_app
from bench._driver import Headers, call, measure, print_table, ratio
from bench.bench_guard import NoopGuard, NoopScopesGuard
from fastapi_authgate import AuthGate, require_user
from fastapi_authgate.providers.dev import DevIssuer
from fastapi_authgate.providers.tiun import TiunVerifier
from fastapi_authgate.testing import FakeTiun


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        pass


def serve_in_thread(app: Any) -> tuple[str, _Server]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("fake tiun did not start")
        time.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def pro_route_app(gate: AuthGate, guard: Any) -> FastAPI:
    """``GET /r`` behind ``Security(guard, scopes=["product:pro"])``."""
    app = FastAPI()
    gate.install(app)

    @app.get("/r")
    async def pro(auth: Any = Security(guard, scopes=["product:pro"])) -> dict[str, bool]:
        return {"ok": True}

    return app


def verifier(fake: FakeTiun, url: str) -> TiunVerifier:
    return TiunVerifier(fake.api_key, environment="live", api_url=url, cache_ttl=300)


def calls_per_thousand(fake: FakeTiun, url: str, token: str) -> tuple[int, int]:
    """Upstream calls for 1,000 requests with one token: (sequential, one concurrent burst)."""
    headers: Headers = [(b"authorization", f"Bearer {token}".encode())]
    counts = []
    for concurrent in (False, True):
        fake.reset()
        app = one_route_app(AuthGate(verifier(fake, url)), require_user, as_parameter=True)

        async def run(app: Any = app, concurrent: bool = concurrent) -> None:
            if concurrent:
                answers = await asyncio.gather(*(call(app, "/r", headers) for _ in range(1000)))
            else:
                answers = [await call(app, "/r", headers) for _ in range(1000)]
            assert all(status == 200 for status, _ in answers)

        asyncio.run(run())
        counts.append(fake.calls)
    return counts[0], counts[1]


def main() -> None:
    quick = "--quick" in sys.argv
    fake = FakeTiun("live")
    url, server = serve_in_thread(fake.app)
    try:
        token = fake.issue_token("bench-user", product_access=["pro"], ttl=3600)
        headers: Headers = [(b"authorization", f"Bearer {token}".encode())]
        dev = DevIssuer(algorithm="ES256", issuer="https://bench.example")
        dev_headers: Headers = [
            (b"authorization", f"Bearer {dev.issue('bench-user', ttl=3600)}".encode())
        ]
        gate = AuthGate(verifier(fake, url))
        pro_gate = AuthGate(verifier(fake, url))
        apps = {
            "bare": one_route_app(gate),
            "noop": one_route_app(gate, NoopGuard(), as_parameter=True),
            "noop_scopes": one_route_app(gate, NoopScopesGuard(), as_parameter=True),
            "tiun": one_route_app(gate, require_user, as_parameter=True),
            "jwt_cached": one_route_app(AuthGate(dev.verifier()), require_user, as_parameter=True),
            "noop_pro": pro_route_app(pro_gate, NoopScopesGuard()),
            "tiun_pro": pro_route_app(pro_gate, require_user),
        }
        routes = [
            (name, app, "/r", lambda i, h=(dev_headers if name == "jwt_cached" else headers): h)
            for name, app in apps.items()
        ]
        fake.reset()
        results = measure(
            routes, requests_per_round=200 if quick else 400, rounds=15 if quick else 41
        )
        measured_calls = fake.calls
        print_table(results)
        print()
        print(
            f"tiun / noop_scopes (same shape)    : {ratio(results, 'tiun', 'noop_scopes'):.3f}"
            "  (target >= 0.95)"
        )
        print(f"tiun / noop (FastAPI's floor)      : {ratio(results, 'tiun', 'noop'):.3f}")
        print(f"tiun / jwt_cached (local verifier) : {ratio(results, 'tiun', 'jwt_cached'):.3f}")
        print(f"tiun_pro / noop_pro (scopes given) : {ratio(results, 'tiun_pro', 'noop_pro'):.3f}")
        print(f"upstream calls during the table    : {measured_calls} (two verifiers, one each)")
        sequential, burst = calls_per_thousand(fake, url, token)
        print(f"upstream calls / 1,000 requests, one token, sequential : {sequential}  (target 1)")
        print(f"upstream calls / 1,000 requests, one token, one burst  : {burst}  (target 1)")
    finally:
        server.should_exit = True


if __name__ == "__main__":
    main()
