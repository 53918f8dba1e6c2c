"""What background reporting costs a request, side by side in one process, as ratios.

Every variant is the same app (a gate, ``GET /r`` behind ``require_user`` with a repeated token,
returning the same dict), so only reporting differs:

- ``off``      no reporter: the baseline (``AUTHGATE_REPORTING__SINK`` unset)
- ``off_twin`` a second app built exactly like ``off``: ``off_twin / off`` is how far two
               identical apps differ in this harness (a few percent), the resolution of every
               other figure
- ``fast``     a reporter whose sink accepts every batch at once; its worker runs in the same
               event loop, so the cost of draining is charged to this variant too
- ``log``      the log sink, writing JSON lines to a file handler on ``/dev/null``
- ``hanging``  a sink whose ``send`` never returns: the queue (1,000 here) fills and every new
               event drops the oldest, the path a request takes when the sink is stuck

Targets: ``fast / off`` and ``hanging / off`` at least 0.95.

Run: ``.venv/bin/python -m bench.bench_reporting`` (add ``--quick`` for a short run).
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from bench._apps import one_route_app
from bench._driver import Headers, measure, ratio
from fastapi_authgate import AuthGate, require_user
from fastapi_authgate.events import Event
from fastapi_authgate.providers.dev import DevIssuer
from fastapi_authgate.reporting import LogSink, Reporter, ReportingCounters


class FastSink:
    async def send(self, events: Sequence[Event]) -> None:
        return None


class HangingSink:
    async def send(self, events: Sequence[Event]) -> None:
        await asyncio.Event().wait()


def main() -> None:
    quick = "--quick" in sys.argv
    issuer = DevIssuer()
    token = issuer.issue("alice")
    headers: Headers = [
        (b"authorization", f"Bearer {token}".encode()),
        (b"user-agent", b"bench/1.0"),
        (b"x-request-id", b"req-0123456789"),
    ]

    # the hanging reporter's shutdown warns that its queue is lost: expected here
    logging.getLogger("fastapi_authgate.reporting").setLevel(logging.ERROR)
    events_log = logging.getLogger("bench.reporting.events")
    events_log.propagate = False
    events_log.setLevel(logging.INFO)
    devnull = logging.FileHandler(os.devnull)
    events_log.addHandler(devnull)

    reporters = {
        "fast": Reporter(FastSink()),
        "log": Reporter(LogSink(events_log)),
        "hanging": Reporter(HangingSink(), queue_size=1000, send_timeout=3600, shutdown_deadline=0),
    }
    apps: dict[str, Any] = {
        name: one_route_app(AuthGate(issuer.verifier()), require_user, as_parameter=True)
        for name in ("off", "off_twin")
    }
    for name, reporter in reporters.items():
        gate = AuthGate(issuer.verifier(), reporter=reporter)
        apps[name] = one_route_app(gate, require_user, as_parameter=True)

    async def start() -> None:
        for reporter in reporters.values():
            await reporter.start()

    during: dict[str, ReportingCounters] = {}

    async def stop() -> None:
        for name, reporter in reporters.items():
            during[name] = reporter.counters  # before the shutdown flush: what the rounds did
            await reporter.aclose()

    routes = [(name, app, "/r", lambda i: headers) for name, app in apps.items()]
    results = measure(
        routes,
        requests_per_round=200 if quick else 500,
        rounds=11 if quick else 31,
        start=start,
        stop=stop,
        pass_loop=True,  # as a server does: the workers drain during the rounds, and are charged
    )
    print(f"{'variant':<10} {'req/s (median)':>15} {'x off':>8}")
    for name, rounds in results.items():
        print(f"{name:<10} {statistics.median(rounds):>15,.0f} {ratio(results, name, 'off'):>8.3f}")
    print()
    print("counters when the last round ended (before the shutdown flush):")
    for name, c in during.items():
        print(f"{name:<10} queued={c.queued} sent={c.sent} dropped={c.dropped} pending={c.pending}")
    fast = during["fast"]
    if fast.dropped or fast.pending >= reporters["fast"].batch_size:
        raise SystemExit(
            "the fast sink fell behind or dropped events during the rounds: the figures mean "
            "nothing"
        )
    if during["hanging"].dropped == 0:
        raise SystemExit(
            "the hanging sink dropped nothing: its variant never took the overflow path"
        )


if __name__ == "__main__":
    main()
