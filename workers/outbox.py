"""The transactional outbox: commit the job to the ledger, then publish it.

``enqueue`` writes the ledger row (and any domain rows the job needs) in one write
transaction and only then publishes, so a job is never on the broker without a ledger
row, and a ledger row whose publish failed is still accepted: ``sweep`` hands it to the
broker later. Redis can lose everything and no accepted job is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from core.errors import PermanentError
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobKind, request_fingerprint
from workers.runtime import Runtime

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
    kind: JobKind,
    arguments: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    with_domain_rows: Callable[[Session, Job], None] | None = None,
) -> Enqueued:
    """Accept a job: ledger row (plus domain rows) committed first, then published."""
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
                kind=kind,
                arguments=arguments,
                idempotency_key=idempotency_key,
                request_hash=fingerprint,
                max_attempts=runtime.settings.max_attempts(str(kind)),
            )
        )
        if with_domain_rows is not None:
            with_domain_rows(session, job)
        return job, True

    job, created = write_transaction(runtime.db, unit)
    if not created:
        return Enqueued(job, created=False, published=job.published_at is not None)
    published = publish_and_mark(runtime, [job])
    return Enqueued(job, created=True, published=bool(published))


def publish_and_mark(runtime: Runtime, jobs: list[Job]) -> list[str]:
    """Publish each job; record which ones the broker accepted. Returns their ids."""
    published = runtime.publisher.publish_many(jobs)
    if published:
        write_transaction(runtime.db, lambda s: JobRepository(s).mark_published(published))
    return published


@dataclass(frozen=True, slots=True)
class SweepReport:
    due: int
    republished: int


def sweep(runtime: Runtime) -> SweepReport:
    """Republish jobs the broker may not hold (never published, stale, or orphaned)."""
    settings = runtime.settings
    with runtime.db.read_session() as session:
        due = JobRepository(session).due_for_publishing(
            republish_after_s=settings.outbox_republish_after_s
        )
    republished = publish_and_mark(runtime, due) if due else []
    if due:
        log.info("outbox sweep: %d due, %d republished", len(due), len(republished))
    return SweepReport(due=len(due), republished=len(republished))
