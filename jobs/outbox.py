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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from core.errors import PermanentError
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobStatus, request_fingerprint
from jobs.errors import ArgumentProblem, InvalidArguments, KindDisabled
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


#: Most jobs one :func:`enqueue_many` (``POST /v1/jobs/{kind}:batch``) accepts.
MAX_BATCH = 500


def batch_item_key(idempotency_key: str, index: int) -> str:
    """The ledger's idempotency key of a batch's item ``index``."""
    return f"{idempotency_key}#batch#{index}"


def enqueue_many(
    runtime: Runtime,
    kind: str,
    items: Sequence[dict[str, Any]],
    *,
    idempotency_key: str | None = None,
) -> list[Enqueued]:
    """Accept several jobs of one kind: all their ledger rows (and domain rows) in one
    write transaction, all or none, then published over one broker connection.

    With ``idempotency_key`` the batch is replayable as a whole: each item's row holds
    the key and the item's index (:func:`batch_item_key`). The same key with the same
    items returns the jobs it created (``created`` False); with other items, or another
    number of them, it is an :class:`IdempotencyConflict`.

    Raises:
        UnknownKind, KindDisabled: as :func:`enqueue`.
        InvalidArguments: an item's domain rows refused its arguments; each problem's
            ``loc`` starts with ``("items", index)``.
    """
    declared = runtime.kinds[str(kind)]
    if not declared.enabled:
        raise KindDisabled(f"job kind {declared.name!r} does not accept new jobs")
    if not items:
        return []
    max_attempts = runtime.kinds.max_attempts(runtime.settings, declared.name)
    fingerprints = [request_fingerprint(str(kind), arguments) for arguments in items]
    keys: list[str | None] = (
        [None] * len(items)
        if idempotency_key is None
        else [batch_item_key(idempotency_key, index) for index in range(len(items))]
    )
    domain_rows = declared.domain_rows.load() if declared.domain_rows is not None else None

    def unit(session: Session) -> tuple[list[Job], bool]:
        jobs = JobRepository(session)
        if idempotency_key is not None:
            replayed = _replayed_batch(jobs, idempotency_key, fingerprints)
            if replayed is not None:
                return replayed, False
        created: list[Job] = []
        for index, (arguments, key, fingerprint) in enumerate(
            zip(items, keys, fingerprints, strict=True)
        ):
            job = jobs.add(
                Job(
                    kind=declared.name,
                    arguments=arguments,
                    idempotency_key=key,
                    request_hash=fingerprint,
                    max_attempts=max_attempts,
                )
            )
            if domain_rows is not None:
                try:
                    domain_rows(session, job)
                except InvalidArguments as exc:
                    raise InvalidArguments(
                        [
                            ArgumentProblem(
                                loc=("items", index, *problem.loc), message=problem.message
                            )
                            for problem in exc.problems
                        ]
                    ) from exc
            created.append(job)
        return created, True

    jobs, created = write_transaction(runtime.db, unit)
    if not created:
        return [
            Enqueued(job, created=False, published=job.published_at is not None) for job in jobs
        ]
    accepted = set(publish_committed(runtime, jobs))
    return [Enqueued(job, created=True, published=job.id in accepted) for job in jobs]


def _replayed_batch(
    jobs: JobRepository, idempotency_key: str, fingerprints: list[str]
) -> list[Job] | None:
    """The jobs an earlier batch with this key created, if it had the same items;
    ``None`` if the key is new."""
    earlier = [
        jobs.get_by_idempotency_key(batch_item_key(idempotency_key, index))
        for index in range(len(fingerprints) + 1)  # one more: was that batch longer?
    ]
    if all(job is None for job in earlier):
        return None
    replayed = earlier[:-1]
    if earlier[-1] is not None or any(
        job is None or job.request_hash != fingerprint
        for job, fingerprint in zip(replayed, fingerprints, strict=True)
    ):
        raise IdempotencyConflict("Idempotency-Key was already used with a different request")
    return [job for job in replayed if job is not None]


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
