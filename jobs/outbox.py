"""The transactional outbox: commit the job to the ledger, then publish it.

``enqueue`` writes the ledger row (and any domain rows the job needs) in one write
transaction and only then publishes, so a job is never on the broker without a ledger
row, and a ledger row whose publish failed is still accepted: ``sweep`` hands it to the
broker later. Redis can lose everything and no accepted job is lost.

Accepting a job is that one write transaction. The row records its publish as done
(``published_at``) before the publish happens; only a failed publish is written after
the commit, and that write is best effort: if it fails too, the sweeper still takes the
job once its recorded publish is ``OUTBOX_REPUBLISH_AFTER_S`` old. So once the ledger has
committed, nothing that happens to the bookkeeping can turn the answer into an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from core.errors import PermanentError
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobStatus, request_fingerprint
from jobs.errors import KindDisabled
from jobs.queues import RECOVERY_PRIORITY
from jobs.runtime import Runtime

log = logging.getLogger("autoforge.outbox")


class IdempotencyConflict(PermanentError):
    """The idempotency key was already used for a different request."""


@dataclass(frozen=True, slots=True)
class Enqueued:
    job: Job
    created: bool  # False: an idempotent replay returned the existing job
    published: bool


def enqueue(
    runtime: Runtime,
    kind: str,
    arguments: dict[str, Any],
    *,
    idempotency_key: str | None = None,
) -> Enqueued:
    """Accept a job: ledger row (plus the kind's domain rows) committed first, then
    published.

    Raises:
        UnknownKind: no kind of that name is declared (its job would never run).
        KindDisabled: the kind does not accept new jobs.
    """
    declared = runtime.kinds[str(kind)]
    if not declared.enabled:
        raise KindDisabled(f"job kind {declared.name!r} does not accept new jobs")
    max_attempts = runtime.kinds.max_attempts(runtime.settings, declared.name)
    fingerprint = request_fingerprint(str(kind), arguments)

    def unit(session: Session) -> tuple[Job, bool]:
        jobs = JobRepository(session)
        if idempotency_key is not None:
            existing = jobs.get_by_idempotency_key(idempotency_key)
            if existing is not None:
                if existing.request_hash != fingerprint:
                    raise IdempotencyConflict(
                        "Idempotency-Key was already used with a different request"
                    )
                return existing, False
        job = jobs.add(
            Job(
                kind=declared.name,
                arguments=arguments,
                idempotency_key=idempotency_key,
                request_hash=fingerprint,
                max_attempts=max_attempts,
            )
        )
        if declared.domain_rows is not None:
            declared.domain_rows.load()(session, job)
        return job, True

    job, created = write_transaction(runtime.db, unit)
    if not created:
        return Enqueued(job, created=False, published=job.published_at is not None)
    published = publish_committed(runtime, [job])
    return Enqueued(job, created=True, published=bool(published))


def publish_committed(runtime: Runtime, jobs: list[Job]) -> list[str]:
    """Publish jobs whose ledger rows already record the publish; returns the ids the
    broker accepted. Failures are recorded best effort and never raised."""
    published = runtime.publisher.publish_many(jobs)
    accepted = set(published)
    failed = [job.id for job in jobs if job.id not in accepted]
    if failed:
        try:
            write_transaction(runtime.db, lambda s: JobRepository(s).mark_unpublished(failed))
        except Exception:  # the jobs are committed; the sweeper finds them anyway, later
            log.warning(
                "could not record that %d job(s) were not published; the outbox sweeper "
                "hands them over once their recorded publish is stale",
                len(failed),
                exc_info=True,
            )
    return published


@dataclass(frozen=True, slots=True)
class SweepReport:
    due: int
    republished: int
    orphans: int  # of the republished: running jobs whose worker died (lease lapsed)


def sweep(runtime: Runtime) -> SweepReport:
    """Republish jobs the broker may not hold: never published, stale, or orphaned.

    Orphans (their worker died) go out ahead of any backlog. Each republish is recorded,
    so a lost job is handed over once, not on every sweep.
    """
    settings = runtime.settings
    with runtime.db.read_session() as session:
        due = JobRepository(session).due_for_publishing(
            republish_after_s=settings.outbox_republish_after_s
        )
    if not due:
        return SweepReport(due=0, republished=0, orphans=0)
    orphans = [job for job in due if job.status is JobStatus.RUNNING]
    waiting = [job for job in due if job.status is not JobStatus.RUNNING]
    published = runtime.publisher.publish_many(waiting)
    rescued = runtime.publisher.publish_many(orphans, priority=RECOVERY_PRIORITY)
    for job in orphans:
        if job.id in rescued:
            log.warning(
                "job %s: the lease of attempt %d lapsed (its worker is gone); republished",
                job.id,
                job.attempts,
            )
    republished = published + rescued
    if republished:
        try:
            write_transaction(runtime.db, lambda s: JobRepository(s).mark_published(republished))
        except Exception:  # the next sweep publishes them again: a duplicate is harmless
            log.warning("could not record %d republished job(s)", len(republished), exc_info=True)
    log.info(
        "outbox sweep: %d due, %d republished (%d orphaned)",
        len(due),
        len(republished),
        len(rescued),
    )
    return SweepReport(due=len(due), republished=len(republished), orphans=len(rescued))
