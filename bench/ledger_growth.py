"""Benchmark: what a growing ledger costs the API, a scrape and the writers.

For each size (default 10k and 100k jobs; ``--sizes 10000,100000,1000000``) a fresh
database is migrated and filled with a realistic ledger in a few bulk statements: 45 days
of history, 95% succeeded, 3% failed, 2% cancelled, 80% evaluations with ~1.7 KB of
arguments, 60 backup jobs, and a constant set of unfinished jobs (50 queued, 5 whose
publish failed, 10 running). Then, with a real API process (uvicorn) and an embedded
Redis:

1. **Reads**: the p50 of each API read (the newest page, a page from the middle of the
   ledger, filtered pages, one job) and of each scrape (``/metrics/ledger``, ``/metrics``).
2. **Enqueue**: ``POST /v1/jobs/canary`` p50 alone and while another client scrapes
   ``/metrics/ledger`` back to back (the SDK keeps the GIL while a statement runs: a
   scrape that scanned the ledger froze the API's other requests).
3. **Writers behind maintenance**: a separate writer process commits one small insert
   every 10 ms through ``write_transaction``; its latency is recorded while this process
   is idle, while the API is scraped, while the sweeper's queries run, and while
   pruning deletes the 15 oldest days (a third of the ledger), gives the pages back
   and checkpoints the WAL. The WAL's peak size and the file's size are recorded.
4. With ``--baseline``: the same pruning done the old way, one DELETE transaction, on a
   copy of the same file, with the same writer.

The ratios printed compare each size with the smallest. Targets: every read and scrape
within 2x from 10k to 1M, enqueue p50 under 20 ms while scraped, no writer waiting more
than 100 ms behind maintenance. Not run by pytest. Usage::

    .venv/bin/python bench/ledger_growth.py                           # 10k, 100k (~1 min)
    .venv/bin/python bench/ledger_growth.py --sizes 10000,100000,1000000 --baseline
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import libsql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.pagination import encode_cursor  # noqa: E402
from core.settings import Settings  # noqa: E402
from db import migrations  # noqa: E402
from db.column_types import utcnow  # noqa: E402
from db.database import Database  # noqa: E402
from db.repositories.jobs import PRUNE_BATCH_ROWS, JobRepository  # noqa: E402
from db.space import file_space  # noqa: E402
from db.transaction import write_transaction  # noqa: E402
from devstack.redis_server import EmbeddedRedis  # noqa: E402
from domain.jobs import Job, JobStatus  # noqa: E402
from tasks.maintenance.pruning import VACUUM_STEP_PAGES, prune_ledger  # noqa: E402

API_KEY = "afk_bench-ledger-growth-key"
HISTORY_DAYS = 45
RETENTION_DAYS = 30
FILL_CHUNK = 50_000

# An evaluation's arguments as the API stores them: ~1.7 KB of JSON.
EVALUATION_ARGUMENTS = json.dumps(
    {
        "prompt_id": "p",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "test_cases": [
            {
                "name": f"case-{n}",
                "variables": {
                    "topic": "the history of the printing press in Europe",
                    "tone": "neutral",
                    "length": 120,
                },
                "expected": "A concise, neutral summary of how movable type spread.",
                "scorers": ["contains", {"type": "regex", "pattern": "(?i)printing|press"}],
            }
            for n in range(6)
        ],
    },
    separators=(",", ":"),
)


def _ts(seconds: str) -> str:
    """SQL for the text UTCDateTime stores, from a Unix time expression."""
    return f"(strftime('%Y-%m-%d %H:%M:%f', {seconds}, 'unixepoch') || '000')"


_UUID = (
    "lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))), 2) || '-a' || substr(lower(hex(randomblob(2))), 2) "
    "|| '-' || lower(hex(randomblob(6)))"
)

# ?1, ?2: first and last row number; ?3 arguments; ?4 Unix time of row 0; ?5 seconds per row.
FILL_SQL = f"""
WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2),
rows AS (
  SELECT i, {_UUID} AS id,
    CASE WHEN abs(random()) % 10 < 2 THEN 'canary' ELSE 'evaluation' END AS kind,
    CASE WHEN i % 100 < 95 THEN 'succeeded' WHEN i % 100 < 98 THEN 'failed'
         ELSE 'cancelled' END AS status,
    ?4 + i * ?5 AS c
  FROM n
)
INSERT INTO jobs (id, kind, status, arguments, request_hash, attempts, max_attempts, progress,
  result, error_kind, error_message, published_at, created_at, started_at, finished_at,
  updated_at)
