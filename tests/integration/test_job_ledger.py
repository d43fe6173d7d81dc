"""The job ledger's state changes, straight through the repository (no worker)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.settings import Settings
from db.column_types import utcnow
from db.database import Database
from db.errors import CheckViolation, UniqueViolation
from db.models import CanaryEffectModel, JobModel
from db.repositories.jobs import JobCursor, JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobError, JobKind, JobStatus

pytestmark = pytest.mark.integration


def _add(db: Database, **fields: object) -> Job:
    job = Job(kind=JobKind.CANARY, arguments={"sleep_ms": 0}, max_attempts=3, **fields)  # type: ignore[arg-type]
    return write_transaction(db, lambda s: JobRepository(s).add(job))


def _get(db: Database, job_id: str) -> Job:
    with db.read_session() as session:
        job = JobRepository(session).get(job_id)
    assert job is not None
    return job


def test_claim_counts_attempts_and_skips_finished_or_leased_jobs(database: Database) -> None:
    job = _add(database)
    claimed = write_transaction(database, lambda s: JobRepository(s).claim(job.id, lease_s=60))
    assert claimed is not None
    assert (claimed.status, claimed.attempts) == (JobStatus.RUNNING, 1)
    assert claimed.started_at is not None
    assert claimed.lease_expires_at is not None
    # A second delivery while the lease is live does not run it again.
    assert write_transaction(database, lambda s: JobRepository(s).claim(job.id, lease_s=60)) is None
    # After the lease lapses (the worker died) it can be claimed again.
    later = utcnow() + timedelta(seconds=120)
    again = write_transaction(
        database, lambda s: JobRepository(s).claim(job.id, lease_s=60, now=later)
    )
    assert again is not None
    assert again.attempts == 2


def test_only_the_owning_attempt_can_succeed_and_effects_commit_with_it(
    database: Database,
) -> None:
    job = _add(database)
    write_transaction(database, lambda s: JobRepository(s).claim(job.id, lease_s=60))
    assert not write_transaction(
        database, lambda s: JobRepository(s).succeed(job.id, attempt=2, result={})
    )

    def finish(session: Session) -> bool:
        ok = JobRepository(session).succeed(job.id, attempt=1, result={"n": 1})
        session.add(CanaryEffectModel(job_id=job.id, attempt=1))
        return ok

    assert write_transaction(database, finish)
    stored = _get(database, job.id)
    assert (stored.status, stored.result, stored.progress) == (JobStatus.SUCCEEDED, {"n": 1}, 1.0)
    # A late duplicate cannot succeed again, and its effect would be a duplicate key.
    assert not write_transaction(
        database, lambda s: JobRepository(s).succeed(job.id, attempt=1, result={})
    )
    with pytest.raises(UniqueViolation):
        write_transaction(database, lambda s: s.add(CanaryEffectModel(job_id=job.id, attempt=1)))


def test_cancelled_job_cannot_be_claimed_or_succeed(database: Database) -> None:
    job = _add(database)
    write_transaction(database, lambda s: JobRepository(s).claim(job.id, lease_s=60))
    assert write_transaction(database, lambda s: JobRepository(s).cancel(job.id))
    assert not write_transaction(database, lambda s: JobRepository(s).cancel(job.id))
    assert not write_transaction(
        database, lambda s: JobRepository(s).succeed(job.id, attempt=1, result={})
    )
    assert write_transaction(database, lambda s: JobRepository(s).claim(job.id, lease_s=1)) is None
    assert _get(database, job.id).status is JobStatus.CANCELLED


def test_retry_schedule_then_fail_then_requeue(database: Database) -> None:
    job = _add(database)
    write_transaction(database, lambda s: JobRepository(s).claim(job.id, lease_s=60))
    later = utcnow() + timedelta(seconds=30)
    assert write_transaction(
        database,
        lambda s: JobRepository(s).schedule_retry(
            job.id, attempt=1, error=JobError("Boom", "temporarily"), available_at=later
        ),
    )
    queued = _get(database, job.id)
    assert queued.status is JobStatus.QUEUED
    assert queued.error == JobError("Boom", "temporarily")
    write_transaction(database, lambda s: JobRepository(s).claim(job.id, lease_s=60))
    assert write_transaction(
        database, lambda s: JobRepository(s).fail(job.id, JobError("Bad", "for good"), attempt=2)
    )
    failed = _get(database, job.id)
    assert (failed.status, failed.error) == (JobStatus.FAILED, JobError("Bad", "for good"))
    assert failed.finished_at is not None
    assert write_transaction(database, lambda s: JobRepository(s).requeue_failed(job.id))
    fresh = _get(database, job.id)
    assert (fresh.status, fresh.attempts, fresh.error, fresh.published_at) == (
        JobStatus.QUEUED,
        0,
        None,
        None,
    )
    assert not write_transaction(database, lambda s: JobRepository(s).requeue_failed(job.id))


def test_due_for_publishing_finds_unpublished_stale_and_orphaned_jobs(database: Database) -> None:
    now = utcnow()
    never = _add(database)
    fresh = _add(database)
    stale = _add(database)
    waiting = _add(database, available_at=now + timedelta(minutes=5))
    orphan = _add(database)
    running = _add(database)
    write_transaction(database, lambda s: JobRepository(s).mark_published([fresh.id], at=now))
    write_transaction(
        database,
        lambda s: JobRepository(s).mark_published([stale.id], at=now - timedelta(minutes=10)),
    )
    write_transaction(
        database,
        lambda s: JobRepository(s).claim(orphan.id, lease_s=1, now=now - timedelta(minutes=1)),
    )
    write_transaction(database, lambda s: JobRepository(s).claim(running.id, lease_s=600))
    with database.read_session() as session:
        due = JobRepository(session).due_for_publishing(republish_after_s=300, now=now)
        backlog = JobRepository(session).outbox_backlog()
    assert {job.id for job in due} == {never.id, stale.id, orphan.id}
    assert waiting.id not in {job.id for job in due}
    assert backlog == 2  # never, waiting: neither was handed to the broker


def test_listing_is_newest_first_with_keyset_pages(database: Database) -> None:
    ids = [_add(database).id for _ in range(7)]
    seen: list[str] = []
    cursor: JobCursor | None = None
    while True:
        with database.read_session() as session:
            page = JobRepository(session).list_recent(limit=3, after=cursor)
        if not page:
            break
        seen.extend(job.id for job in page)
        last = page[-1]
        assert last.created_at is not None
        cursor = JobCursor(last.created_at, last.id)
    assert seen == list(reversed(ids))


def test_prune_deletes_only_old_finished_jobs_and_their_effects(database: Database) -> None:
    old_done, old_queued, new_done = _add(database), _add(database), _add(database)

    def finish(session: Session, job_id: str) -> None:
        JobRepository(session).claim(job_id, lease_s=60)
        JobRepository(session).succeed(job_id, attempt=1, result={})

    write_transaction(database, lambda s: finish(s, old_done.id))
    write_transaction(database, lambda s: finish(s, new_done.id))
    write_transaction(database, lambda s: s.add(CanaryEffectModel(job_id=old_done.id, attempt=1)))
    cutoff = utcnow() + timedelta(seconds=1)
    write_transaction(
        database,
        lambda s: s.execute(
            update(JobModel)
            .where(JobModel.id == new_done.id)
            .values(finished_at=cutoff + timedelta(days=1))
        ),
    )
    deleted = write_transaction(database, lambda s: JobRepository(s).prune_finished(before=cutoff))
    assert deleted == 1
    with database.read_session() as session:
        remaining = set(session.scalars(select(JobModel.id)))
        effects = session.scalar(select(func.count()).select_from(CanaryEffectModel))
    assert remaining == {old_queued.id, new_done.id}
    assert effects == 0


def test_ledger_checks_reject_bad_rows(migrated: Settings) -> None:
    db = Database(migrated)
    with pytest.raises(CheckViolation, match="ck_jobs_status"):
        _add(db, status="lost")
    with pytest.raises(CheckViolation, match="ck_jobs_progress"):
        _add(db, progress=1.5)
    _add(db, idempotency_key="k")
    with pytest.raises(UniqueViolation, match="idempotency_key"):
        _add(db, idempotency_key="k")
    db.dispose()
