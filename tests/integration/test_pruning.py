"""Pruning the ledger in batches, the WAL checkpoint after it, and disk space given back,
on real libSQL files (a vector index included)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import libsql
import pytest
from sqlalchemy import event, func, select, text

from core.settings import Settings
from db import migrations
from db.column_types import utcnow
from db.database import Database
from db.models import JobModel
from db.repositories.job_stats import JobStatsRepository
from db.repositories.jobs import JobRepository
from db.space import file_space
from db.transaction import write_transaction
from domain.jobs import Job, JobStatus
from tasks.canary.models import CanaryEffectModel
from tasks.maintenance.pruning import prune_ledger
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

# Evaluation-sized arguments (~1.7 KB), so that a few thousand rows fill many pages.
ARGUMENTS = '{"prompt_id": "p", "padding": "' + "x" * 1700 + '"}'
FILL = text(
    """
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
    INSERT INTO jobs (id, kind, status, arguments, attempts, max_attempts, progress,
                      created_at, started_at, finished_at, updated_at)
    SELECT :prefix || i, 'canary', :status, :arguments, 1, 3, 1.0,
           :finished, :finished, :finished, :finished
    FROM n
    """
)


def _fill(db: Database, rows: int, *, status: str, finished: datetime, prefix: str) -> None:
    """``rows`` finished canary jobs, ids ``prefix1`` .. ``prefixN``, in one statement."""
    stamp = finished.strftime("%Y-%m-%d %H:%M:%S.%f")
    write_transaction(
        db,
        lambda s: s.execute(
            FILL,
            {
                "rows": rows,
                "prefix": prefix,
                "status": status,
                "arguments": ARGUMENTS,
                "finished": stamp,
            },
        ),
    )


def _queued(db: Database) -> Job:
    job = Job(kind="canary", arguments={"sleep_ms": 0}, max_attempts=3)
    return write_transaction(db, lambda s: JobRepository(s).add(job))


def _remaining(db: Database) -> dict[str, int]:
    with db.read_session() as session:
        rows = session.execute(select(JobModel.status, func.count()).group_by(JobModel.status))
        return {str(status): int(count) for status, count in rows}


def _kept_counts(db: Database) -> dict[str, int]:
    with db.read_session() as session:
        current = JobStatsRepository(session).read().current
    return {status: count for (_, status), count in current.items() if count}


def test_each_batch_is_a_write_transaction_of_its_own(database: Database) -> None:
    old = utcnow() - timedelta(days=40)
    _fill(database, 1100, status="succeeded", finished=old, prefix="s")
    _fill(database, 150, status="failed", finished=old, prefix="f")
    _fill(database, 7, status="succeeded", finished=utcnow(), prefix="new")
    queued = _queued(database)
    write_transaction(
        database,
        lambda s: s.add_all(CanaryEffectModel(job_id=f"s{i}", attempt=1) for i in (1, 2, 3)),
    )

    # What reaches the database, in order: each DELETE must sit between a BEGIN
    # IMMEDIATE and a commit of its own.
    events: list[str] = []

    def statement(_c: Any, _cur: Any, sql: str, _p: Any, _ctx: Any, _many: bool) -> None:
        if sql.startswith(("BEGIN IMMEDIATE", "DELETE FROM jobs")):
            events.append(sql.split(" ")[0])

    event.listen(database.engine, "before_cursor_execute", statement)
    event.listen(database.engine, "commit", lambda _c: events.append("COMMIT"))
    report = prune_ledger(database, before=utcnow() - timedelta(days=30), batch_rows=500)

    assert (report.deleted, report.batches, report.complete) == (1250, 3, True)
    deletes = [i for i, name in enumerate(events) if name == "DELETE"]
    assert len(deletes) == 3
    for i in deletes:
        assert events[i - 1 : i + 2] == ["BEGIN", "DELETE", "COMMIT"], events
    # Only the old finished jobs went, their effects by cascade, the kept counts with them.
    assert _remaining(database) == {"succeeded": 7, "queued": 1}
    with database.read_session() as session:
        assert session.scalar(select(func.count()).select_from(CanaryEffectModel)) == 0
        assert JobRepository(session).get(queued.id) is not None
    assert _kept_counts(database) == _remaining(database)


def test_a_writer_gets_the_lock_between_batches(migrated: Settings) -> None:
    """Another writer (its own connections and lock, as another process has) commits
    while pruning is still going on: the batches leave it gaps."""
    pruner, writer = Database(migrated), Database(migrated)
    _fill(pruner, 6000, status="succeeded", finished=utcnow() - timedelta(days=40), prefix="s")
    batch_commits: list[float] = []
    event.listen(pruner.engine, "commit", lambda _c: batch_commits.append(time.monotonic()))
    writer_commits: list[float] = []
    pruning = threading.Event()
    pruning.set()

    def write_meanwhile() -> None:
        while pruning.is_set():
            _queued(writer)
            writer_commits.append(time.monotonic())
            time.sleep(0.002)

    thread = threading.Thread(target=write_meanwhile)
    thread.start()
    try:
        report = prune_ledger(pruner, before=utcnow() - timedelta(days=30), batch_rows=300)
    finally:
        pruning.clear()
        thread.join()
        pruner.dispose()
        writer.dispose()

    assert (report.deleted, report.batches) == (6000, 21)
    first, last = batch_commits[0], batch_commits[report.batches - 1]
    during = [t for t in writer_commits if first < t < last]
    # In many of the gaps between batches (it got into all 20 of them in quiet runs).
    gaps = {sum(1 for c in batch_commits[: report.batches] if c < t) for t in during}
    assert len(gaps) >= 5, (len(during), sorted(gaps))


def test_the_wal_is_checkpointed_and_emptied_after_pruning(
    database: Database, db_path: Path
) -> None:
    _fill(database, 2000, status="succeeded", finished=utcnow() - timedelta(days=40), prefix="s")
    wal = Path(f"{db_path}-wal")
    report = prune_ledger(database, before=utcnow() - timedelta(days=30))
    assert report.deleted == 2000
    assert report.checkpoint is not None
    assert report.checkpoint.done
    assert wal.stat().st_size == 0


# ------------------------------------------------------------------------ disk space

VECTORS = 300


def _vector(i: int) -> str:
    return f"[{(i * 7) % 101 / 101:.4f}, {(i * 13) % 97 / 97:.4f}, {(i * 29) % 89 / 89:.4f}]"


def _nearest(db: Database, probe: str) -> list[int]:
    with db.read_session() as session:
        rows = session.execute(
            text(
                "SELECT e.id FROM vector_top_k('embeddings_idx', vector32(:probe), 10) AS t "
                "JOIN embeddings AS e ON e.rowid = t.id"
            ),
            {"probe": probe},
        )
        return sorted(int(row[0]) for row in rows)


def _add_vectors(db: Database, ids: range) -> None:
    write_transaction(
        db,
        lambda s: s.execute(
            text("INSERT INTO embeddings (id, e) VALUES (:id, vector32(:v))"),
            [{"id": i, "v": _vector(i)} for i in ids],
        ),
    )


def _integrity(path: Path) -> list[tuple[Any, ...]]:
    connection = libsql.connect(str(path))
    try:
        return [tuple(row) for row in connection.execute("PRAGMA integrity_check").fetchall()]
    finally:
        connection.close()


def test_a_new_file_shrinks_after_pruning_and_its_vector_index_survives(
    database: Database, db_path: Path
) -> None:
    """The file is created with incremental auto-vacuum; pruning gives the freed pages
    back by moving pages (``incremental_vacuum``), never by ``VACUUM``, which corrupts
    libSQL's vector index metadata."""
    write_transaction(
        database,
        lambda s: [
            s.execute(text("CREATE TABLE embeddings (id INTEGER PRIMARY KEY, e F32_BLOB(3))")),
            s.execute(text("CREATE INDEX embeddings_idx ON embeddings (libsql_vector_idx(e))")),
        ],
    )
    old = utcnow() - timedelta(days=40)
    # Old jobs, vectors and recent jobs interleaved in the file: giving pages back must
    # move pages of the vector index and of the jobs that stay.
    for round_ in range(3):
        _fill(database, 1500, status="succeeded", finished=old, prefix=f"old{round_}-")
        _add_vectors(database, range(round_ * VECTORS, (round_ + 1) * VECTORS))
        _fill(database, 200, status="succeeded", finished=utcnow(), prefix=f"new{round_}-")
    probes = [_vector(i * 31 + 5) for i in range(5)]
    nearest_before = [_nearest(database, probe) for probe in probes]
    before = file_space(database)
    assert before.auto_vacuum == "incremental"

    report = prune_ledger(database, before=utcnow() - timedelta(days=30), vacuum_step_pages=64)

    after = file_space(database)
    assert report.deleted == 4500
    assert report.pages_given_back > 0
    assert after.free_pages == 0
    # Most of the file was old jobs: it is now a fraction of its size.
    assert after.pages <= before.pages - report.pages_given_back
    assert after.pages * 3 < before.pages
    assert db_path.stat().st_size == after.size_bytes  # truncated at the checkpoint
    assert _integrity(db_path) == [("ok",)]
    assert [_nearest(database, probe) for probe in probes] == nearest_before
    # The index still takes new vectors and finds them.
    _add_vectors(database, range(10_000, 10_005))
    assert 10_002 in _nearest(database, _vector(10_002))
    assert _integrity(db_path) == [("ok",)]
    assert _remaining(database) == {"succeeded": 600}


