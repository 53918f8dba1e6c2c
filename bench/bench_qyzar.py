"""Qyzar session verification with a warm cache, side by side with no-op guards, as ratios.

Routes (all return the same plain dict the same way, and every request carries the same Qyzar
cookies, so only the guard differs):

- ``bare``          no dependency
- ``noop``          a no-op ``SecurityBase`` dependency: FastAPI's floor for any guard
- ``noop_scopes``   the same no-op also taking ``SecurityScopes``: ``require_user``'s shape
- ``qyzar``         ``require_user`` with ``AUTHGATE_PROVIDER=qyzar`` semantics: the two cookies are
                    read, hashed and answered from the verified-session cache (warm)

Then the upstream calls: 1,000 requests of one session within one cache life, sent one after the
other and then all at once (cold cache each time), against a fake Qyzar on loopback. Target: 1.

Run: ``.venv/bin/python -m bench.bench_qyzar`` (add ``--quick`` for a short run).
"""

from __future__ import annotations

import asyncio
import statistics
import sys

from bench._apps import one_route_app
from bench._driver import Headers, call, measure, print_table, ratio
from bench.bench_guard import NoopGuard, NoopScopesGuard
from fastapi_authgate import AuthGate, require_user
from fastapi_authgate.providers.qyzar import QyzarClient, QyzarSessionVerifier
from fastapi_authgate.testing import FakeQyzar, serve


def verifier_for(fake: FakeQyzar, url: str) -> QyzarSessionVerifier:
    client = QyzarClient(
        api_url=url,
        project_id=fake.project_id,
        resolve_project_secret=lambda _pid: fake.project_secret,
        timeout=10,
    )
    return QyzarSessionVerifier(client, cache_ttl=300)


def upstream_calls(fake: FakeQyzar, url: str, cookie: Headers, *, concurrent: bool) -> int:
    """Upstream session verifications for 1,000 requests of one session, cold cache."""

    async def main() -> int:
        verifier = verifier_for(fake, url)
        app = one_route_app(AuthGate(verifier), require_user, as_parameter=True)
        before = fake.calls["session-verify"]
        if concurrent:
            answers = await asyncio.gather(*(call(app, "/r", cookie) for _ in range(1000)))
        else:
            answers = [await call(app, "/r", cookie) for _ in range(1000)]
        await verifier.aclose()
        if any(status != 200 for status, _ in answers):
            raise RuntimeError("a request was refused")
        return fake.calls["session-verify"] - before

    return asyncio.run(main())


def main() -> None:
    quick = "--quick" in sys.argv
    fake = FakeQyzar()
    session = fake.create_session(identifier="bench@example.com")
    cookie: Headers = [(b"cookie", session.cookie_header.encode())]
    with serve(fake.app) as url:
        verifier = verifier_for(fake, url)
        apps = {
            "bare": one_route_app(AuthGate(verifier)),
            "noop": one_route_app(AuthGate(verifier), NoopGuard(), as_parameter=True),
            "noop_scopes": one_route_app(AuthGate(verifier), NoopScopesGuard(), as_parameter=True),
            "qyzar": one_route_app(AuthGate(verifier), require_user, as_parameter=True),
        }
        asyncio.run(call(apps["qyzar"], "/r", cookie))  # warm the cache: one upstream call
        routes = [(name, app, "/r", lambda _i: cookie) for name, app in apps.items()]
        results = measure(
            routes, requests_per_round=200 if quick else 400, rounds=15 if quick else 41
        )
        print_table(results)
        print(f"qyzar x noop_scopes (the same shape): {ratio(results, 'qyzar', 'noop_scopes'):.3f}")
        print(
            "qyzar median req/s:",
            f"{statistics.median(results['qyzar']):,.0f}",
            f"(upstream calls during the timed rounds: {fake.calls['session-verify'] - 1})",
        )
        sequential = upstream_calls(fake, url, cookie, concurrent=False)
        concurrent = upstream_calls(fake, url, cookie, concurrent=True)
        print(f"upstream calls per 1,000 requests of one session, one after another: {sequential}")
        print(f"upstream calls per 1,000 requests of one session, all at once:       {concurrent}")


if __name__ == "__main__":
    main()
