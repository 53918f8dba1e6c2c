"""Rate limits under real load: uvicorn served over loopback, driven by ``wrk``, as ratios.

For one and two uvicorn workers and for 16 and 128 connections, the three variants of
``bench/wrk_app.py`` (bare route, memory limiter, Redis limiter) are each started, driven by
``wrk -t1`` for ``--seconds`` and stopped, in an order that alternates every round; each cell's
figure is the median over ``--rounds``. Ratios are taken within a round, like the in-process
benchmark does. For Redis it also prints decisions and round trips per second (from the
workers' own counters) and fails if any decision missed its deadline or fell back, because a
limiter that failed open or went local would still answer 200.

Needs Debian's ``wrk`` (``apt-get install wrk``) and a Redis server on 127.0.0.1:6379 (database
15, a fresh key prefix deleted afterwards). Run: ``.venv/bin/python -m bench.bench_wrk``
(``--quick`` for one short round).

``--reporting`` measures background reporting instead: the bare route with no reporter, with a
fast sink and with a hanging sink, one uvicorn worker each, 16 and 128 connections. The three
servers start once and stay warm, and each round drives each of them for ``--seconds`` in an
alternating order (``--seconds 1 --rounds 30`` is a good run). It fails if the fast sink's
reporter dropped an event or sent nothing, or if the hanging one dropped nothing, since either
would mean the variant did not run as described.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench.bench_ratelimit import REDIS_URL, delete_prefix, redis_down_reason

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("bare", "memory", "redis")
REPORTING_VARIANTS = ("bare", "report_fast", "report_hanging")
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``bench/wrk_app.py`` as ``variant`` under uvicorn on a free loopback port.

    :meth:`stop` ends it and returns the counters its workers wrote when they shut down.
    """

    def __init__(self, variant: str, workers: int, prefix: str) -> None:
        self.variant = variant
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/r"
        self._stats_dir = tempfile.mkdtemp(prefix="authgate-wrk-")
        env = {
            **os.environ,
            "BENCH_VARIANT": variant,
            "BENCH_REDIS_URL": REDIS_URL,
            "BENCH_REDIS_PREFIX": prefix,
            "BENCH_STATS_DIR": self._stats_dir,
        }
        command = [sys.executable, "-m", "uvicorn", "bench.wrk_app:app", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--workers", str(workers)]
        command += ["--log-level", "warning", "--no-access-log"]
        self._process = subprocess.Popen(command, cwd=ROOT, env=env)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(self.url, timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError(f"uvicorn ({variant}, {workers} workers) did not start")
                time.sleep(0.1)
            if workers > 1:
                time.sleep(1.0)  # let every worker finish starting before the clock runs
        except BaseException:
            self.stop()
            raise

    def stop(self) -> dict[str, float]:
        self._process.terminate()
        self._process.wait(timeout=30)
        totals: dict[str, float] = {}
        for path in Path(self._stats_dir).glob("*.json"):
            for name, value in json.loads(path.read_text()).items():
                totals[name] = totals.get(name, 0.0) + float(value)
        shutil.rmtree(self._stats_dir, ignore_errors=True)
        return totals


def drive(url: str, connections: int, seconds: float, variant: str) -> float:
    """``wrk -t1`` against ``url``; requests per second. Raises on any response that is not 200."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = _RATE.search(out)
    if rate is None:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{out}")
    bad = _NON_2XX.search(out)
    if bad is not None:
        raise RuntimeError(f"{variant}: {bad.group(1)} responses were not 200:\n{out}")
    return float(rate.group(1))


def run_cell(
    variant: str, workers: int, connections: int, seconds: float, prefix: str
) -> dict[str, float]:
    """Serve ``variant`` with ``workers`` workers, drive it with wrk; throughput and counters."""
    server = Server(variant, workers, prefix)
    try:
        rps = drive(server.url, connections, seconds, variant)
    finally:
        totals = server.stop()
    result = {"rps": rps}
    if variant == "redis":
        if len(list(totals)) == 0:
            raise RuntimeError("the Redis workers wrote no counters")
        if totals["deadline_misses"] or totals["store_failures"]:
            raise RuntimeError(f"the Redis limiter missed its deadline or failed: {totals}")
        result["decisions_per_s"] = totals["decisions"] / seconds
        result["round_trips_per_s"] = totals["round_trips"] / seconds
        result["per_round_trip"] = totals["batched_decisions"] / max(1.0, totals["round_trips"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round of 3 s per cell")
    parser.add_argument("--reporting", action="store_true", help="background reporting instead")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 3.0, 1
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian's package)")
    if args.reporting:
        reporting(args.seconds, args.rounds)
        return
    reason = redis_down_reason()
    if reason is not None:
        raise SystemExit(f"the Redis variant needs Redis: {reason}")
    # uvicorn picks uvloop and httptools when they are installed (uvicorn[standard]); say which
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    try:
        from redis.utils import HIREDIS_AVAILABLE
    except ImportError:  # pragma: no cover - the redis variant would have failed already
        HIREDIS_AVAILABLE = False
    print(
        f"uvicorn with {loop} and {http}; redis-py with "
        f"{'hiredis' if HIREDIS_AVAILABLE else 'its Python parser'}; wrk -t1; "
        f"{args.seconds:g} s per cell, median of {args.rounds} rounds; {os.cpu_count()} cores"
    )
    prefix = f"authgate-bench:{uuid.uuid4().hex}:"
    cells: dict[tuple[int, int], dict[str, list[dict[str, float]]]] = {}
    try:
        for round_number in range(args.rounds):
            for workers in (1, 2):
                for connections in (16, 128):
                    order = VARIANTS if round_number % 2 == 0 else VARIANTS[::-1]
                    cell = cells.setdefault((workers, connections), {v: [] for v in VARIANTS})
                    for variant in order:
                        cell[variant].append(
                            run_cell(variant, workers, connections, args.seconds, prefix)
                        )
    finally:
        deleted = delete_prefix(REDIS_URL, prefix)
    header = (
        f"{'workers':>7} {'conns':>5} {'bare req/s':>11} {'memory':>9} {'redis':>9}"
        f" {'mem/bare':>8} {'redis/mem':>9} {'decisions/s':>11} {'round trips/s':>13}"
        f" {'per trip':>8}"
    )
    print(header)
    for (workers, connections), cell in cells.items():
        rps = {v: statistics.median(r["rps"] for r in cell[v]) for v in VARIANTS}
        ratios = {
            "mem/bare": statistics.median(
                m["rps"] / b["rps"] for m, b in zip(cell["memory"], cell["bare"], strict=True)
            ),
            "redis/mem": statistics.median(
                r["rps"] / m["rps"] for r, m in zip(cell["redis"], cell["memory"], strict=True)
            ),
        }
        redis_runs = cell["redis"]
        print(
            f"{workers:>7} {connections:>5} {rps['bare']:>11,.0f} {rps['memory']:>9,.0f}"
            f" {rps['redis']:>9,.0f} {ratios['mem/bare']:>8.2f} {ratios['redis/mem']:>9.2f}"
            f" {statistics.median(r['decisions_per_s'] for r in redis_runs):>11,.0f}"
            f" {statistics.median(r['round_trips_per_s'] for r in redis_runs):>13,.0f}"
            f" {statistics.median(r['per_round_trip'] for r in redis_runs):>8.1f}"
        )
    print(f"(redis: prefix {prefix}, no deadline miss or failure; {deleted} keys deleted)")


def reporting(seconds: float, rounds: int) -> None:
    """Reporting on (fast sink, hanging sink) against off: warm servers, short alternating bursts.

    The three servers (one uvicorn worker each) start once and stay up, and each round drives
    each of them for ``seconds`` in an order that alternates, so a ratio compares bursts a few
    seconds apart on servers that are all equally warm; a server's start-up and first requests,
    which scatter far more than reporting costs, are outside every figure.
    """
    print(f"reporting under wrk -t1, warm servers; {seconds:g} s bursts, median of {rounds} rounds")
    servers = {variant: Server(variant, 1, "unused:") for variant in REPORTING_VARIANTS}
    rates: dict[int, dict[str, list[float]]] = {}
    try:
        for connections in (16, 128):
            cell = rates.setdefault(connections, {v: [] for v in REPORTING_VARIANTS})
            for variant, server in servers.items():  # warm-up, not counted
                drive(server.url, connections, 1, variant)
            for round_number in range(rounds):
                order = REPORTING_VARIANTS if round_number % 2 == 0 else REPORTING_VARIANTS[::-1]
                for variant in order:
                    cell[variant].append(drive(servers[variant].url, connections, seconds, variant))
    finally:
        totals = {variant: server.stop() for variant, server in servers.items()}
    fast, hanging = totals["report_fast"], totals["report_hanging"]
    print(f"{'conns':>5} {'off req/s':>10} {'fast/off':>9} {'hanging/off':>12}")
    for connections, cell in rates.items():
        off = cell["bare"]
        print(
            f"{connections:>5} {statistics.median(off):>10,.0f}"
            f" {_median_ratio(cell['report_fast'], off):>9.3f}"
            f" {_median_ratio(cell['report_hanging'], off):>12.3f}"
        )
    print(f"fast sink: {fast}\nhanging sink: {hanging}")
    if not fast.get("sent") or fast.get("dropped"):
        raise SystemExit("the fast sink's reporter fell behind (or sent nothing): no figure")
    if not hanging.get("dropped"):
        raise SystemExit("the hanging sink's reporter dropped nothing: no figure")


def _median_ratio(rates: list[float], base: list[float]) -> float:
    """Median over rounds of ``rates / base`` taken within each round."""
    return statistics.median(a / b for a, b in zip(rates, base, strict=True))


if __name__ == "__main__":
    main()
