"""Benchmark: sync API handlers (thread pool) against async handlers, on the libSQL SDK.

The review recommends ``AsyncSession`` for the API (its 5.1 and BP#8). The libSQL SDK
keeps the GIL while a statement runs (and while it waits), so what would async buy? Two
measurements, in the same run, on the same database:

1. GIL probe: how far a pure-Python thread counts while the main thread runs one SQL
   statement of ~0.3 s, through the libSQL SDK, through stdlib ``sqlite3`` (which releases
   the GIL while SQLite works), and during ``time.sleep`` (the baseline: the GIL is free).
2. HTTP: one uvicorn process (as each API replica runs) serving the same repository call
   from three kinds of route: a plain ``def`` route (FastAPI runs it in its thread pool:
   what the API does today), an ``async def`` route that hands the call to a thread with
   ``asyncio.to_thread`` (what an async database layer over this SDK amounts to), and an
   ``async def`` route calling the SDK directly on the event loop (what a naive async
   route does). A load generator in another process keeps ``--concurrency`` requests in
   flight and, alongside, times ``/ping`` (an ``async def`` returning at once) to see how
   responsive the event loop stays. Two workloads: a point read (a job by id) and a
   scan (jobs counted by kind and status over the whole ledger, the SDK's own time).

Not run by pytest. Usage::

    .venv/bin/python bench/async_bench.py                   # ~1 minute
    .venv/bin/python bench/async_bench.py --jobs 50000 --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import libsql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.settings import Settings  # noqa: E402
from db import migrations  # noqa: E402
from db.database import Database  # noqa: E402

STYLES = ("sync", "async", "blocking")
SLOW_SQL = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) "
    "SELECT sum(i % 7) FROM n"
)


# --------------------------------------------------------------------------- 1. GIL probe


def _ticks_during(action: Callable[[], object]) -> tuple[int, float]:
    """How many times a Python thread counted while ``action`` ran, and how long it ran."""
    stop = threading.Event()
    count = 0

    def ticker() -> None:
        nonlocal count
        while not stop.is_set():
            count += 1

    thread = threading.Thread(target=ticker)
    thread.start()
    time.sleep(0.05)  # let it get going
    start_count = count
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    ticks = count - start_count
    stop.set()
    thread.join()
    return ticks, elapsed


def gil_probe(workdir: Path) -> None:
    count = 1
    conn = libsql.connect(str(workdir / "probe.db"))
    # Size the statement to ~0.3 s on this machine.
    while True:
        started = time.perf_counter()
        conn.execute(SLOW_SQL.format(count=count)).fetchall()
        if time.perf_counter() - started > 0.3 or count > 10**9:
            break
        count *= 2
    sql = SLOW_SQL.format(count=count)
    stdlib = sqlite3.connect(":memory:")  # never the libSQL file: see docs/decisions.md
    results = {
        "time.sleep": _ticks_during(lambda: time.sleep(0.3)),
        "libsql SDK": _ticks_during(lambda: conn.execute(sql).fetchall()),
        "stdlib sqlite3": _ticks_during(lambda: stdlib.execute(sql).fetchall()),
    }
    conn.close()
    stdlib.close()
    base_ticks, base_s = results["time.sleep"]
    base_rate = base_ticks / base_s
    print("1. GIL probe: a Python thread counting while the main thread waits")
    print(f"   {'while':<16} {'seconds':>8} {'counts/s':>14} {'vs sleep':>9}")
    for name, (ticks, seconds) in results.items():
        rate = ticks / seconds
        print(f"   {name:<16} {seconds:8.3f} {rate:14,.0f} {rate / base_rate:9.3f}")
    print()


# --------------------------------------------------------------------------- 2. HTTP


def build_app(db_path: Path) -> Any:
    """The server: the same repository calls behind the three kinds of route."""
    from fastapi import FastAPI
    from sqlalchemy import func, select

    from db.models import JobModel
    from db.repositories.jobs import JobRepository

    # No slow-query log lines: the scan is slow on purpose.
    db = Database(Settings(_env_file=None, database_url=str(db_path), db_slow_query_ms=1e9))

    def point_read(job_id: str) -> int:
        with db.read_session() as session:
            job = JobRepository(session).get(job_id)
        return 0 if job is None else job.attempts

    def scan() -> int:
        with db.read_session() as session:
            rows = session.execute(
                select(JobModel.kind, JobModel.status, func.count()).group_by(
                    JobModel.kind, JobModel.status
                )
            ).all()
        return sum(int(count) for _, _, count in rows)

    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/sync/get/{job_id}")
    def sync_get(job_id: str) -> int:
        return point_read(job_id)

    @app.get("/async/get/{job_id}")
    async def async_get(job_id: str) -> int:
        return await asyncio.to_thread(point_read, job_id)

    @app.get("/blocking/get/{job_id}")
    async def blocking_get(job_id: str) -> int:
        return point_read(job_id)

    @app.get("/sync/scan/{job_id}")
    def sync_scan(job_id: str) -> int:
        return scan()

    @app.get("/async/scan/{job_id}")
    async def async_scan(job_id: str) -> int:
        return await asyncio.to_thread(scan)

    @app.get("/blocking/scan/{job_id}")
    async def blocking_scan(job_id: str) -> int:
        return scan()

    return app


def serve(db_path: Path, port: int) -> None:
    import uvicorn

    uvicorn.run(build_app(db_path), host="127.0.0.1", port=port, log_level="warning")


@dataclass(frozen=True)
class Run:
    requests: int
    seconds: float
    latencies: list[float]
    pings: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def p(self, values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else 0.0


async def _load(base: str, path: str, ids: list[str], total: int, concurrency: int) -> Run:
    latencies: list[float] = []
    pings: list[float] = []
    done = asyncio.Event()
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        queue = iter(range(total))

        async def worker() -> None:
            for n in queue:
                started = time.perf_counter()
                response = await client.get(f"{path}/{ids[n % len(ids)]}")
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

        async def pinger() -> None:
            while not done.is_set():
                started = time.perf_counter()
                (await client.get("/ping")).raise_for_status()
                pings.append(time.perf_counter() - started)
                await asyncio.sleep(0.01)

        probe = asyncio.create_task(pinger())
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        done.set()
        await probe
    return Run(total, seconds, latencies, pings)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _seed(db_path: Path, jobs: int) -> list[str]:
    settings = Settings(_env_file=None, database_url=str(db_path))
    migrations.upgrade(settings)
    conn = libsql.connect(str(db_path))
    kinds = ("canary", "evaluation", "backup")
    statuses = ("queued", "running", "succeeded", "failed", "cancelled")
    rows = [
        (
            f"job-{n:08d}",
            kinds[n % 3],
            statuses[n % 5],
            '{"sleep_ms": 10, "note": "' + "x" * 200 + '"}',
            n % 4,
        )
        for n in range(jobs)
    ]
    conn.executemany(
        "INSERT INTO jobs (id, kind, status, arguments, attempts, max_attempts, progress, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 5, 0.0, "
        "'2026-11-30 00:00:00.000000', '2026-11-30 00:00:00.000000')",
        rows,
    )
    conn.commit()
    conn.close()
    return [row[0] for row in rows[:: max(1, jobs // 1000)]]


def http_bench(workdir: Path, args: argparse.Namespace) -> None:
    db_path = workdir / "ledger.db"
    ids = _seed(db_path, args.jobs)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(db_path), "--port", str(port)]
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/ping", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        print(
            f"2. HTTP: one uvicorn process, {args.jobs} jobs, {args.concurrency} requests in flight"
        )
        for workload, total in (("get", args.requests), ("scan", max(50, args.requests // 10))):
            # Warm up, then alternate the styles, best of --rounds each.
            asyncio.run(_load(base, f"/sync/{workload}", ids, 50, args.concurrency))
            best: dict[str, Run] = {}
            for _ in range(args.rounds):
                for style in STYLES:
                    run = asyncio.run(
                        _load(base, f"/{style}/{workload}", ids, total, args.concurrency)
                    )
                    if style not in best or run.throughput > best[style].throughput:
                        best[style] = run
            print(f"   {workload} ({total} requests, best of {args.rounds})")
            print(
                f"   {'route':<10} {'req/s':>8} {'vs sync':>8} {'p50 ms':>8} {'p99 ms':>8} "
                f"{'ping p50':>9} {'ping p99':>9}"
            )
            sync = best["sync"].throughput
            for style in STYLES:
                run = best[style]
                print(
                    f"   {style:<10} {run.throughput:8.0f} {run.throughput / sync:8.2f} "
                    f"{run.p(run.latencies, 50):8.1f} {run.p(run.latencies, 99):8.1f} "
                    f"{run.p(run.pings, 50):9.1f} {run.p(run.pings, 99):9.1f}"
                )
            print()
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="rows in the ledger")
    parser.add_argument("--requests", type=int, default=1000, help="point reads per run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0
    with tempfile.TemporaryDirectory(prefix="async-bench-") as folder:
        gil_probe(Path(folder))
        http_bench(Path(folder), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
