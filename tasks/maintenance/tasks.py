"""Beat-scheduled housekeeping tasks. They are not ledger jobs: they keep the ledger."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from core.settings import Settings
from db.column_types import utcnow
from jobs.ledger_task import LedgerTask
from jobs.outbox import enqueue, sweep
from jobs.queues import (
    ENQUEUE_PERIODIC_TASK,
    ENQUEUE_SCHEDULED_TASK,
    PRUNE_LEDGER_TASK,
    SWEEP_OUTBOX_TASK,
)
from jobs.schedule import catch_up, enqueue_fire
from tasks.maintenance.pruning import prune_ledger as prune

log = logging.getLogger("autoforge.maintenance")


def register(app: Any, settings: Settings) -> None:
    """Register the housekeeping tasks on ``app`` (on it alone: ``shared=False``)."""

    @app.task(
        name=SWEEP_OUTBOX_TASK,
        base=LedgerTask,
        bind=True,
        shared=False,
        time_limit=120,
        soft_time_limit=100,
    )
    def sweep_outbox(self: LedgerTask) -> dict[str, int]:
        """Republish queued jobs the broker may have lost and jobs whose worker died;
        then make sure each schedule's latest period has its job (a lost fire)."""
        report = sweep(self.runtime)
        caught_up = catch_up(self.runtime, utcnow())
        for made in caught_up:
            if made.created:
                log.warning("scheduled job %s was missing; enqueued %s", made.key, made.job_id)
        return {
            "due": report.due,
            "republished": report.republished,
            "scheduled": sum(made.created for made in caught_up),
        }

    @app.task(
        name=ENQUEUE_SCHEDULED_TASK,
        base=LedgerTask,
        bind=True,
        shared=False,
        time_limit=60,
        soft_time_limit=50,
    )
    def enqueue_scheduled(
        self: LedgerTask,
        kind: str,
        arguments: dict[str, Any],
        period: str,
        cron: str | None = None,
    ) -> dict[str, Any]:
        """Put a scheduled job in the ledger (e.g. the nightly backup).

        The idempotency key names the schedule and its period: ``period`` is a strftime
        pattern of the fire time, the latest time at or before now that ``cron`` fires.
        A repeated fire in the same period, or the sweeper's catch-up of it, returns the
        job already made instead of a second one.
        """
        accepted, key = enqueue_fire(self.runtime, kind, arguments, period, cron, utcnow())
        return {"job_id": accepted.job.id, "created": accepted.created, "key": key}

    @app.task(
        name=ENQUEUE_PERIODIC_TASK,
        base=LedgerTask,
        bind=True,
        shared=False,
        time_limit=60,
        soft_time_limit=50,
    )
    def enqueue_periodic(self: LedgerTask, kind: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Put a job that a kind runs every few seconds in the ledger (a replica sync).
        No catch-up: a lost fire is followed by the next one within its interval."""
        accepted = enqueue(self.runtime, kind, arguments)
        return {"job_id": accepted.job.id, "published": accepted.published}

    @app.task(
        name=PRUNE_LEDGER_TASK,
        base=LedgerTask,
        bind=True,
        shared=False,
        time_limit=600,
        soft_time_limit=540,
    )
    def prune_ledger(self: LedgerTask) -> dict[str, Any]:
        """Delete finished jobs older than the retention period, in short batches; then
        give the freed pages back and checkpoint the WAL (:mod:`tasks.maintenance.pruning`)."""
        before = utcnow() - timedelta(days=settings.ledger_retention_days)
        report = prune(self.runtime.db, before=before)
        return {
            "deleted": report.deleted,
            "before": before.isoformat(),
            "batches": report.batches,
            "complete": report.complete,
            "pages_given_back": report.pages_given_back,
            "checkpointed": report.checkpoint is not None and report.checkpoint.done,
        }