SELECT id, kind, status,
  CASE kind WHEN 'evaluation' THEN json_set(?3, '$.prompt_id', 'p-' || (i % 500))
            ELSE '{{"sleep_ms":0}}' END,
  lower(hex(randomblob(32))), 1, 3, 1.0,
  CASE status WHEN 'succeeded' THEN '{{"overall_score":0.83,"passed":5,"total":6}}' END,
  CASE status WHEN 'failed' THEN 'ProviderError' END,
  CASE status WHEN 'failed' THEN 'the provider answered 500 three times' END,
  {_ts("c")}, {_ts("c")}, {_ts("c + 0.05")}, {_ts("c + 2.5")}, {_ts("c + 2.5")}
FROM rows
"""

# Backups (two a day) and the unfinished jobs: as many whatever the ledger's size.
EXTRAS_SQL = f"""
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 125)
INSERT INTO jobs (id, kind, status, arguments, attempts, max_attempts, progress,
  lease_expires_at, lease_owner, published_at, created_at, started_at, finished_at,
  updated_at)
SELECT {_UUID},
  CASE WHEN i <= 60 THEN 'backup' ELSE 'canary' END,
  CASE WHEN i <= 60 THEN 'succeeded' WHEN i <= 115 THEN 'queued' ELSE 'running' END,
  CASE WHEN i <= 60 THEN json_object('mode', CASE WHEN i % 8 = 0 THEN 'drill'
                                                  ELSE 'backup' END)
       ELSE '{{"sleep_ms":0}}' END,
  CASE WHEN i <= 60 OR i > 115 THEN 1 ELSE 0 END, 3,
  CASE WHEN i <= 60 THEN 1.0 ELSE 0.0 END,
  CASE WHEN i > 115 THEN {_ts("?1 + 3600")} END,
  CASE WHEN i > 115 THEN 'bench:1:1' END,
  CASE WHEN i BETWEEN 111 AND 115 THEN NULL ELSE {_ts("?1 - 1")} END,
  CASE WHEN i <= 60 THEN {_ts("?1 - i * 43200")} ELSE {_ts("?1 - 1")} END,
  CASE WHEN i <= 60 OR i > 115 THEN {_ts("?1 - i * 43200 + 1")} END,
  CASE WHEN i <= 60 THEN {_ts("?1 - i * 43200 + 60")} END,
  {_ts("?1 - 1")}
