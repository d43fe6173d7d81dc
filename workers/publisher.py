"""Hand jobs to the broker. Publishing is best effort: the ledger is the truth.

A job whose publish fails stays ``queued`` with ``published_at`` unset, and the outbox
sweeper hands it over again once the broker is back.
"""

from __future__ import annotations

import logging
from typing import Any

from domain.jobs import Job
from workers.queues import ROUTES

log = logging.getLogger("autoforge.publisher")


class JobPublisher:
    """Sends a job's Celery task (its id is the task id) to the kind's queue."""

    def __init__(self, celery_app: Any) -> None:
        self._app = celery_app

    def publish(self, job: Job, *, countdown: float | None = None) -> bool:
        """True if the broker accepted the message; False (logged) if it could not."""
        route = ROUTES[job.kind]
        try:
            self._app.send_task(
                route.task_name,
                args=[job.id],
                task_id=job.id,
                queue=route.queue,
                countdown=countdown,
                # Fail fast when the broker is down: the sweeper republishes later.
                retry=False,
            )
        except Exception as exc:  # kombu/redis raise many types; all mean "not published"
            log.warning("could not publish job %s (%s): %s", job.id, job.kind, exc)
            return False
        return True

    def revoke(self, job_id: str, *, terminate: bool) -> None:
        """Ask workers to drop (and, if running, stop) a job's task."""
        try:
            self._app.control.revoke(job_id, terminate=terminate, signal="SIGTERM")
        except Exception as exc:  # the ledger already says cancelled; workers check it
            log.warning("could not broadcast revoke of job %s: %s", job_id, exc)
