"""Hand jobs to the broker. Publishing is best effort: the ledger is the truth.

A job whose publish fails stays ``queued``; the outbox sweeper hands it over again once
the broker is back (see :mod:`jobs.outbox`).
"""

from __future__ import annotations

import logging
from typing import Any

from core.settings import Settings
from domain.jobs import Job
from jobs.queues import JOB_PRIORITY
from jobs.registry import KindRegistry

log = logging.getLogger("autoforge.publisher")


class JobPublisher:
    """Sends a job's Celery task (its id is the task id) to the kind's queue."""

    def __init__(
        self, celery_app: Any, kinds: KindRegistry, settings: Settings | None = None
    ) -> None:
        self._app = celery_app
        self._kinds = kinds
        # Kinds routed per job (replica syncs go to the host holding the file) need them.
        self._settings = settings

    def publish(
        self, job: Job, *, countdown: float | None = None, priority: int = JOB_PRIORITY
    ) -> bool:
        """True if the broker accepted the message; False (logged) if it could not."""
        return bool(self.publish_many([job], countdown=countdown, priority=priority))

    def publish_many(
        self, jobs: list[Job], *, countdown: float | None = None, priority: int = JOB_PRIORITY
    ) -> list[str]:
        """Publish over one connection; returns the ids the broker accepted."""
        published: list[str] = []
        try:
            with self._app.connection_for_write() as connection:
                # One connection attempt: kombu would otherwise retry for seconds while
                # the caller (an API request, the sweeper) waits. The ledger keeps the job.
                connection.ensure_connection(max_retries=0)
                for job in jobs:
                    kind = self._kinds.get(str(job.kind))
                    if kind is None:
                        # No worker runs it; the others in the batch still go out.
                        log.error(
                            "job %s has an undeclared kind %r: not published", job.id, job.kind
                        )
                        continue
                    queue = self._kinds.queue_of(self._settings, kind, job.arguments)
                    self._send(kind.task_name, queue, job.id, countdown, priority, connection)
                    published.append(job.id)
        except Exception as exc:  # kombu/redis raise many types; all mean "not published"
            log.warning(
                "could not publish %d of %d job(s): %s", len(jobs) - len(published), len(jobs), exc
            )
        return published

    def _send(
        self,
        task_name: str,
        queue: str,
        job_id: str,
        countdown: float | None,
        priority: int,
        connection: Any,
    ) -> None:
        self._app.send_task(
            task_name,
            args=[job_id],
            task_id=job_id,
            queue=queue,
            countdown=countdown,
            priority=priority,
            connection=connection,
            # Fail fast when the broker is down: the sweeper republishes later.
            retry=False,
            # Results live in the ledger: never subscribe to the result backend.
            ignore_result=True,
        )

    def revoke(self, job_id: str, *, terminate: bool) -> None:
        """Ask workers to drop (and, if running, stop) a job's task."""
        try:
            self._app.control.revoke(job_id, terminate=terminate, signal="SIGTERM")
        except Exception as exc:  # the ledger already says cancelled; workers check it
            log.warning("could not broadcast revoke of job %s: %s", job_id, exc)