FROM n
"""


def fill(path: Path, rows: int) -> float:
    """Fill a migrated database with ``rows`` realistic jobs; returns the seconds taken."""
    started = time.perf_counter()
    connection = libsql.connect(str(path), isolation_level=None)
    try:
        now = time.time()
        base = now - HISTORY_DAYS * 86400
        step = HISTORY_DAYS * 86400 / rows
        for first in range(0, rows, FILL_CHUNK):
            last = min(rows, first + FILL_CHUNK) - 1
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(FILL_SQL, (first, last, EVALUATION_ARGUMENTS, base, step))
            connection.execute("COMMIT")
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(EXTRAS_SQL, (now,))
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        connection.close()
    return time.perf_counter() - started


# --------------------------------------------------------------------------- helpers


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f}"


def _settings(path: Path, **overrides: Any) -> Settings:
    return Settings(_env_file=None, database_url=str(path), **overrides)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def api_server(path: Path, redis_url: str, workdir: Path) -> Iterator[str]:
    """One uvicorn process serving the API on ``path``, as one replica runs."""
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": str(path),
        "REDIS_URL": redis_url,
        "AUTOFORGE_API_KEYS": API_KEY,
        "LOG_LEVEL": "WARNING",
    }
    log = (workdir / "api.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.main:build", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the API exited; see {workdir / 'api.log'}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _timed(client: httpx.Client, method: str, path: str, count: int, **kwargs: Any) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.request(method, path, **kwargs)
        times.append(time.perf_counter() - started)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:200]}")
    return times


# --------------------------------------------------------------------------- 1, 2. API


def read_paths(path: Path, rows: int) -> dict[str, str]:
    """The reads measured, with a cursor from the middle of the ledger."""
    db = Database(_settings(path))
    try:
        with db.read_session() as session:
            jobs = JobRepository(session)
            middle_id = session.connection().exec_driver_sql(
                "SELECT id FROM jobs ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?",
                (rows // 2,),
            )
            job = jobs.get(str(middle_id.scalar_one()))
            newest = jobs.list_recent(limit=1)[0]
    finally:
        db.dispose()
    assert job is not None
    middle = encode_cursor(job)
    return {
        "newest page": "/v1/jobs?limit=50",
        "page in the middle": f"/v1/jobs?limit=50&cursor={middle}",
        "failed, middle": f"/v1/jobs?status=failed&limit=50&cursor={middle}",
        "canary": "/v1/jobs?kind=canary&limit=50",
        "canary + failed": "/v1/jobs?kind=canary&status=failed&limit=50",
        "queued": "/v1/jobs?status=queued&limit=50",
        "one job": f"/v1/jobs/{newest.id}",
        "scrape /metrics/ledger": "/metrics/ledger",
        "scrape /metrics": "/metrics",
    }


def measure_api(
    urls: dict[int, str], paths: dict[int, dict[str, str]], requests: int, rounds: int
) -> dict[int, dict[str, float]]:
    """p50 seconds of each read, of an enqueue alone and of an enqueue while another
    client scrapes ``/metrics/ledger`` (or, to compare, polls ``/healthz``) back to back;
    sizes alternate round by round, so that a busy moment of the machine does not land
    on one size only."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"json": {"sleep_ms": 0}}
    samples: dict[int, dict[str, list[float]]] = {rows: {} for rows in urls}
    per_round = max(1, requests // rounds)
    for rows, url in urls.items():  # warm up
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for path in paths[rows].values():
                _timed(client, "GET", path, 3)
            _timed(client, "POST", "/v1/jobs/canary", 3, **body)
    for _ in range(rounds):
        for rows, url in urls.items():
            taken = samples[rows]
            with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                for name, path in paths[rows].items():
                    taken.setdefault(name, []).extend(_timed(client, "GET", path, per_round))
                taken.setdefault("enqueue", []).extend(
                    _timed(client, "POST", "/v1/jobs/canary", per_round, **body)
                )
                for label, polled in (
                    ("enqueue while scraped", "/metrics/ledger"),
                    ("  (/healthz polled)", "/healthz"),
                ):
                    with _polling(url, headers, polled):
                        taken.setdefault(label, []).extend(
                            _timed(client, "POST", "/v1/jobs/canary", per_round, **body)
                        )
    return {
        rows: {name: statistics.median(values) for name, values in taken.items()}
        for rows, taken in samples.items()
    }


@contextmanager
def _polling(url: str, headers: dict[str, str], path: str) -> Iterator[None]:
    """Another client getting ``path`` back to back meanwhile (``/healthz``: the cost of
    any concurrent client on a 2-core machine, to compare a scrape with)."""
    stop = threading.Event()

    def scrape() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as other:
            while not stop.is_set():
                other.get(path)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        time.sleep(0.1)
        yield
    finally:
        stop.set()
        scraper.join()


# --------------------------------------------------------------------------- 3. writers


def writer_main(path: Path, stop_file: Path, out: Path, interval_s: float) -> None:
    """The writer process: one small insert per ``interval_s`` until ``stop_file`` exists;
    writes (start, seconds) of each write unit to ``out`` as JSON."""
    db = Database(_settings(path))
    samples: list[tuple[float, float]] = []
    try:
        while not stop_file.exists():
            job = Job(kind="canary", arguments={"sleep_ms": 0}, status=JobStatus.SUCCEEDED)
            started = time.monotonic()
            write_transaction(db, lambda s, job=job: JobRepository(s).add(job))  # type: ignore[misc]
            samples.append((started, time.monotonic() - started))
            time.sleep(interval_s)
    finally:
        db.dispose()
        out.write_text(json.dumps(samples))


@contextmanager
def writer(path: Path, workdir: Path) -> Iterator[Callable[[], list[tuple[float, float]]]]:
    """A writer process on ``path``; yields a function returning its samples once stopped."""
    stop_file = workdir / "writer.stop"
    out = workdir / "writer.json"
    stop_file.unlink(missing_ok=True)
    out.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, __file__, "--writer", str(path), str(stop_file), str(out)], cwd=ROOT
    )
    samples: list[tuple[float, float]] = []

    def collected() -> list[tuple[float, float]]:
        return samples

    try:
        time.sleep(1.0)  # its imports and first connection
        yield collected
    finally:
        stop_file.touch()
        process.wait(timeout=60)
        samples.extend((float(a), float(b)) for a, b in json.loads(out.read_text()))


