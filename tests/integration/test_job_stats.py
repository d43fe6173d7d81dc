"""Job statistics kept by triggers on ``jobs`` (migration 0007), on real libSQL files.

Every change goes through the ledger's own repository (as the API and workers make it);
after each step the statistics are compared with what a full scan of ``jobs`` says.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import libsql
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core.settings import Settings
from db import migrations
from db.column_types import utcnow
from db.database import Database
from db.errors import QueryError
from db.models import JobModel
from db.repositories.job_stats import JobStats, JobStatsRepository
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobError

pytestmark = pytest.mark.integration

TRIGGERS = {
    "trg_jobs_stats_insert",
    "trg_jobs_stats_status",
    "trg_jobs_stats_lease_lapse",
    "trg_jobs_stats_delete",
}
T0 = "2025-01-01 00:00:00.000000"
# A timestamp ``:later`` after ``:t``, in milliseconds (SQLite's datetime() drops them).
AT = "strftime('%Y-%m-%d %H:%M:%f', :t, :later)"


def _add(db: Database, kind: str = "canary") -> Job:
    job = Job(kind=kind, arguments={}, max_attempts=5)
    return write_transaction(db, lambda s: JobRepository(s).add(job))


def _stats(db: Database) -> JobStats:
    with db.read_session() as session:
        return JobStatsRepository(session).read()


def _scanned(db: Database) -> dict[tuple[str, str], int]:
    """What a full scan of the ledger says: jobs by (kind, status)."""
    with db.read_session() as session:
        rows = session.execute(
            select(JobModel.kind, JobModel.status, func.count()).group_by(
                JobModel.kind, JobModel.status
            )
        ).all()
    return {(kind, status): int(count) for kind, status, count in rows}


def _current(db: Database) -> dict[tuple[str, str], int]:
    """The kept counts, without the (kind, status) pairs that are back at zero."""
    return {key: count for key, count in _stats(db).current.items() if count}


def _claim(db: Database, job_id: str, *, lease_s: float = 60, **kwargs: Any) -> Job:
    claimed = write_transaction(
        db, lambda s: JobRepository(s).claim(job_id, lease_s=lease_s, **kwargs)
    )
    assert claimed is not None
    return claimed


def test_counts_follow_every_change_and_counters_survive_pruning(database: Database) -> None:
    db = database
    ok, failing, retried, cancelled_queued, cancelled_running, lapsed = (_add(db) for _ in range(6))
    _add(db, "evaluation")
    assert _current(db) == _scanned(db) == {("canary", "queued"): 6, ("evaluation", "queued"): 1}

    # Claim, then succeed.
    _claim(db, ok.id)
    assert _current(db) == _scanned(db)
    assert write_transaction(db, lambda s: JobRepository(s).succeed(ok.id, attempt=1, result={}))
    # Claim, then fail.
    _claim(db, failing.id)
    error = JobError("Boom", "no")
    assert write_transaction(db, lambda s: JobRepository(s).fail(failing.id, error, attempt=1))
    # A transient error: back to queued with a delay, then claimed again and succeeds.
    _claim(db, retried.id)
    assert write_transaction(
        db,
        lambda s: JobRepository(s).schedule_retry(retried.id, attempt=1, error=error, delay_s=0),
    )
    assert _current(db) == _scanned(db)
    _claim(db, retried.id)
    assert write_transaction(
        db, lambda s: JobRepository(s).succeed(retried.id, attempt=2, result={})
    )
    # Cancelled while queued, and while running.
    assert write_transaction(db, lambda s: JobRepository(s).cancel(cancelled_queued.id))
    _claim(db, cancelled_running.id)
    assert write_transaction(db, lambda s: JobRepository(s).cancel(cancelled_running.id))
    # A worker dies: its lease lapses and another attempt takes the job over.
    _claim(db, lapsed.id, lease_s=0)
    taken_over = _claim(db, lapsed.id)
    assert taken_over.attempts == 2
    # A failed job sent back by an operator.
    assert write_transaction(
        db, lambda s: JobRepository(s).requeue_failed(failing.id, more_attempts=1)
    )

    assert (
        _current(db)
        == _scanned(db)
        == {
            ("canary", "queued"): 1,
            ("canary", "running"): 1,
            ("canary", "succeeded"): 2,
            ("canary", "cancelled"): 2,
            ("evaluation", "queued"): 1,
        }
    )
    stats = _stats(db)
    assert stats.entered == {
        ("canary", "queued"): 6 + 1 + 1,  # accepted, one retry, one requeue
        ("canary", "running"): 6,  # the takeover does not enter running again
        ("canary", "succeeded"): 2,
        ("canary", "failed"): 1,
        ("canary", "cancelled"): 2,
        ("evaluation", "queued"): 1,
    }
    assert stats.retries == {"canary": 1}
    assert stats.lease_lapses == {"canary": 1}
    # Durations: each job that started and ended; the queued cancellation never started.
    assert {key: h.count for key, h in stats.durations.items()} == {
        ("canary", "succeeded"): 2,
        ("canary", "failed"): 1,
        ("canary", "cancelled"): 1,
    }
    # Start delays: every queued -> running (the retry's second start included).
    assert stats.start_delays["canary"].count == 6

    # Pruning deletes the finished jobs: current counts fall, counters do not.
    pruned = write_transaction(
        db,
        lambda s: JobRepository(s).prune_finished(before=utcnow() + timedelta(days=1)),
    )
    assert pruned == 4
    assert (
        _current(db)
        == _scanned(db)
        == {
            ("canary", "queued"): 1,
            ("canary", "running"): 1,
            ("evaluation", "queued"): 1,
        }
    )
    after = _stats(db)
    assert after.entered == stats.entered
    assert after.retries == stats.retries
    assert after.lease_lapses == stats.lease_lapses
    assert after.durations == stats.durations
    assert after.start_delays == stats.start_delays


def test_histograms_put_each_job_in_its_bucket(database: Database) -> None:
    """Durations and start delays from the application's timestamps, bucket by bucket."""
    jobs = [_add(database) for _ in range(3)]

    def arrange(session: Session) -> None:
        # Accepted at T0; started 0.3 s, 42 s and 2 h later; each ran for as long again.
        for job, seconds in zip(jobs, (0.3, 42.0, 7300.0), strict=True):
            later = f"+{seconds} seconds"
            session.execute(
                text("UPDATE jobs SET created_at = :t0, updated_at = :t0 WHERE id = :id"),
                {"t0": T0, "id": job.id},
            )
            session.execute(
                text(
                    f"UPDATE jobs SET status = 'running', attempts = 1, started_at = {AT}, "
                    f"updated_at = {AT} WHERE id = :id"
                ),
                {"t": T0, "later": later, "id": job.id},
            )
            finished = AT.replace(":t", "started_at")
            session.execute(
                text(
                    f"UPDATE jobs SET status = 'succeeded', finished_at = {finished}, "
                    f"updated_at = {finished} WHERE id = :id"
                ),
                {"later": later, "id": job.id},
            )

    write_transaction(database, arrange)

    stats = _stats(database)
    durations = dict(stats.durations[("canary", "succeeded")].buckets)
    delays = dict(stats.start_delays["canary"].buckets)
    assert (durations[0.1], durations[0.5], durations[30], durations[60]) == (0, 1, 1, 2)
    assert (durations[7200], durations[float("inf")]) == (2, 3)
    assert (delays[0.1], delays[0.5], delays[30], delays[60], delays[3600]) == (0, 1, 1, 2, 2)
    assert delays[float("inf")] == 3
    assert stats.durations[("canary", "succeeded")].sum == pytest.approx(7342.3, abs=0.01)
    assert stats.start_delays["canary"].sum == pytest.approx(7342.3, abs=0.01)


