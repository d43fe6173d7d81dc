"""The evaluation run's Celery task: thin, takes the job id."""

from __future__ import annotations

from typing import Any

from core.settings import Settings
from domain.jobs import JobKind
from jobs.ledger_task import LedgerTask
from jobs.queues import ROUTES
from tasks.evaluation.job import fail_evaluation, run_evaluation_job


def register(app: Any, settings: Settings) -> None:
    limit = settings.time_limit_s(str(JobKind.EVALUATION))

    @app.task(
        name=ROUTES[JobKind.EVALUATION].task_name,
        base=LedgerTask,
        bind=True,
        time_limit=limit,
        soft_time_limit=max(1, int(limit * 0.9)),
    )
    def evaluation(self: LedgerTask, job_id: str) -> dict[str, Any]:
        """Run evaluation job ``job_id``: render, call the provider, score, store."""
        return self.run_job(job_id, run_evaluation_job, on_failure=fail_evaluation)
