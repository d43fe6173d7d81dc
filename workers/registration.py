"""One Celery task per declared job kind, registered the same way for every kind.

Each task is thin: it takes the job's id and hands it, with the kind's logic and failure
hook, to :meth:`jobs.ledger_task.LedgerTask.run_job`. Its time limits are the kind's
(``JOB_TIME_LIMITS_S`` overrides them); the soft limit, 90% of the hard one, lets the
ledger record a timeout before the pool process is killed.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from core.settings import Settings
from jobs.kind import KindSpec
from jobs.ledger_task import LedgerTask
from jobs.registry import KindRegistry


def register_kinds(app: Celery, kinds: KindRegistry, settings: Settings) -> None:
    """Register every kind's task on ``app``; when its worker starts, import the kinds'
    logic and run their start hooks."""
    for kind in kinds:
        _register(app, kind, kinds.time_limit_s(settings, kind.name))

    @signals.worker_init.connect(weak=False)
    def _prepare_kinds(sender: Any = None, **kwargs: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        for kind in kinds:
            # In the main process, before the pool forks: every pool process starts with
            # the kinds' code loaded, and code that cannot be imported stops the worker
            # now rather than failing its first job.
            kind.logic.load()
            if kind.on_failure is not None:
                kind.on_failure.load()
            if kind.on_worker_start is not None:
                kind.on_worker_start.load()(settings)


def _register(app: Celery, kind: KindSpec, limit: int) -> None:
    def run(self: LedgerTask, job_id: str) -> dict[str, Any]:
        on_failure = kind.on_failure.load() if kind.on_failure is not None else None
        return self.run_job(job_id, kind.logic.load(), on_failure=on_failure)

    run.__name__ = run.__qualname__ = kind.name.replace("-", "_")
    run.__doc__ = f"Run {kind.name} job ``job_id``. {kind.summary}."
    app.task(
        name=kind.task_name,
        base=LedgerTask,
        bind=True,
        # This app's task only: a shared task would be added to every app built later in
        # the process (tests build many), each with another copy of this closure.
        shared=False,
        time_limit=limit,
        soft_time_limit=max(1, int(limit * 0.9)),
    )(run)
