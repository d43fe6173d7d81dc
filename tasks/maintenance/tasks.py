"""Beat-scheduled housekeeping tasks. They are not ledger jobs: they keep the ledger."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.settings import Settings
from db.column_types import utcnow
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import JobKind
from tasks.base import LedgerTask
from workers.outbox import enqueue, sweep
from workers.queues import ENQUEUE_SCHEDULED_TASK, PRUNE_LEDGER_TASK, SWEEP_OUTBOX_TASK


def register(app: Any, settings: Settings) -> None:
    @app.task(
        name=SWEEP_OUTBOX_TASK, base=LedgerTask, bind=True, time_limit=120, soft_time_limit=100
    )
    def sweep_outbox(self: LedgerTask) -> dict[str, int]:
        """Republish queued jobs the broker may have lost and jobs whose worker died."""
        report = sweep(self.runtime)
        return {"due": report.due, "republished": report.republished}

    @app.task(
        name=ENQUEUE_SCHEDULED_TASK, base=LedgerTask, bind=True, time_limit=60, soft_time_limit=50
    )
    def enqueue_scheduled(
        self: LedgerTask, kind: str, arguments: dict[str, Any], period: str
    ) -> dict[str, Any]:
        """Put a scheduled job in the ledger (e.g. the nightly backup).

        The idempotency key names the schedule and its period (``period`` is a strftime
        pattern of the current UTC time), so a repeated fire in the same period returns
        the job it already created instead of a second one.
        """
        key = f"schedule:{kind}:{arguments.get('mode', '')}:{utcnow().strftime(period)}"
        accepted = enqueue(self.runtime, JobKind(kind), arguments, idempotency_key=key)
        return {"job_id": accepted.job.id, "created": accepted.created, "key": key}

    @app.task(
        name=PRUNE_LEDGER_TASK, base=LedgerTask, bind=True, time_limit=600, soft_time_limit=540
    )
    def prune_ledger(self: LedgerTask) -> dict[str, Any]:
        """Delete finished jobs older than the retention period."""
        before = utcnow() - timedelta(days=settings.ledger_retention_days)
        deleted = write_transaction(
            self.runtime.db, lambda s: JobRepository(s).prune_finished(before=before)
        )
        return {"deleted": deleted, "before": before.isoformat()}
