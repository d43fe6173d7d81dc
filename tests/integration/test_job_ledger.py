"""The job ledger's state changes, straight through the repository (no worker)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.settings import Settings
from db.clock import database_now
from db.column_types import utcnow
from db.database import Database
from db.errors import CheckViolation, UniqueViolation
from db.models import JobModel
from db.repositories.jobs import JobCursor, JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobError, JobStatus
from tasks.canary.models import CanaryEffectModel

pytestmark = pytest.mark.integration


def _add(db: Database, **fields: object) -> Job:
    job = Job(kind="canary", arguments={"sleep_ms": 0}, max_attempts=3, **fields)  # type: ignore[arg-type]
    return write_transaction(db, lambda s: JobRepository(s).add(job))


def _get(db: Database, job_id: str) -> Job:
    with db.read_session() as session:
        job = JobRepository(session).get(job_id)
    assert job is not None
    return job


def _claim(db: Database, job_id: str, *, lease_s: float, owner: str | None = None) -> None:
    assert write_transaction(
        db, lambda s: JobRepository(s).claim(job_id, lease_s=lease_s, owner=owner)
    )


def _set(db: Database, job_id: str, **values: object) -> None:
    """Rewrite columns directly: move a lease or a publish into the past."""
    write_transaction(
        db, lambda s: s.execute(update(JobModel).where(JobModel.id == job_id).values(**values))
    )


def _db_now(db: Database) -> datetime:
    with db.read_session() as session:
        return database_now(session)


def test_claim_counts_attempts_and_skips_finished_or_leased_jobs(database: Database) -> None:
    job = _add(database)
    claimed = write_transaction(
        database, lambda s: JobRepository(s).claim(job.id, lease_s=60, owner="w1:10:11")
    )
    assert claimed is not None
    assert (claimed.status, claimed.attempts, claimed.lease_owner) == (
        JobStatus.RUNNING,
        1,
        "w1:10:11",
    )
    assert claimed.started_at is not None
    assert claimed.lease_expires_at is not None
    # The lease is on the database's clock.
    remaining = (claimed.lease_expires_at - _db_now(database)).total_seconds()
    assert 55 < remaining <= 60
    # A second delivery while the lease is live does not run it again.
    assert write_transaction(database, lambda s: JobRepository(s).claim(job.id, lease_s=60)) is None
    # After the lease lapses (the worker died) it can be claimed again.
    _set(database, job.id, lease_expires_at=_db_now(database) - timedelta(seconds=1))
    again = write_transaction(
        database, lambda s: JobRepository(s).claim(job.id, lease_s=60, owner="w2:20:21")
    )
    assert again is not None
    assert (again.attempts, again.lease_owner) == (2, "w2:20:21")


def test_renewal_extends_only_leases_held_by_the_named_owner(database: Database) -> None:
    mine, theirs, done = _add(database), _add(database), _add(database)
    for job, owner in ((mine, "w1:10:11"), (theirs, "w2:20:21"), (done, "w1:10:12")):
        _claim(database, job.id, lease_s=5, owner=owner)
    write_transaction(database, lambda s: JobRepository(s).succeed(done.id, attempt=1, result={}))
    mine_before = _get(database, mine.id).lease_expires_at
    theirs_before = _get(database, theirs.id).lease_expires_at

    held = [(mine.id, "w1:10:11"), (theirs.id, "w1:10:12"), (done.id, "w1:10:12")]
    renewed = write_transaction(
        database, lambda s: JobRepository(s).renew_leases(held, lease_s=600)
    )

    assert renewed == 1  # one UPDATE; only the pair that owns a running job
    mine_after = _get(database, mine.id).lease_expires_at
    assert mine_after is not None
    assert mine_before is not None
    assert (mine_after - mine_before).total_seconds() > 500
    assert _get(database, theirs.id).lease_expires_at == theirs_before
    assert _get(database, done.id).lease_expires_at is None


def test_release_ends_only_that_owners_lease_and_the_job_can_be_claimed_at_once(
    database: Database,
) -> None:
    job = _add(database)
    write_transaction(
        database, lambda s: JobRepository(s).claim(job.id, lease_s=600, owner="w1:10:11")
    )
    assert not write_transaction(
        database, lambda s: JobRepository(s).release_lease(job.id, owner="w1:10:12")
    )
    assert write_transaction(database, lambda s: JobRepository(s).claim(job.id, lease_s=60)) is None

    assert write_transaction(
        database, lambda s: JobRepository(s).release_lease(job.id, owner="w1:10:11")
    )
    again = write_transaction(
        database, lambda s: JobRepository(s).claim(job.id, lease_s=60, owner="w1:10:12")
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
    assert write_transaction(
        database,
        lambda s: JobRepository(s).schedule_retry(
            job.id, attempt=1, error=JobError("Boom", "temporarily"), delay_s=30
        ),
    )
    queued = _get(database, job.id)
    assert queued.status is JobStatus.QUEUED
    assert queued.error == JobError("Boom", "temporarily")
    assert queued.available_at is not None
    assert 25 < (queued.available_at - _db_now(database)).total_seconds() <= 30
    write_transaction(database, lambda s: JobRepository(s).claim(job.id, lease_s=60))
    assert write_transaction(
        database, lambda s: JobRepository(s).fail(job.id, JobError("Bad", "for good"), attempt=2)
    )
    failed = _get(database, job.id)
    assert (failed.status, failed.error) == (JobStatus.FAILED, JobError("Bad", "for good"))
    assert failed.finished_at is not None
    assert write_transaction(
        database, lambda s: JobRepository(s).requeue_failed(job.id, more_attempts=3)
    )
    fresh = _get(database, job.id)
    # Attempt numbers keep growing: two used, three more allowed.
    assert (fresh.status, fresh.attempts, fresh.max_attempts, fresh.error) == (
        JobStatus.QUEUED,
        2,
        5,
        None,
    )
    assert fresh.published_at is not None  # the publish after the commit is recorded
    assert not write_transaction(
        database, lambda s: JobRepository(s).requeue_failed(job.id, more_attempts=3)
    )


def test_a_stale_attempt_from_before_a_retry_cannot_end_the_new_run(database: Database) -> None:
    job = _add(database)
    write_transaction(database, lambda s: JobRepository(s).claim(job.id, lease_s=60))  # 1
    _set(database, job.id, lease_expires_at=_db_now(database) - timedelta(seconds=1))
    write_transaction(database, lambda s: JobRepository(s).claim(job.id, lease_s=60))  # 2
    write_transaction(
        database, lambda s: JobRepository(s).fail(job.id, JobError("Bad", "no"), attempt=2)
    )
    write_transaction(database, lambda s: JobRepository(s).requeue_failed(job.id, more_attempts=3))
    live = write_transaction(database, lambda s: JobRepository(s).claim(job.id, lease_s=60))
    assert live is not None
    assert live.attempts == 3

    # Attempt 1 was still running somewhere all along; it ends now, and changes nothing.
    assert not write_transaction(
        database, lambda s: JobRepository(s).succeed(job.id, attempt=1, result={"stale": 1})
    )
    assert not write_transaction(
        database, lambda s: JobRepository(s).fail(job.id, JobError("Old", "stale"), attempt=1)
    )
    assert write_transaction(
        database, lambda s: JobRepository(s).succeed(job.id, attempt=3, result={"live": 3})
    )
    assert _get(database, job.id).result == {"live": 3}


def test_due_for_publishing_finds_unpublished_stale_and_orphaned_jobs(database: Database) -> None:
    now = _db_now(database)
    never = _add(database)
    fresh = _add(database)
    stale = _add(database)
    waiting = _add(database, available_at=now + timedelta(minutes=5))
    orphan = _add(database)
    republished = _add(database)
    lost_again = _add(database)
    running = _add(database)
    write_transaction(database, lambda s: JobRepository(s).mark_unpublished([never.id, waiting.id]))
    _set(database, stale.id, published_at=now - timedelta(minutes=10))
    for job in (orphan, republished, lost_again, running):
        _claim(database, job.id, lease_s=600)
    # Enqueued a minute ago, their leases lapsed 30 s ago (their workers died).
    for job in (orphan, republished):
        _set(
            database,
            job.id,
            published_at=now - timedelta(minutes=1),
            lease_expires_at=now - timedelta(seconds=30),
        )
    # The sweeper already handed this one over after its lease lapsed: not again...
    write_transaction(database, lambda s: JobRepository(s).mark_published([republished.id]))
    # ...unless that was longer ago than the republish period.
    _set(
        database,
        lost_again.id,
        published_at=now - timedelta(minutes=10),
        lease_expires_at=now - timedelta(minutes=11),
    )

    with database.read_session() as session:
        due = JobRepository(session).due_for_publishing(republish_after_s=300)
        backlog = JobRepository(session).outbox_backlog()

    assert {job.id for job in due} == {never.id, stale.id, orphan.id, lost_again.id}
    assert fresh.id not in {job.id for job in due}
    assert backlog == 2  # never, waiting: their publish failed


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
