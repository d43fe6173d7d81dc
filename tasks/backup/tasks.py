"""The backup job's Celery task: thin, takes the job id."""

from __future__ import annotations

from typing import Any

from celery import signals

from core.settings import Settings
from domain.jobs import JobKind
from jobs.ledger_task import LedgerTask
from jobs.queues import ROUTES
from tasks.backup.job import run_backup_job
from tasks.backup.workdir import remove_stale_workdirs


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

    @signals.worker_init.connect(weak=False)
    def _remove_stale_scratch(sender: Any = None, **kwargs: Any) -> None:
        # A backup killed along with its worker leaves a database-sized scratch folder.
        if getattr(sender, "app", None) is app:
            remove_stale_workdirs(settings.data_dir)
