"""Persistence of the job ledger. Takes a session; the caller owns the transaction.

State changes are conditional UPDATEs (``... WHERE status = 'running'``): inside a
``BEGIN IMMEDIATE`` write transaction that makes each change exactly-once even when a
redelivered message races the original.

Leases, due times and publish times come from the database's clock (:mod:`db.clock`):
processes on different machines compare them.

Queries that must stay cheap however long the ledger grows seek an index, which tests
check with ``EXPLAIN QUERY PLAN``: keyset pages compare the row value
``(created_at, id)``, and statuses that select a partial index are written into the SQL
(:func:`_inline`), since SQLite only uses a partial index when the query's WHERE visibly
implies the index's, which a bound parameter never does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from db.clock import db_now, db_now_at, offset
from db.column_types import UTCDateTime, utcnow
from db.models import JobModel
from domain.jobs import Job, JobError, JobStatus

UNFINISHED = (str(JobStatus.QUEUED), str(JobStatus.RUNNING))
# In the order of the partial indexes' WHERE clauses (idx_jobs_unfinished, idx_jobs_finished).
FINISHED = (str(JobStatus.SUCCEEDED), str(JobStatus.FAILED), str(JobStatus.CANCELLED))
#: The table itself, for the worker's hot path: Core statements on the session's
#: connection skip the ORM's bulk-update bookkeeping (no objects are involved).
JOBS = cast(Table, JobModel.__table__)
#: Finished jobs deleted per write transaction by :meth:`JobRepository.prune_finished`.
PRUNE_BATCH_ROWS = 200


# The worker's and the enqueuer's statements are built once: building and keying a
# statement costs more CPU than SQLite takes to run it.
_INSERT = insert(JOBS).values(published_at=db_now()).returning(JOBS.c.published_at)
_CLAIM = (
    update(JOBS)
    .where(
        JOBS.c.id == bindparam("job_id"),
        or_(
            JOBS.c.status == str(JobStatus.QUEUED),
            and_(
                JOBS.c.status == str(JobStatus.RUNNING),
                JOBS.c.lease_expires_at <= db_now(),
            ),
        ),
    )
    .values(
        status=str(JobStatus.RUNNING),
        attempts=JOBS.c.attempts + 1,
        lease_expires_at=db_now_at("lease"),
        lease_owner=bindparam("owner"),
        started_at=func.coalesce(JOBS.c.started_at, bindparam("now_started", type_=UTCDateTime())),
        available_at=None,
        updated_at=bindparam("now", type_=UTCDateTime()),
    )
    .returning(*JOBS.c)
)
_SUCCEED = (
    update(JOBS)
    .where(
        JOBS.c.id == bindparam("job_id"),
        JOBS.c.status == str(JobStatus.RUNNING),
        JOBS.c.attempts == bindparam("attempt"),
    )
    .values(
        status=str(JobStatus.SUCCEEDED),
        result=bindparam("result", type_=JOBS.c.result.type),
        progress=1.0,
        error_kind=None,
        error_message=None,
        lease_expires_at=None,
        finished_at=bindparam("now_f", type_=UTCDateTime()),
        updated_at=bindparam("now", type_=UTCDateTime()),
    )
)


@dataclass(frozen=True, slots=True)
class JobCursor:
    """Keyset position in the newest-first listing: (created_at, id) of the last row seen."""

    created_at: datetime
    id: str


class JobRepository:
    """The jobs table."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, job: Job) -> Job:
        """Insert a job, its publish recorded as done: the outbox publishes it right after
        the commit and records only a failed publish (see :mod:`jobs.outbox`).

        One Core ``INSERT ... RETURNING`` (the publish time is the database's clock): no
        ORM object to flush and read back."""
        now = utcnow()
        values: dict[str, Any] = {
            "id": job.id,
            "kind": str(job.kind),
            "status": str(job.status),
            "arguments": job.arguments,
            "idempotency_key": job.idempotency_key,
            "request_hash": job.request_hash,
            "attempts": job.attempts,
            "max_attempts": job.max_attempts,
            "progress": job.progress,
            "available_at": job.available_at,
            "created_at": now,
            "updated_at": now,
        }
        published_at = self.session.connection().execute(_INSERT, values).scalar_one()
        return replace(job, published_at=published_at, created_at=now, updated_at=now)

    def get(self, job_id: str) -> Job | None:
        # populate_existing: a conditional UPDATE above may have changed the row.
        row = self.session.scalars(
            select(JobModel).where(JobModel.id == job_id).execution_options(populate_existing=True)
        ).one_or_none()
        return to_domain(row) if row else None

    def get_by_idempotency_key(self, key: str) -> Job | None:
        row = self.session.scalars(
            select(JobModel).where(JobModel.idempotency_key == key)
        ).one_or_none()
        return to_domain(row) if row else None

    def oldest_created_at(self) -> datetime | None:
        """When the oldest job still in the ledger was accepted (``None``: an empty ledger)."""
        oldest: datetime | None = self.session.scalar(select(func.min(JobModel.created_at)))
        return oldest

    def list_recent(
        self,
        *,
        kind: str | None = None,
        status: JobStatus | None = None,
        limit: int = 50,
        after: JobCursor | None = None,
    ) -> list[Job]:
        """Jobs newest first; ``after`` continues from a previous page's last row."""
        query = select(JobModel)
        if kind is not None:
            query = query.where(JobModel.kind == str(kind))
        if status is not None:
            query = query.where(JobModel.status == str(status))
        if after is not None:
            # A row value, not "created_at < ? OR (created_at = ? AND id < ?)": SQLite
            # seeks (created_at, id) in the index instead of scanning it from the top.
            query = query.where(
                tuple_(JobModel.created_at, JobModel.id) < tuple_(after.created_at, after.id)
            )
        query = query.order_by(JobModel.created_at.desc(), JobModel.id.desc()).limit(limit)
        return [to_domain(row) for row in self.session.scalars(query)]

    # --- the worker's side ---------------------------------------------------------------

    def claim(self, job_id: str, *, lease_s: float, owner: str | None = None) -> Job | None:
        """Mark a queued job (or one whose lease lapsed) running under ``owner``'s lease
        and count the attempt. Workers always name the owner (see :mod:`jobs.leases`);
        a lease without one is never renewed.

        Returns ``None`` when the job must not run now: it is finished, cancelled, or
        running under a live lease elsewhere. One statement: the UPDATE returns the row
        it claimed.
        """
        now = utcnow()
        claimed = (
            self.session.connection()
            .execute(
                _CLAIM,
                {
                    "job_id": job_id,
                    "lease": offset(lease_s),
                    "owner": owner,
                    "now": now,
                    "now_started": now,
                },
            )
            .one_or_none()
        )
        return to_domain(claimed) if claimed is not None else None

    def renew_leases(self, held: list[tuple[str, str]], *, lease_s: float) -> int:
        """Extend the leases of running jobs, each given as (job id, lease owner); a job
        now held by another owner, or no longer running, is left alone. One UPDATE for
        all of them. Returns how many were renewed."""
        if not held:
            return 0
        result = self.session.execute(
            update(JobModel)
            .where(
                # The id list lets SQLite look the rows up by primary key.
                JobModel.id.in_([job_id for job_id, _ in held]),
                JobModel.status == str(JobStatus.RUNNING),
                tuple_(JobModel.id, JobModel.lease_owner).in_(held),
            )
            .values(lease_expires_at=db_now(lease_s))
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def release_lease(self, job_id: str, *, owner: str) -> bool:
        """End ``owner``'s lease now (its process died): the job may be claimed at once."""
        result = self.session.execute(
            update(JobModel)
            .where(
                JobModel.id == job_id,
                JobModel.status == str(JobStatus.RUNNING),
                JobModel.lease_owner == owner,
            )
            .values(lease_expires_at=db_now(), updated_at=utcnow())
        )
        return _changed(result)

    def set_progress(
        self,
        job_id: str,
        *,
        attempt: int,
        progress: float,
        partial_result: dict[str, Any] | None = None,
    ) -> bool:
        """Record a running attempt's progress; ``partial_result`` (its counts so far, for
        a kind whose totals are only known once it runs) becomes the job's result until
        it ends."""
        values: dict[str, Any] = {"progress": min(max(progress, 0.0), 1.0), "updated_at": utcnow()}
        if partial_result is not None:
            values["result"] = partial_result
        result = self.session.execute(
            update(JobModel).where(*_owned_by(job_id, attempt)).values(**values)
        )
        return _changed(result)

    def succeed(self, job_id: str, *, attempt: int, result: dict[str, Any]) -> bool:
        """Mark the attempt's job succeeded. False if it no longer owns a running job
        (cancelled, or finished by another delivery): the caller must then roll back."""
        now = utcnow()
        changed = self.session.connection().execute(
            _SUCCEED,
            {"job_id": job_id, "attempt": attempt, "result": result, "now": now, "now_f": now},
        )
        return _changed(changed)

    def schedule_retry(self, job_id: str, *, attempt: int, error: JobError, delay_s: float) -> bool:
        """Back to ``queued`` after a transient failure, runnable again in ``delay_s``.

        Its publish is recorded: the worker hands the message back with that countdown.
        """
        now = utcnow()
        changed = self.session.execute(
            update(JobModel)
            .where(*_owned_by(job_id, attempt))
            .values(
                status=str(JobStatus.QUEUED),
                error_kind=error.kind,
                error_message=error.message,
                lease_expires_at=None,
                available_at=db_now(delay_s),
                published_at=db_now(),
                updated_at=now,
            )
        )
        return _changed(changed)

    def fail(self, job_id: str, error: JobError, *, attempt: int | None = None) -> bool:
        """End a job ``failed`` with its error recorded (the dead-letter list)."""
        now = utcnow()
        conditions = [JobModel.id == job_id, JobModel.status.in_(UNFINISHED)]
        if attempt is not None:
            conditions.append(JobModel.attempts == attempt)
        changed = self.session.execute(
            update(JobModel)
            .where(*conditions)
            .values(
                status=str(JobStatus.FAILED),
                error_kind=error.kind,
                error_message=error.message,
                lease_expires_at=None,
                finished_at=now,
                updated_at=now,
            )
        )
        return _changed(changed)

    # --- the API's side ------------------------------------------------------------------

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False if it had already finished."""
        now = utcnow()
        changed = self.session.execute(
            update(JobModel)
            .where(JobModel.id == job_id, JobModel.status.in_(UNFINISHED))
            .values(
                status=str(JobStatus.CANCELLED),
                lease_expires_at=None,
                finished_at=now,
                updated_at=now,
            )
        )
        return _changed(changed)

    def requeue_failed(self, job_id: str, *, more_attempts: int) -> bool:
        """Give a failed job ``more_attempts`` further attempts; False unless it was failed.

        Attempt numbers only grow: the next attempt is numbered after every earlier one,
        so an attempt from before the retry that is still running somewhere can never
        pass for the new one (its success or failure changes nothing). Like :meth:`add`,
        the publish that follows the commit is recorded as done.
        """
        changed = self.session.execute(
            update(JobModel)
            .where(JobModel.id == job_id, JobModel.status == str(JobStatus.FAILED))
            .values(
                status=str(JobStatus.QUEUED),
                max_attempts=JobModel.attempts + more_attempts,
                progress=0.0,
                error_kind=None,
                error_message=None,
                lease_expires_at=None,
                available_at=None,
                published_at=db_now(),
                started_at=None,
                finished_at=None,
                updated_at=utcnow(),
            )
        )
        return _changed(changed)

    # --- the outbox --------------------------------------------------------------------

    def mark_published(self, job_ids: list[str]) -> None:
        """Record that the broker accepted these jobs' messages just now."""
        if not job_ids:
            return
        self.session.execute(
            update(JobModel)
            .where(JobModel.id.in_(job_ids), JobModel.status.in_(UNFINISHED))
            .values(published_at=db_now())
        )

    def mark_unpublished(self, job_ids: list[str]) -> None:
        """Record that these queued jobs' publish failed: the sweeper's next pass takes them."""
        if not job_ids:
            return
        self.session.execute(
            update(JobModel)
            .where(JobModel.id.in_(job_ids), JobModel.status == str(JobStatus.QUEUED))
            .values(published_at=None)
        )

    def due_for_publishing(self, *, republish_after_s: float, limit: int = 500) -> list[Job]:
        """Jobs the broker may not hold, oldest first.

        - queued and due, and never published (the publish failed) or published longer
          than ``republish_after_s`` ago (the message may be lost);
        - running under a lapsed lease (its worker died) and not republished since the
          lease lapsed, or republished longer than ``republish_after_s`` ago: each lost
          job is handed over once, not on every sweep.
        """
        now = db_now()
        stale = db_now(-republish_after_s)
        queued = and_(
            JobModel.status == _inline(JobStatus.QUEUED),
            or_(JobModel.published_at.is_(None), JobModel.published_at < stale),
            or_(JobModel.available_at.is_(None), JobModel.available_at <= now),
        )
        orphaned = and_(
            JobModel.status == _inline(JobStatus.RUNNING),
            JobModel.lease_expires_at <= now,
            or_(
                JobModel.published_at.is_(None),
                JobModel.published_at < JobModel.lease_expires_at,
                JobModel.published_at < stale,
            ),
        )
        query = (
            select(JobModel)
            .where(_unfinished(), or_(queued, orphaned))
            .order_by(JobModel.created_at)
            .limit(limit)
        )
        return [to_domain(row) for row in self.session.scalars(query)]

    def prune_finished(self, *, before: datetime, limit: int = PRUNE_BATCH_ROWS) -> int:
        """Delete up to ``limit`` jobs that finished before ``before`` (and, by cascade,
        their effects rows); returns how many.

        One batch: the caller commits each batch in a write transaction of its own and
        repeats while batches come back full (:mod:`tasks.maintenance.pruning`), so
        other writers get the lock between batches. The batch's row ids are read from
        the finished jobs' index alone (``idx_jobs_finished``: status, finish time).
        """
        rowid: ColumnElement[int] = literal_column("rowid")
        batch = (
            select(rowid)
            .select_from(JobModel)
            .where(
                JobModel.status.in_(_inline_all(FINISHED)),
                JobModel.finished_at < before,
            )
            .limit(limit)
            .correlate(None)
        )
        result = self.session.execute(
            delete(JobModel).where(rowid.in_(batch)).execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def outbox_backlog(self) -> int:
        """Queued jobs whose publish failed (recorded), waiting for the sweeper.

        Counted in the unfinished jobs' index alone, however many finished jobs the
        ledger holds.
        """
        return int(
            self.session.scalar(
                select(func.count()).where(
                    _unfinished(),
                    JobModel.status == _inline(JobStatus.QUEUED),
                    JobModel.published_at.is_(None),
                )
            )
            or 0
        )


def _owned_by(job_id: str, attempt: int) -> tuple[ColumnElement[bool], ...]:
    """The job is running and this attempt still owns it: the guard of every change a
    worker makes, so a superseded or cancelled attempt changes nothing."""
    return (
        JobModel.id == job_id,
        JobModel.status == str(JobStatus.RUNNING),
        JobModel.attempts == attempt,
    )


def _inline(status: JobStatus) -> ColumnElement[str]:
    """A status written into the SQL text, not bound (see the module's docstring)."""
    return literal(str(status), literal_execute=True)


def _inline_all(statuses: tuple[str, ...]) -> Any:
    """Statuses for ``IN``, written into the SQL text in this order."""
    return bindparam(None, list(statuses), expanding=True, literal_execute=True)


def _unfinished() -> ColumnElement[bool]:
    """``status IN ('queued', 'running')`` as in ``idx_jobs_unfinished``'s WHERE: with
    it in the query SQLite may use that index (the unfinished jobs only)."""
    return JobModel.status.in_(_inline_all(UNFINISHED))


def _changed(result: Any) -> bool:
    return bool(result.rowcount)


def to_domain(row: JobModel | Row[Any]) -> Job:
    return Job(
        id=row.id,
        kind=row.kind,
        status=JobStatus(row.status),
        arguments=row.arguments,
        idempotency_key=row.idempotency_key,
        request_hash=row.request_hash,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        progress=row.progress,
        result=row.result,
        error=JobError(row.error_kind, row.error_message or "") if row.error_kind else None,
        lease_expires_at=row.lease_expires_at,
        lease_owner=row.lease_owner,
        available_at=row.available_at,
        published_at=row.published_at,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        updated_at=row.updated_at,
    )
