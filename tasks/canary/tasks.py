"""The canary's Celery task: thin, takes the job id."""

from __future__ import annotations

from typing import Any

from core.settings import Settings
from domain.jobs import JobKind
from jobs.ledger_task import LedgerTask
from jobs.queues import ROUTES
from tasks.canary.logic import run_canary


def register(app: Any, settings: Settings) -> None:
    limit = settings.time_limit_s(str(JobKind.CANARY))

    @app.task(
        name=ROUTES[JobKind.CANARY].task_name,
        base=LedgerTask,
        bind=True,
        time_limit=limit,
        soft_time_limit=max(1, int(limit * 0.9)),
    )
    def canary(self: LedgerTask, job_id: str) -> dict[str, Any]:
        """Run canary job ``job_id``."""
        return self.run_job(job_id, run_canary)
