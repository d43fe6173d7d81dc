"""The backup job's Celery task: thin, takes the job id."""

from __future__ import annotations

from typing import Any

from core.settings import Settings
from domain.jobs import JobKind
from tasks.backup.job import run_backup_job
from tasks.base import LedgerTask
from workers.queues import ROUTES


def register(app: Any, settings: Settings) -> None:
    limit = settings.time_limit_s(str(JobKind.BACKUP))

    @app.task(
        name=ROUTES[JobKind.BACKUP].task_name,
        base=LedgerTask,
        bind=True,
        time_limit=limit,
        soft_time_limit=max(1, int(limit * 0.9)),
    )
    def backup(self: LedgerTask, job_id: str) -> dict[str, Any]:
        """Run backup job ``job_id`` (a backup, or a restore drill)."""
        return self.run_job(job_id, run_backup_job)