class WalWatch:
    """The WAL file's largest size, sampled every 20 ms while running."""

    def __init__(self, path: Path) -> None:
        self.path = Path(f"{path}-wal")
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with suppress(FileNotFoundError):
                self.peak = max(self.peak, self.path.stat().st_size)
            time.sleep(0.02)

    def __enter__(self) -> WalWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _window(samples: list[tuple[float, float]], start: float, end: float) -> dict[str, float]:
    """The writer's units that started in [start, end], or were still waiting at start."""
    inside = [lat for t, lat in samples if start <= t <= end or (t < start < t + lat)]
    return {
        "writes": len(inside),
        "p50_ms": _p(inside, 0.5) * 1000,
        "p99_ms": _p(inside, 0.99) * 1000,
        "max_ms": max(inside, default=float("nan")) * 1000,
    }


def measure_maintenance(
    path: Path, url: str, workdir: Path, prune_options: dict[str, int]
) -> dict[str, Any]:
    """Writer latency while idle, scraped, swept and pruned; pruning's own figures."""
    settings = _settings(path)
    db = Database(settings)
    windows: dict[str, tuple[float, float]] = {}
    result: dict[str, Any] = {}
    try:
        with writer(path, workdir) as samples:
            start = time.monotonic()
            time.sleep(3)
            windows["idle"] = (start, time.monotonic())

            start = time.monotonic()
            headers = {"Authorization": f"Bearer {API_KEY}"}
            with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                while time.monotonic() - start < 3:
                    client.get("/metrics/ledger")
            windows["scrapes"] = (start, time.monotonic())

            start = time.monotonic()
            sweep_times = []
            while time.monotonic() - start < 3:
                began = time.perf_counter()
                with db.read_session() as session:
                    due = JobRepository(session).due_for_publishing(republish_after_s=300)
                ids = [job.id for job in due]
                write_transaction(db, lambda s, ids=ids: JobRepository(s).mark_published(ids))  # type: ignore[misc]
                sweep_times.append(time.perf_counter() - began)
                time.sleep(0.05)
            windows["sweeps"] = (start, time.monotonic())
            result["sweep p50 ms"] = statistics.median(sweep_times) * 1000

            space = file_space(db)
            result["file MB before prune"] = space.size_bytes / 1e6
            start = time.monotonic()
            with WalWatch(path) as wal:
                report = prune_ledger(
                    db,
                    before=utcnow() - timedelta(days=RETENTION_DAYS),
                    budget_s=900,
                    **prune_options,
                )
            windows["prune"] = (start, time.monotonic())
            after = file_space(db)
            result.update(
                {
                    "pruned": report.deleted,
                    "prune batches": report.batches,
                    "longest batch ms": report.longest_batch_s * 1000,
                    "prune + vacuum + checkpoint s": windows["prune"][1] - windows["prune"][0],
                    "pages given back": report.pages_given_back,
                    "file MB after prune": after.size_bytes / 1e6,
                    "WAL peak MB": wal.peak / 1e6,
                    "WAL MB after": Path(f"{path}-wal").stat().st_size / 1e6,
                }
            )
            time.sleep(1)
    finally:
        db.dispose()
    for name, (start, end) in windows.items():
        result[f"writer during {name}"] = _window(samples(), start, end)
    return result


