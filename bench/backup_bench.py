"""Benchmark: our online snapshot against the raw SQLite backup API, and its effect on writers.

Builds a libSQL database of ``--size-mb`` (default 1024) in WAL mode, then measures in the
same run, on the same file:

1. throughput: :func:`tasks.backup.snapshot.snapshot_local` (steps of ``--step-pages`` with
   ``--pause-ms`` between them, the settings' defaults unless given) against the stdlib
   ``sqlite3`` backup API copying the whole file in one step. Each is run ``--rounds`` times,
   alternately, and the best run of each counts (the page cache is warm for both).
   Target: ours / raw >= 0.8.
2. writer latency: a separate process commits one small transaction every 2 ms, as the
   workers do (``BEGIN IMMEDIATE``, ``synchronous=NORMAL``). Its p99 commit latency while
   our backup runs (back to back, for at least 4 s, so the p99 rests on ~2000 commits),
   against its p99 over an equally long window with no backup.
   Target: during / without <= 2.

Not run by pytest. Usage::

    .venv/bin/python bench/backup_bench.py --size-mb 100
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import libsql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.settings import Settings  # noqa: E402
from tasks.backup.snapshot import snapshot_local  # noqa: E402

ROW_BYTES = 1200  # a blob and some text per row, like prompts with their results
BUILD_BATCH_ROWS = 10_000
WRITE_INTERVAL_S = 0.002
THROUGHPUT_TARGET = 0.8
LATENCY_TARGET = 2.0
LATENCY_WINDOW_S = 4.0  # at one commit per 2 ms: ~2000 samples on each side


@dataclass(frozen=True)
class Timed:
    seconds: float
    size_bytes: int

    @property
    def mb_per_s(self) -> float:
        return self.size_bytes / 1e6 / self.seconds


def build_database(path: Path, size_mb: int) -> None:
    """A WAL-mode libSQL file of about ``size_mb`` MB: rows of random blobs and text."""
    connection = libsql.connect(str(path), isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL").fetchall()
    connection.execute("PRAGMA synchronous=NORMAL").fetchall()
    connection.execute(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT NOT NULL, payload BLOB NOT NULL)"
    ).fetchall()
    connection.execute("CREATE TABLE commits (id INTEGER PRIMARY KEY, at REAL)").fetchall()
    connection.execute("CREATE INDEX items_label ON items (label)").fetchall()
    page_size = int(connection.execute("PRAGMA page_size").fetchall()[0][0])
    while True:
        pages = int(connection.execute("PRAGMA page_count").fetchall()[0][0])
        if pages * page_size >= size_mb * 1_000_000:
            break
        connection.execute("BEGIN").fetchall()
        connection.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO items (label, payload) "
            "SELECT 'item ' || i || ' ' || hex(randomblob(16)), randomblob(?) FROM n",
            (BUILD_BATCH_ROWS, ROW_BYTES),
        ).fetchall()
        connection.execute("COMMIT").fetchall()
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    connection.close()


def settle() -> None:
    """Flush the previous copy's dirty pages, so one run does not pay for another's writes."""
    os.sync()
    time.sleep(0.2)


def raw_backup(source: Path, target: Path) -> Timed:
    """The baseline: the stdlib backup API, the whole file in one step."""
    started = time.perf_counter()
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return Timed(time.perf_counter() - started, target.stat().st_size)


def our_backup(source: Path, target: Path, pages: int, pause_s: float) -> Timed:
    started = time.perf_counter()
    info = snapshot_local(source, target, pages_per_step=pages, pause_s=pause_s)
    return Timed(time.perf_counter() - started, info.size_bytes)


def writer(path: str, ready: Event, stop: Event, results: Any) -> None:
    """Commit one row every WRITE_INTERVAL_S; send back (start time, latency) per commit."""
    connection = libsql.connect(path, isolation_level=None, timeout=5)
    for pragma in ("busy_timeout=5000", "journal_mode=WAL", "synchronous=NORMAL"):
        connection.execute(f"PRAGMA {pragma}").fetchall()
    samples: list[tuple[float, float]] = []
    ready.set()
    next_at = time.perf_counter()
    while not stop.is_set():
        began = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE").fetchall()
        connection.execute("INSERT INTO commits (at) VALUES (?)", (time.time(),)).fetchall()
        connection.execute("COMMIT").fetchall()
        samples.append((time.time(), time.perf_counter() - began))
        next_at += WRITE_INTERVAL_S
        time.sleep(max(0.0, next_at - time.perf_counter()))
    connection.close()
    results.put(samples)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def main() -> int:
    defaults = Settings.model_fields
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--step-pages", type=int, default=defaults["backup_step_pages"].default)
    parser.add_argument("--pause-ms", type=float, default=defaults["backup_step_pause_ms"].default)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="backup-bench-", dir=args.workdir))
    pause_s = args.pause_ms / 1000
    try:
        source = workdir / "source.db"
        began = time.perf_counter()
        build_database(source, args.size_mb)
        size = source.stat().st_size
        print(f"database: {size / 1e6:.0f} MB in {time.perf_counter() - began:.1f} s ({source})")
        print(f"our settings: {args.step_pages} pages per step, {args.pause_ms:g} ms pause")

        raws: list[Timed] = []
        ours: list[Timed] = []
        for _ in range(args.rounds):
            (workdir / "copy.db").unlink(missing_ok=True)
            settle()
            raws.append(raw_backup(source, workdir / "copy.db"))
            (workdir / "copy.db").unlink(missing_ok=True)
            settle()
            ours.append(our_backup(source, workdir / "copy.db", args.step_pages, pause_s))
        (workdir / "copy.db").unlink(missing_ok=True)
        raw = min(raws, key=lambda t: t.seconds)
        our = min(ours, key=lambda t: t.seconds)
        throughput_ratio = our.mb_per_s / raw.mb_per_s
        print(
            f"raw sqlite3 backup: {raw.seconds:.2f} s, {raw.mb_per_s:.0f} MB/s (runs: "
            + ", ".join(f"{t.seconds:.2f}" for t in raws)
            + ")"
        )
        print(
            f"our snapshot:       {our.seconds:.2f} s, {our.mb_per_s:.0f} MB/s (runs: "
            + ", ".join(f"{t.seconds:.2f}" for t in ours)
            + ")"
        )

        context = multiprocessing.get_context("spawn")
        ready, stop, results = context.Event(), context.Event(), context.Queue()
        process = context.Process(target=writer, args=(str(source), ready, stop, results))
        process.start()
        ready.wait(30)
        settle()
        # Back-to-back backups until the window holds enough commits for a meaningful p99
        # (a 100 MB copy takes a fraction of a second: ~100 commits, whose p99 is their max).
        busy_windows: list[tuple[float, float]] = []
        busy_s = 0.0
        while busy_s < LATENCY_WINDOW_S:
            (workdir / "copy.db").unlink(missing_ok=True)
            began = time.time()
            our_backup(source, workdir / "copy.db", args.step_pages, pause_s)
            busy_windows.append((began, time.time()))
            busy_s += busy_windows[-1][1] - began
        (workdir / "copy.db").unlink(missing_ok=True)
        settle()
        quiet_from = time.time()
        time.sleep(busy_s)
        quiet_to = time.time()
        stop.set()
        samples: list[tuple[float, float]] = results.get(timeout=60)
        process.join(30)
        quiet = [lat for at, lat in samples if quiet_from <= at < quiet_to]
        busy = [lat for at, lat in samples if any(a <= at <= b for a, b in busy_windows)]
        latency_ratio = p99(busy) / p99(quiet)
        print(
            f"writer without backup: {len(quiet)} commits, p99 {p99(quiet) * 1000:.2f} ms, "
            f"max {max(quiet) * 1000:.2f} ms"
        )
        print(
            f"writer during backup:  {len(busy)} commits, p99 {p99(busy) * 1000:.2f} ms, "
            f"max {max(busy) * 1000:.2f} ms (over {len(busy_windows)} backup runs, {busy_s:.1f} s)"
        )

        ok_throughput = throughput_ratio >= THROUGHPUT_TARGET
        ok_latency = latency_ratio <= LATENCY_TARGET
        print()
        print(
            f"throughput ratio (ours / raw):        {throughput_ratio:.2f}  "
            f"target >= {THROUGHPUT_TARGET}  {'PASS' if ok_throughput else 'FAIL'}"
        )
        print(
            f"writer p99 ratio (during / without):  {latency_ratio:.2f}  "
            f"target <= {LATENCY_TARGET}  {'PASS' if ok_latency else 'FAIL'}"
        )
        return 0 if ok_throughput and ok_latency else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