def test_statistics_roll_back_with_the_change(database: Database) -> None:
    job = _add(database)
    before = _stats(database)

    def claim_then_break(session: Session) -> None:
        assert JobRepository(session).claim(job.id, lease_s=60) is not None
        session.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(QueryError):
        write_transaction(database, claim_then_break)

    assert _stats(database) == before
    assert _current(database) == _scanned(database) == {("canary", "queued"): 1}


# --------------------------------------------------------------------------- migration


def _raw(db_path: Path, *statements: str) -> list[tuple[Any, ...]]:
    conn = libsql.connect(str(db_path))
    try:
        rows: list[tuple[Any, ...]] = []
        for statement in statements:
            rows = [tuple(row) for row in conn.execute(statement).fetchall() or []]
        conn.commit()
        return rows
    finally:
        conn.close()


def _job_row(job_id: str, kind: str, status: str) -> str:
    return (
        "INSERT INTO jobs (id, kind, status, arguments, attempts, max_attempts, progress, "
        f"created_at, updated_at) VALUES ('{job_id}', '{kind}', '{status}', '{{}}', 0, 3, 0.0, "
        f"'{T0}', '{T0}')"
    )


def _triggers(db_path: Path) -> set[str]:
    rows = _raw(db_path, "SELECT name FROM sqlite_master WHERE type = 'trigger'")
    return {str(name) for (name,) in rows}


def test_migration_counts_existing_jobs_and_downgrades_cleanly(
    settings: Settings, db_path: Path
) -> None:
    # The revision just before the statistics (whatever it is called).
    revision = ScriptDirectory.from_config(migrations.alembic_config(settings)).get_revision("0007")
    assert revision is not None
    before = revision.down_revision
    assert isinstance(before, str)
    migrations.upgrade(settings, before)
    _raw(
        db_path,
        _job_row("a", "canary", "queued"),
        _job_row("b", "canary", "queued"),
        _job_row("c", "canary", "succeeded"),
        _job_row("d", "backup", "failed"),
    )
    expected = {("canary", "queued"): 2, ("canary", "succeeded"): 1, ("backup", "failed"): 1}

    migrations.upgrade(settings, "0007")
    assert _triggers(db_path) == TRIGGERS
    db = Database(settings)
    try:
        assert _current(db) == _scanned(db) == expected

        migrations.downgrade(settings, before)
        assert _triggers(db_path) == set()
        tables = _raw(db_path, "SELECT name FROM sqlite_master WHERE name = 'job_stats'")
        assert tables == []
        # Without the triggers, changes leave no trace anywhere.
        _raw(db_path, _job_row("e", "canary", "queued"), "DELETE FROM jobs WHERE id = 'd'")

        migrations.upgrade(settings, "0007")
        assert _triggers(db_path) == TRIGGERS
        assert _current(db) == _scanned(db) == {("canary", "queued"): 3, ("canary", "succeeded"): 1}
        # And the triggers work again after the round trip.
        write_transaction(db, lambda s: JobRepository(s).cancel("a"))
        assert _current(db) == _scanned(db)
        assert Counter(_stats(db).entered) == Counter({("canary", "cancelled"): 1})
    finally:
        db.dispose()