def test_a_file_created_before_keeps_its_size_and_reuses_its_free_pages(
    tmp_path: Path,
) -> None:
    """A file that had tables before incremental auto-vacuum was set cannot switch
    without ``VACUUM``: pruning frees its pages for reuse and leaves its size alone."""
    path = tmp_path / "old.db"
    connection = libsql.connect(str(path))
    connection.execute("CREATE TABLE legacy (x)")
    connection.commit()
    connection.close()
    settings = make_settings(path)
    migrations.upgrade(settings)
    db = Database(settings)
    try:
        _fill(db, 1500, status="succeeded", finished=utcnow() - timedelta(days=40), prefix="s")
        before = file_space(db)
        report = prune_ledger(db, before=utcnow() - timedelta(days=30))
        after = file_space(db)
        assert before.auto_vacuum == after.auto_vacuum == "none"
        assert (report.deleted, report.pages_given_back) == (1500, 0)
        assert after.pages == before.pages
        assert after.free_pages > 0
        # New rows take the freed pages: the file does not grow.
        _fill(db, 500, status="succeeded", finished=utcnow(), prefix="again")
        assert file_space(db).pages == before.pages
    finally:
        db.dispose()


def test_pruning_only_counts_finished_jobs(database: Database) -> None:
    """Queued and running jobs are never pruned, however old (their finished_at is
    empty; a status is checked as well)."""
    old = utcnow() - timedelta(days=90)
    for status in (JobStatus.QUEUED, JobStatus.RUNNING):
        _fill(database, 3, status=str(status), finished=old, prefix=f"{status}-")
    report = prune_ledger(database, before=utcnow())
    assert report.deleted == 0
    assert _remaining(database) == {"queued": 3, "running": 3}
