"""torii guard throughput against FastAPI's floor, side by side in one process, as ratios.

Routes (each its own app with one route at ``/r`` returning the same plain dict):

- ``bare``           no dependency
- ``noop``           a no-op ``SecurityBase`` dependency: FastAPI's own floor for any guard
- ``torii_cached``   ``require_user`` behind the torii verifier, the same torii token repeated
                     (keys fetched once from a fake torii on loopback, then the token cache)
- ``torii_rs256``    the same verifier with its token cache off: every request checks a signature

Run: ``.venv/bin/python -m bench.bench_torii`` (add ``--quick`` for a short run).
"""

from __future__ import annotations

import asyncio
import sys

from bench._apps import one_route_app
from bench._driver import call, measure, print_table, ratio
from bench.bench_guard import NoopGuard
from fastapi_authgate import AuthGate, require_user
from fastapi_authgate.providers.torii import torii_verifier
from fastapi_authgate.testing import FakeTorii, serve


def main() -> None:
    quick = "--quick" in sys.argv
    fake = FakeTorii()
    with serve(fake.app) as url:
        fake.issuer = url
        token = fake.issue("user_bench", session_id="sess_bench", ttl=3600)
        cached = AuthGate(torii_verifier(issuer=url))
        uncached = AuthGate(torii_verifier(issuer=url, token_cache_size=0))
        apps = {
            "bare": one_route_app(AuthGate(torii_verifier(issuer=url))),
            "noop": one_route_app(
                AuthGate(torii_verifier(issuer=url)), NoopGuard(), as_parameter=True
            ),
            "torii_cached": one_route_app(cached, require_user, as_parameter=True),
            "torii_rs256": one_route_app(uncached, require_user, as_parameter=True),
        }
        headers = [(b"authorization", f"Bearer {token}".encode())]

        async def prime() -> None:  # the one JWKS fetch happens here, outside the timing
            for name in ("torii_cached", "torii_rs256"):
                status, body = await call(apps[name], "/r", headers)
                assert status == 200, (name, status, body)

        asyncio.run(prime())
        routes = [(name, app, "/r", lambda i: headers) for name, app in apps.items()]
        results = measure(
            routes, requests_per_round=200 if quick else 400, rounds=15 if quick else 41
        )
        fetches = fake.jwks_hits
    print_table(results)
    print()
    print(
        f"torii cached / noop guard : {ratio(results, 'torii_cached', 'noop'):.3f} (target >= 0.95)"
    )
    print(f"torii cached / bare route : {ratio(results, 'torii_cached', 'bare'):.3f}")
    print(f"torii uncached / noop     : {ratio(results, 'torii_rs256', 'noop'):.3f}")
    print(f"JWKS fetches during the whole run: {fetches}")


if __name__ == "__main__":
    main()
