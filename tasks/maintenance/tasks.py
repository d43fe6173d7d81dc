"""Beat-scheduled housekeeping tasks. They are not ledger jobs: they keep the ledger."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.settings import Settings
from db.column_types import utcnow
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from tasks.base import LedgerTask
from workers.outbox import sweep
from workers.queues import PRUNE_LEDGER_TASK, SWEEP_OUTBOX_TASK


def register(app: Any, settings: Settings) -> None:
    @app.task(
        name=SWEEP_OUTBOX_TASK, base=LedgerTask, bind=True, time_limit=120, soft_time_limit=100
    )
    def sweep_outbox(self: LedgerTask) -> dict[str, int]:
        """Republish queued jobs the broker may have lost and jobs whose worker died."""
        report = sweep(self.runtime)
        return {"due": report.due, "republished": report.republished}

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
