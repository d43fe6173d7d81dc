"""Online copies of a libSQL file while another process keeps committing.

A writer process inserts one row into each of two tables per transaction, as fast as it
can. A consistent copy (one instant of the database) therefore has as many rows in one
table as in the other; a copy stitched together from different moments would not. The
copy must also finish while the writer runs (no endless restarts), in exactly
``ceil(pages / pages_per_step)`` steps, without blocking the writer.

The logical export (the remote path) is run against a local file through the same code,
over a ``libsql`` connection: its one read transaction must give the same guarantee, and
it must reproduce every kind of table (vector index, WITHOUT ROWID, AUTOINCREMENT, hidden
rowids, generated columns) with identical checksums.

The writer is started with the ``spawn`` method, so its entry point lives at module level.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.context import SpawnContext
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import libsql
import pytest

from tasks.backup.errors import SnapshotFailed
from tasks.backup.snapshot import export_remote, snapshot_local
from tasks.backup.verify import inspect_database, verify_database
from tests.support.processes import children_of, is_alive, wait_for, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAGES_PER_STEP = 32
PAUSE_S = 0.002
FILLER_ROWS = 3000  # ~12 MB of 4 KiB blobs: ~100 steps of 32 pages
WRITER_TIMEOUT_S = 30.0
# Far above a commit's few milliseconds, far below a copy that held the write lock.
MAX_COMMIT_LATENCY_S = 1.0


@dataclass(frozen=True)
class WriterReport:
    commits: int
    #: (wall-clock time of the commit, seconds it took), one per transaction.
    timings: list[tuple[float, float]]
    error: str = ""


def writer_process(path: str, started: Event, stop: Event, results: Any) -> None:
    """Commit a row into pair_a and pair_b per transaction until told to stop."""
    try:
        connection = libsql.connect(path, isolation_level=None, timeout=5)
        connection.execute("PRAGMA busy_timeout=5000").fetchall()
        timings: list[tuple[float, float]] = []
        n = 0
        while not stop.is_set():
            began = time.perf_counter()
            connection.execute("BEGIN IMMEDIATE").fetchall()
            connection.execute("INSERT INTO pair_a (n) VALUES (?)", (n,)).fetchall()
            connection.execute("INSERT INTO pair_b (n) VALUES (?)", (n,)).fetchall()
            connection.execute("COMMIT").fetchall()
            timings.append((time.time(), time.perf_counter() - began))
            n += 1
            if n == 20:
                started.set()
            time.sleep(0.0005)
        connection.close()
        results.put(WriterReport(n, timings))
    except Exception as exc:  # reported to the test, which fails with it
        started.set()
        results.put(WriterReport(0, [], error=repr(exc)))


class Writer:
    """A running writer process; :meth:`stop` returns its report."""

    def __init__(self, context: SpawnContext, path: Path) -> None:
        self._started = context.Event()
        self._stop = context.Event()
        self._results = context.Queue()
        self._process = context.Process(
            target=writer_process, args=(str(path), self._started, self._stop, self._results)
        )
        self._process.start()
        assert self._started.wait(WRITER_TIMEOUT_S), "the writer did not start committing"

    def stop(self) -> WriterReport:
        self._stop.set()
        report: WriterReport = self._results.get(timeout=WRITER_TIMEOUT_S)
        self._process.join(WRITER_TIMEOUT_S)
        assert not report.error, report.error
        return report

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
            self._process.join(WRITER_TIMEOUT_S)


@pytest.fixture
def live_db(tmp_path: Path) -> Path:
    """A WAL-mode libSQL file with two paired tables and ~12 MB of filler."""
    path = tmp_path / "live.db"
    connection = libsql.connect(str(path), isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL").fetchall()
    connection.executescript(
        """
        CREATE TABLE pair_a (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
        CREATE TABLE pair_b (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
        CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
        """
    )
    connection.execute("BEGIN").fetchall()
    connection.executemany(
        "INSERT INTO filler (data) VALUES (randomblob(?))", [(4000,)] * FILLER_ROWS
    )
    connection.execute("COMMIT").fetchall()
    connection.close()
    return path


@pytest.fixture
def writer(live_db: Path) -> Iterator[Writer]:
    running = Writer(multiprocessing.get_context("spawn"), live_db)
    try:
        yield running
    finally:
        running.kill()


def test_snapshot_is_one_instant_and_does_not_block_the_writer(
    live_db: Path, writer: Writer, tmp_path: Path
) -> None:
    steps: list[tuple[int, int]] = []
    began = time.time()
    info = snapshot_local(
        live_db,
        tmp_path / "copy.db",
        pages_per_step=PAGES_PER_STEP,
        pause_s=PAUSE_S,
        progress=lambda done, total: steps.append((done, total)),
    )
    ended = time.time()
    report = writer.stop()

    copy = verify_database(tmp_path / "copy.db")
    assert copy.table_counts["pair_a"] == copy.table_counts["pair_b"]
    assert copy.table_counts["filler"] == FILLER_ROWS
    # The writer went on committing during the copy, and the copy holds none of that.
    during = [latency for at, latency in report.timings if began <= at <= ended]
    assert len(during) >= 20, f"only {len(during)} commits overlapped the copy"
    assert report.commits > copy.table_counts["pair_a"] + len(during) // 2
    # No restart: one pass, in exactly the number of steps the page count implies.
    assert info.journal_mode == "wal"
    assert info.restarts == 0
    assert info.steps == len(steps) == math.ceil(info.page_count / PAGES_PER_STEP)
    assert info.page_count > 2000
    assert steps[-1] == (info.page_count, info.page_count)
    assert [done for done, _ in steps] == sorted(done for done, _ in steps)
    assert max(during) < MAX_COMMIT_LATENCY_S, f"a commit waited {max(during):.3f} s"
    assert info.taken_at.timestamp() >= began


def test_a_stepwise_copy_without_a_pinned_snapshot_keeps_restarting(
    live_db: Path, writer: Writer, tmp_path: Path
) -> None:
    """The control: the raw API restarts under a writer, which is why we pin a snapshot."""
    restarts = 0
    last_remaining: int | None = None

    def on_step(_status: int, remaining: int, _total: int) -> None:
        nonlocal restarts, last_remaining
        if last_remaining is not None and remaining > last_remaining:
            restarts += 1
            if restarts == 3:
                raise InterruptedError("restarting forever")
        last_remaining = remaining
        time.sleep(PAUSE_S)

    source = sqlite3.connect(f"{live_db.as_uri()}?mode=ro", uri=True)
    target = sqlite3.connect(tmp_path / "raw-copy.db")
    try:
        with pytest.raises(InterruptedError):
            source.backup(target, pages=PAGES_PER_STEP, progress=on_step)
    finally:
        source.close()
        target.close()
        writer.stop()
    assert restarts == 3


def test_export_is_one_instant_while_the_writer_commits(
    live_db: Path, writer: Writer, tmp_path: Path
) -> None:
    connection = libsql.connect(str(live_db), isolation_level=None)
    try:
        info = export_remote(connection, tmp_path / "export.db", batch_rows=100)
    finally:
        connection.close()
    report = writer.stop()

    copy = verify_database(tmp_path / "export.db")
    assert copy.table_counts["pair_a"] == copy.table_counts["pair_b"] == info.rows["pair_a"]
    assert report.commits > copy.table_counts["pair_a"]


RICH_SCHEMA = """
CREATE TABLE v (id INTEGER PRIMARY KEY, e F32_BLOB(3));
CREATE INDEX v_idx ON v(libsql_vector_idx(e));
CREATE TABLE counters (id INTEGER PRIMARY KEY AUTOINCREMENT, label TEXT);
CREATE TABLE pairs (a TEXT NOT NULL, b INTEGER NOT NULL, c REAL, PRIMARY KEY (a, b))
    WITHOUT ROWID;
CREATE TABLE loose (x, y BLOB);
CREATE TABLE shapes (w INTEGER, h INTEGER, area INTEGER AS (w * h) STORED,
    perimeter INTEGER GENERATED ALWAYS AS (2 * (w + h)) VIRTUAL);
CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT);
CREATE TRIGGER counters_audit AFTER INSERT ON counters
    BEGIN INSERT INTO audit (what) VALUES ('counter ' || NEW.label); END;
CREATE INDEX pairs_c ON pairs (c);
CREATE VIEW big_shapes AS SELECT * FROM shapes WHERE area > 10;
"""


def vector_of(i: int) -> str:
    return f"[{math.sin(i):.6f},{math.cos(1.7 * i):.6f},{math.sin(2.3 * i):.6f}]"


def build_rich_database(path: Path) -> None:
    connection = libsql.connect(str(path), isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL").fetchall()
    connection.executescript(RICH_SCHEMA)
    connection.execute("PRAGMA user_version=7").fetchall()
    connection.execute("BEGIN").fetchall()
    connection.executemany(
        "INSERT INTO v (id, e) VALUES (?, vector32(?))",
        # Directions spread over the sphere: the nearest row to a row's vector is itself.
        [(i, vector_of(i)) for i in range(1, 301)],
    )
    connection.executemany(
        "INSERT INTO counters (label) VALUES (?)", [(f"c{i}",) for i in range(50)]
    )
    connection.execute("DELETE FROM counters WHERE id > 40").fetchall()  # the sequence stays 50
    connection.executemany(
        "INSERT INTO pairs VALUES (?, ?, ?)",
        [(f"k{i % 17}", i, i / 3 if i % 5 else None) for i in range(700)],
    )
    connection.executemany(
        "INSERT INTO loose (rowid, x, y) VALUES (?, ?, ?)",
        [
            (-5, "negative rowid", b"\x00\x01"),
            (10, 42, None),
            (11, 4.5, b""),
            (12, "ünïcødé ✓", bytes(range(256))),
            (2**62, 2**62, b"big"),
        ],
    )
    connection.executemany(
        "INSERT INTO shapes (w, h) VALUES (?, ?)", [(i, i + 1) for i in range(40)]
    )
    connection.execute("COMMIT").fetchall()
    connection.close()


def top_match(path: Path, vector: str) -> int:
    connection = libsql.connect(str(path))
    try:
        rows = connection.execute(
            "SELECT id FROM vector_top_k('v_idx', vector32(?), 1)", (vector,)
        ).fetchall()
    finally:
        connection.close()
    return int(rows[0][0])


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = libsql.connect(str(path))
    try:
        return [tuple(row) for row in connection.execute(sql).fetchall()]
    finally:
        connection.close()


def test_export_reproduces_every_kind_of_table(tmp_path: Path) -> None:
    source = tmp_path / "rich.db"
    build_rich_database(source)
    connection = libsql.connect(str(source), isolation_level=None)
    try:
        export_remote(connection, tmp_path / "export.db", batch_rows=64)
    finally:
        connection.close()

    original = inspect_database(source)
    copy = verify_database(tmp_path / "export.db")
    assert copy.table_checksums == original.table_checksums
    assert copy.table_counts == original.table_counts
    assert set(copy.table_counts) == {"v", "counters", "pairs", "loose", "shapes", "audit"}
    assert copy.table_counts["audit"] == 50  # copied, not fired again by the trigger
    exported = tmp_path / "export.db"
    assert top_match(exported, vector_of(120)) == top_match(source, vector_of(120)) == 120
    assert query(exported, "SELECT name, seq FROM sqlite_sequence") == [("counters", 50)]
    assert query(exported, "SELECT rowid, x FROM loose WHERE rowid < 0") == [(-5, "negative rowid")]
    assert query(exported, "SELECT count(*) FROM big_shapes") == query(
        source, "SELECT count(*) FROM big_shapes"
    )
    assert query(exported, "PRAGMA user_version") == [(7,)]
    # The trigger exists in the copy and works there.
    connection = libsql.connect(str(exported), isolation_level=None)
    connection.execute("INSERT INTO counters (label) VALUES ('new')").fetchall()
    assert connection.execute("SELECT max(id) FROM counters").fetchall() == [(51,)]
    assert connection.execute("SELECT count(*) FROM audit").fetchall() == [(51,)]
    connection.close()


def test_snapshot_keeps_the_vector_index_working(tmp_path: Path) -> None:
    source = tmp_path / "rich.db"
    build_rich_database(source)

    snapshot_local(source, tmp_path / "copy.db", pages_per_step=8, pause_s=0)

    copy = verify_database(tmp_path / "copy.db")
    assert copy.table_checksums == inspect_database(source).table_checksums
    assert top_match(tmp_path / "copy.db", vector_of(77)) == top_match(source, vector_of(77)) == 77


def test_export_copies_fts5_tables(tmp_path: Path) -> None:
    source = tmp_path / "fts.db"
    connection = libsql.connect(str(source), isolation_level=None)
    connection.execute("CREATE VIRTUAL TABLE docs USING fts5(body)").fetchall()
    for rowid, body in ((3, "red apples"), (7, "green pears"), (9, "red wine")):
        connection.execute("INSERT INTO docs (rowid, body) VALUES (?, ?)", (rowid, body))
    try:
        export_remote(connection, tmp_path / "export.db", batch_rows=2)
    finally:
        connection.close()
    copy = libsql.connect(str(tmp_path / "export.db"), isolation_level=None)
    try:
        found = copy.execute("SELECT rowid FROM docs WHERE docs MATCH 'red' ORDER BY rowid")
        assert found.fetchall() == [(3,), (9,)]
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        copy.close()


def test_export_refuses_other_virtual_tables(tmp_path: Path) -> None:
    source = tmp_path / "rtree.db"
    connection = libsql.connect(str(source), isolation_level=None)
    connection.execute("CREATE VIRTUAL TABLE docs USING rtree(id, low, high)").fetchall()
    try:
        with pytest.raises(SnapshotFailed, match="virtual table 'docs'"):
            export_remote(connection, tmp_path / "export.db", batch_rows=10)
        assert not connection.in_transaction
    finally:
        connection.close()
    assert not (tmp_path / "export.db").exists()


def test_snapshot_of_a_missing_file_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(SnapshotFailed, match="no database file"):
        snapshot_local(tmp_path / "absent.db", tmp_path / "copy.db", pages_per_step=1, pause_s=0)


# --- the copy runs in a process of its own ------------------------------------------------


def _run_python(program: str, *arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", program, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


OPEN_AND_CLOSE = (
    "import libsql, sys; c = libsql.connect(sys.argv[1]); "
    "c.execute('SELECT count(*) FROM t').fetchall(); c.close()"
)
READ_IDS = (
    "import libsql, sys; c = libsql.connect(sys.argv[1]); "
    "print([r[0] for r in c.execute('SELECT id FROM t ORDER BY id').fetchall()])"
)


def test_a_snapshot_leaves_the_locks_of_the_calling_process_alone(tmp_path: Path) -> None:
    """Closing a second SQLite library's handle on the live file would drop this process's
    POSIX locks: another process's open-and-close would then delete the WAL under this
    process's connection, and its next commit would be seen by no other process."""
    live = tmp_path / "live.db"
    connection = libsql.connect(str(live), isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL").fetchall()
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)").fetchall()
        connection.execute("INSERT INTO t VALUES (1)").fetchall()
        snapshot_local(live, tmp_path / "copy.db", pages_per_step=1, pause_s=0)
        connection.execute("INSERT INTO t VALUES (2)").fetchall()
        _run_python(OPEN_AND_CLOSE, str(live))
        connection.execute("INSERT INTO t VALUES (3)").fetchall()
        assert _run_python(READ_IDS, str(live)).strip() == "[1, 2, 3]"
    finally:
        connection.close()
    assert query(tmp_path / "copy.db", "SELECT id FROM t") == [(1,)]


def _copying_processes(parent: int) -> list[int]:
    return [
        pid
        for pid in children_of(parent)
        if "page_copy.py" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    ]


class StopCopying(Exception):
    """What a time limit raises in the middle of a copy."""


def test_a_copy_abandoned_by_its_caller_is_killed_and_removed(
    live_db: Path, tmp_path: Path
) -> None:
    seen: list[int] = []

    def give_up_after_three_steps(done: int, _total: int) -> None:
        seen.extend(_copying_processes(os.getpid()))
        if done >= 3:
            raise StopCopying

    with pytest.raises(StopCopying):
        snapshot_local(
            live_db,
            tmp_path / "copy.db",
            pages_per_step=1,
            pause_s=0.01,
            progress=give_up_after_three_steps,
        )
    assert seen, "the copy did not run in a process of its own"
    assert not any(is_alive(pid) for pid in seen)
    assert not (tmp_path / "copy.db").exists()


def slow_snapshot(source: str, target: str) -> None:
    """A copy that would take minutes: 1 page per step, 50 ms apart."""
    snapshot_local(Path(source), Path(target), pages_per_step=1, pause_s=0.05)


def test_the_copy_ends_when_its_caller_is_killed(live_db: Path, tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    caller = context.Process(target=slow_snapshot, args=(str(live_db), str(tmp_path / "c.db")))
    caller.start()
    try:
        assert caller.pid is not None
        pid = caller.pid
        copying = wait_for(
            lambda: _copying_processes(pid) or None,
            timeout=WRITER_TIMEOUT_S,
            what="the copying process to start",
        )
        wait_until(
            lambda: (tmp_path / "c.db").exists(), timeout=WRITER_TIMEOUT_S, what="copy started"
        )
        caller.kill()  # the worker process dies (kill -9): nobody is left to end the copy
        caller.join(WRITER_TIMEOUT_S)
        wait_until(
            lambda: not any(is_alive(p) for p in copying),
            timeout=WRITER_TIMEOUT_S,
            what="the orphaned copy to exit",
        )
    finally:
        if caller.is_alive():
            caller.kill()
            caller.join(WRITER_TIMEOUT_S)