def measure_single_delete(path: Path, workdir: Path) -> dict[str, Any]:
    """The old pruning: every old finished job in one DELETE transaction."""
    db = Database(_settings(path))
    try:
        with writer(path, workdir) as samples:
            start = time.monotonic()
            with WalWatch(path) as wal:
                before = (utcnow() - timedelta(days=RETENTION_DAYS)).strftime(
                    "%Y-%m-%d %H:%M:%S.%f"
                )
                deleted = write_transaction(
                    db,
                    lambda s: (
                        s.connection()
                        .exec_driver_sql(
                            "DELETE FROM jobs WHERE status IN (?, ?, ?) AND finished_at < ?",
                            ("succeeded", "failed", "cancelled", before),
                        )
                        .rowcount
                    ),
                )
            end = time.monotonic()
            time.sleep(1)
        space = file_space(db)
    finally:
        db.dispose()
    return {
        "deleted": deleted,
        "one DELETE s": end - start,
        "WAL peak MB": wal.peak / 1e6,
        "file MB after": space.size_bytes / 1e6,
        "writer during": _window(samples(), start, end),
    }


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace, workdir: Path, redis_url: str) -> list[dict[str, Any]]:
    sizes = [int(size) for size in args.sizes.split(",")]
    results: dict[int, dict[str, Any]] = {}
    databases: dict[int, Path] = {}
    for rows in sizes:
        folder = workdir / f"ledger-{rows}"
        folder.mkdir(parents=True)
        path = folder / "autoforge.db"
        migrations.upgrade(_settings(path))
        seconds = fill(path, rows)
        size_mb = path.stat().st_size / 1e6
        print(f"{rows:>10,} jobs: filled in {seconds:5.1f} s, {size_mb:6.0f} MB", flush=True)
        results[rows] = {"rows": rows, "fill s": seconds, "file MB": size_mb}
        databases[rows] = path
        if args.baseline:
            shutil.copyfile(path, folder / "single-delete.db")
    paths = {rows: read_paths(path, rows) for rows, path in databases.items()}
    prune_options = {"batch_rows": args.batch_rows, "vacuum_step_pages": args.vacuum_pages}
    with ExitStack() as stack:
        urls = {
            rows: stack.enter_context(api_server(path, redis_url, path.parent))
            for rows, path in databases.items()
        }
        print("reads and enqueues...", flush=True)
        for rows, measured in measure_api(urls, paths, args.requests, args.rounds).items():
            results[rows]["api"] = measured
        for rows, path in databases.items():
            print(f"{rows:>10,} jobs: writer behind maintenance...", flush=True)
            results[rows]["maintenance"] = measure_maintenance(
                path, urls[rows], path.parent, prune_options
            )
    if args.baseline:
        for rows, path in databases.items():
            print(f"{rows:>10,} jobs: the old pruning (one DELETE)...", flush=True)
            copy = path.parent / "single-delete.db"
            results[rows]["single delete"] = measure_single_delete(copy, path.parent)
    return [results[rows] for rows in sizes]


