"""The base task: the ledger around every job.

A Celery task of ours takes a job id and nothing else. ``run_job``:

1. claims the job in the ledger (``queued`` -> ``running``, one more attempt, a lease
   owned by this process); a job that is finished, cancelled, or running elsewhere under
   a live lease is skipped, which makes redelivered messages harmless;
2. runs the kind's logic; the worker's lease keeper, outside this process, keeps the
   lease fresh meanwhile (:mod:`jobs.leases`);
3. on success writes the job's effects and ``succeeded`` in one write transaction,
   guarded so that only the attempt that still owns the job can commit (exactly-once
   effects on top of at-least-once delivery);
4. on a transient error schedules a retry with backoff until the kind's attempts are
   used up; on a permanent error (or a bug) ends the job ``failed`` with the error
   recorded: the dead-letter list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from celery import Task
from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded
from sqlalchemy.orm import Session

from core.errors import PermanentError, TransientError
from core.logging import job_log_context
from db.clock import database_now
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobError
from jobs.context import JobContext, JobOutcome
from jobs.errors import AttemptsExhausted, JobSuperseded, JobTimedOut
from jobs.leases import JobRequest
from jobs.retry import RetryPolicy, job_retry_policy
from jobs.runtime import Runtime

log = logging.getLogger("autoforge.jobs")

JobLogic = Callable[[JobContext], JobOutcome]
# Runs in the transaction that ends a job failed: the kind's domain rows follow the job.
FailureHook = Callable[[Session, Job, JobError], None]


def _error(exc: BaseException) -> JobError:
    return JobError(kind=type(exc).__name__, message=str(exc) or type(exc).__name__)


class LedgerTask(Task):  # type: ignore[misc]
    """Base class of every job task; subclasses call :meth:`run_job`."""

    abstract = True
    # Tells the worker's lease keeper when a job starts and when its process is lost.
    Request = JobRequest

    @property
    def runtime(self) -> Runtime:
        """The process's runtime, attached to the app by ``workers.app.create_celery``."""
        runtime: Runtime = self.app.autoforge_runtime
        return runtime

    def run_job(
        self, job_id: str, logic: JobLogic, *, on_failure: FailureHook | None = None
    ) -> dict[str, Any]:
        """Claim job ``job_id``, run ``logic`` on it and record how it ended (see the
        module's docstring); ``on_failure`` runs in the transaction that ends it failed."""
        runtime = self.runtime
        settings = runtime.settings
        fail = partial(self._fail, on_failure=on_failure)
        policy = job_retry_policy(settings)
        owner = runtime.leases.owner()
        try:
            job = write_transaction(
                runtime.db,
                lambda s: JobRepository(s).claim(job_id, lease_s=settings.job_lease_s, owner=owner),
            )
        except TransientError as exc:
            # The database is busy or away: try the delivery again later.
            raise self.retry(countdown=policy.delay(self.request.retries + 1), exc=exc) from exc
        if job is None:
            return self._not_claimed(job_id)
        with job_log_context(job.id, job.kind, job.attempts):
            if job.attempts > job.max_attempts:
                fail(job, AttemptsExhausted(f"gave up after {job.max_attempts} attempts"))
                return {"failed": True}

            context = JobContext(job=job, settings=settings, db=runtime.db, redis=runtime.redis)
            try:
                outcome = logic(context)
                self._succeed(job, outcome)
            except JobSuperseded:
                log.info(
                    "job %s was cancelled or finished elsewhere; its effects are dropped", job_id
                )
                return {"superseded": True}
            except TransientError as exc:
                return self._retry_or_fail(job, exc, policy, fail)
            except SoftTimeLimitExceeded:
                limit = runtime.kinds.time_limit_s(settings, str(job.kind))
                fail(job, JobTimedOut(f"ran past its time limit ({limit} s)"))
                raise
            except PermanentError as exc:
                fail(job, exc)
                raise
            except (Retry, Reject):
                raise
            except Exception as exc:
                # A bug, not a condition we know: record it and never retry it.
                fail(job, exc)
                raise
            return {"succeeded": True, "attempt": job.attempts}

    def _not_claimed(self, job_id: str) -> dict[str, Any]:
        """A delivery that may not run the job now: drop it, or come back after the lease.

        A job still ``running`` under a live lease is either really running elsewhere (a
        duplicate delivery) or was running in a worker that died (the redelivered message
        arrives before that attempt's lease lapses). Either way: look again once the
        lease has expired, instead of dropping the message and waiting for the sweeper.
        """
        with self.runtime.db.read_session() as session:
            job = JobRepository(session).get(job_id)
            now = database_now(session)  # the clock the lease was written with
        if job is None or job.status.is_final or job.lease_expires_at is None:
            log.info("job %s skipped: %s", job_id, "missing" if job is None else job.status)
            return {"skipped": True}
        wait = (job.lease_expires_at - now).total_seconds() + 1
        log.info("job %s holds a live lease; looking again in %.1fs", job_id, wait)
        raise self.retry(countdown=max(wait, 1.0), max_retries=None)

    def _succeed(self, job: Job, outcome: JobOutcome) -> None:
        def unit(session: Session) -> None:
            if not JobRepository(session).succeed(
                job.id, attempt=job.attempts, result=outcome.result
            ):
                raise JobSuperseded()  # rolls back: no effects without the status
            outcome.write_effects(session)

        write_transaction(self.runtime.db, unit)

    def _fail(self, job: Job, exc: BaseException, *, on_failure: FailureHook | None) -> None:
        log.warning("job %s failed (%s): %s", job.id, type(exc).__name__, exc)
        error = _error(exc)
        hook = on_failure

        def unit(session: Session) -> None:
            ended = JobRepository(session).fail(job.id, error, attempt=job.attempts)
            if ended and hook is not None:
                hook(session, job, error)

        write_transaction(self.runtime.db, unit)

    def _retry_or_fail(
        self,
        job: Job,
        exc: TransientError,
        policy: RetryPolicy,
        fail: Callable[[Job, BaseException], None],
    ) -> dict[str, Any]:
        if job.attempts >= job.max_attempts:
            fail(job, exc)
            return {"failed": True}
        countdown = policy.delay(job.attempts, retry_after=exc.retry_after)
        log.info(
            "job %s attempt %d failed transiently (%s); retry in %.1fs",
            job.id,
            job.attempts,
            exc,
            countdown,
        )
        scheduled = write_transaction(
            self.runtime.db,
            lambda s: JobRepository(s).schedule_retry(
                job.id,
                attempt=job.attempts,
                error=_error(exc),
                delay_s=countdown,
            ),
        )
        if not scheduled:
            return {"superseded": True}
        # Celery republishes the task with the countdown (state RETRY in Flower). If that
        # publish fails, the ledger still says queued: the outbox sweeper takes over.
        raise self.retry(countdown=countdown, exc=exc, max_retries=None)
