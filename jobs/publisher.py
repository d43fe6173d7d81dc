"""Hand jobs to the broker. Publishing is best effort: the ledger is the truth.

A job whose publish fails stays ``queued``; the outbox sweeper hands it over again once
the broker is back (see :mod:`jobs.outbox`).

Publishes go over the app's pool of long-lived broker connections (``broker_pool_limit``
of them per process), not a connection dialled per publish. Each message goes to its
queue's list directly (kombu's nameless exchange, the queue's name as routing key), so
nothing needs declaring first and nothing depends on exchange bindings stored in Redis:
a Redis that comes back empty routes the next message like the first. A connection on
which a publish failed is closed before it goes back to the pool, so the next publish
dials afresh instead of reusing a dead socket.
"""

from __future__ import annotations

import logging
from typing import Any

from core.settings import Settings
from domain.jobs import Job
from jobs.queues import JOB_PRIORITY
from jobs.registry import KindRegistry

log = logging.getLogger("autoforge.publisher")

#: How long a publish waits for a free pooled connection (all in use by other threads).
POOL_WAIT_S = 5.0


def _discard(connection: Any) -> None:
    """Close a pooled connection after a failed publish: the pool hands it out again, and
    its next user connects afresh."""
    try:
        connection.close()
    except Exception:  # already broken; closing is best effort
        log.debug("closing a failed broker connection failed too", exc_info=True)


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
            with self._app.pool.acquire(block=True, timeout=POOL_WAIT_S) as connection:
                try:
                    # Connected already unless this pooled connection is new or was
                    # closed after a failure. One attempt: kombu would otherwise retry for
                    # seconds while the caller (an API request, the sweeper) waits. The
                    # ledger keeps the job.
                    connection.ensure_connection(max_retries=0)
                    for job in jobs:
                        kind = self._kinds.get(str(job.kind))
                        if kind is None:
                            # No worker runs it; the others in the batch still go out.
                            log.error(
                                "job %s has an undeclared kind %r: not published",
                                job.id,
                                job.kind,
                            )
                            continue
                        try:
                            queue = self._kinds.queue_of(self._settings, kind, job.arguments)
                        except Exception as exc:  # e.g. arguments its route cannot read
                            # Like an undeclared kind: the others in the batch still go out.
                            log.error("job %s has no queue to go to: %s", job.id, exc)
                            continue
                        self._send(kind.task_name, queue, job.id, countdown, priority, connection)
                        published.append(job.id)
                except Exception:
                    _discard(connection)
                    raise
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
            # Straight to the queue's list: no exchange lookup, nothing to declare.
            exchange="",
            routing_key=queue,
            declare=[],
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