def summary(results: list[dict[str, Any]]) -> None:
    base = results[0]
    width = 24
    header = "".join(f"{r['rows']:>{width},}" for r in results)
    print(f"\n== p50 ms by ledger size (ratio to {base['rows']:,})")
    print(f"   {'':<24}{header}")
    for name in base["api"]:
        cells = "".join(
            f"{r['api'][name] * 1000:>{width - 8}.2f} ({r['api'][name] / base['api'][name]:4.2f}x)"
            for r in results
        )
        print(f"   {name:<24}{cells}")
    print("\n== writer (one small insert every 10 ms, another process): p50 / p99 / max ms")
    print(f"   {'':<24}{header}")
    windows = [(w, f"writer during {w}") for w in ("idle", "scrapes", "sweeps", "prune")]
    for label, key in windows:
        cells = "".join(
            "{p50_ms:>{w1}.1f} /{p99_ms:6.0f} /{max_ms:6.0f}".format(
                w1=width - 16, **r["maintenance"][key]
            )
            for r in results
        )
        print(f"   {label:<24}{cells}")
    if "single delete" in base:
        cells = "".join(
            "{p50_ms:>{w1}.1f} /{p99_ms:6.0f} /{max_ms:6.0f}".format(
                w1=width - 16, **r["single delete"]["writer during"]
            )
            for r in results
        )
        print(f"   {'one DELETE (before)':<24}{cells}")
    print("\n== pruning the 15 oldest days of 45")
    print(f"   {'':<24}{header}")
    rows_ = [
        ("jobs deleted", "maintenance", "pruned", "{:,}"),
        ("batches", "maintenance", "prune batches", "{:,}"),
        ("longest batch ms", "maintenance", "longest batch ms", "{:.0f}"),
        ("whole run s", "maintenance", "prune + vacuum + checkpoint s", "{:.1f}"),
        ("pages given back", "maintenance", "pages given back", "{:,}"),
        ("file MB before", "maintenance", "file MB before prune", "{:.0f}"),
        ("file MB after", "maintenance", "file MB after prune", "{:.0f}"),
        ("WAL peak MB", "maintenance", "WAL peak MB", "{:.1f}"),
        ("WAL MB after", "maintenance", "WAL MB after", "{:.1f}"),
        ("sweep p50 ms", "maintenance", "sweep p50 ms", "{:.2f}"),
    ]
    if "single delete" in base:
        rows_ += [
            ("one DELETE s (before)", "single delete", "one DELETE s", "{:.2f}"),
            ("its WAL peak MB", "single delete", "WAL peak MB", "{:.1f}"),
            ("file MB after it", "single delete", "file MB after", "{:.0f}"),
        ]
    for label, part, key, fmt in rows_:
        cells = "".join(f"{fmt.format(r[part][key]):>{width}}" for r in results)
        print(f"   {label:<24}{cells}")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--writer":
        writer_main(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), 0.01)
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated job counts")
    parser.add_argument("--requests", type=int, default=100, help="requests per read and size")
    parser.add_argument("--rounds", type=int, default=5, help="rounds alternating the sizes")
    parser.add_argument("--baseline", action="store_true", help="also prune the old way")
    parser.add_argument("--batch-rows", type=int, default=PRUNE_BATCH_ROWS)
    parser.add_argument("--vacuum-pages", type=int, default=VACUUM_STEP_PAGES)
    parser.add_argument("--workdir", type=Path, help="where the databases go (removed after)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ledger-growth-", dir=args.workdir))
    redis = EmbeddedRedis(workdir / "redis", persistent=False)
    redis.start()
    try:
        results = run(args, workdir, redis.url)
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
