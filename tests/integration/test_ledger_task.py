"""The ledger task's branches, run directly (no worker) against a real database and Redis.

``LedgerTask.run_job`` claims the job, runs the kind's logic and records how it ended;
each test drives one branch with a logic of its own and reads the ledger afterwards:
the time limit, attempts used up, an attempt superseded by a cancel, and a job held
under a live lease elsewhere (the delivery comes back once the lease has lapsed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import Retry, SoftTimeLimitExceeded
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import TransientError
from core.settings import Settings
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobError, JobStatus
from jobs.context import JobContext, JobOutcome
from jobs.ledger_task import LedgerTask
from jobs.runtime import Runtime
from tasks.canary.models import CanaryEffectModel
from tests.conftest import make_settings
from tests.support.api import llen
from workers.app import create_celery

pytestmark = pytest.mark.integration

#: This process's lease owner, as a worker's lease renewal names it.
WORKER = "ledger-test@host:4242"
LEASE_S = 30.0


@pytest.fixture
def app(migrated: Settings, db_path: Path, redis_url: str) -> Iterator[Celery]:
    app = create_celery(make_settings(db_path, redis_url=redis_url, job_lease_s=LEASE_S))
    # What LeaseRenewal.start does in a worker's main process (no keeper is needed here:
    # each test ends long before a lease would lapse).
    app.autoforge_runtime.leases.worker_id = WORKER
    try:
        yield app
    finally:
        app.autoforge_runtime.db.dispose()
        app.close()


@pytest.fixture
def task(app: Celery) -> LedgerTask:
    """The canary's registered task: a ``LedgerTask`` whose logic each test chooses."""
    task: LedgerTask = app.tasks["autoforge.canary"]
    return task


@pytest.fixture
def runtime(app: Celery) -> Runtime:
    runtime: Runtime = app.autoforge_runtime
    return runtime


def _add(runtime: Runtime, **fields: Any) -> Job:
    job = Job(kind="canary", arguments={}, **{"max_attempts": 3, **fields})
    return write_transaction(runtime.db, lambda s: JobRepository(s).add(job))


def _job(runtime: Runtime, job_id: str) -> Job:
    with runtime.db.read_session() as session:
        job = JobRepository(session).get(job_id)
    assert job is not None
    return job


def _effects(runtime: Runtime) -> list[tuple[str, int]]:
    with runtime.db.read_session() as session:
        rows = session.execute(select(CanaryEffectModel.job_id, CanaryEffectModel.attempt))
        return [(job_id, attempt) for job_id, attempt in rows]


def _with_effect(context: JobContext) -> JobOutcome:
    attempt = context.attempt

    def write(session: Session) -> None:
        session.add(CanaryEffectModel(job_id=context.job.id, attempt=attempt))

    return JobOutcome(result={"attempt": attempt}, write_effects=write)


def test_a_job_past_its_soft_time_limit_ends_failed_and_says_so(
    task: LedgerTask, runtime: Runtime
) -> None:
    job = _add(runtime)
    failed: list[tuple[str, JobError]] = []

    def stalls(context: JobContext) -> JobOutcome:
        raise SoftTimeLimitExceeded()  # what Celery raises in the job at its soft limit

    def on_failure(session: Session, failing: Job, error: JobError) -> None:
        failed.append((failing.id, error))

    with pytest.raises(SoftTimeLimitExceeded):
        task.run_job(job.id, stalls, on_failure=on_failure)

    ended = _job(runtime, job.id)
    limit = runtime.kinds.time_limit_s(runtime.settings, "canary")
    assert (ended.status, ended.attempts) == (JobStatus.FAILED, 1)
    assert ended.error == JobError("JobTimedOut", f"ran past its time limit ({limit} s)")
    assert ended.lease_expires_at is None
    assert failed == [(job.id, ended.error)]  # the kind's rows follow, in that transaction


def test_a_job_whose_attempts_are_used_up_fails_without_running(
    task: LedgerTask, runtime: Runtime
) -> None:
    # Its last attempt's worker died after the claim: the next claim is one too many.
    job = _add(runtime, attempts=2, max_attempts=2)
    ran: list[str] = []

    def logic(context: JobContext) -> JobOutcome:
        ran.append(context.job.id)
        return _with_effect(context)

    assert task.run_job(job.id, logic) == {"failed": True}

    ended = _job(runtime, job.id)
    assert ran == []
    assert (ended.status, ended.attempts) == (JobStatus.FAILED, 3)
    assert ended.error == JobError("AttemptsExhausted", "gave up after 2 attempts")
    assert _effects(runtime) == []


def test_an_attempt_cancelled_while_it_ran_writes_nothing(
    task: LedgerTask, runtime: Runtime
) -> None:
    job = _add(runtime)

    def cancelled_meanwhile(context: JobContext) -> JobOutcome:
        write_transaction(runtime.db, lambda s: JobRepository(s).cancel(context.job.id))
        return _with_effect(context)

    assert task.run_job(job.id, cancelled_meanwhile) == {"superseded": True}

    ended = _job(runtime, job.id)
    assert ended.status == JobStatus.CANCELLED
    assert ended.result is None
    assert _effects(runtime) == []  # the effects roll back with the refused success


def test_a_transient_failure_of_a_cancelled_attempt_schedules_no_retry(
    task: LedgerTask, runtime: Runtime
) -> None:
    job = _add(runtime)

    def cancelled_then_fails(context: JobContext) -> JobOutcome:
        write_transaction(runtime.db, lambda s: JobRepository(s).cancel(context.job.id))
        raise TransientError("the peer went away")

    assert task.run_job(job.id, cancelled_then_fails) == {"superseded": True}

    ended = _job(runtime, job.id)
    assert (ended.status, ended.error) == (JobStatus.CANCELLED, None)
    assert ended.available_at is None


def test_a_job_held_under_a_live_lease_elsewhere_is_looked_at_again_when_it_lapses(
    task: LedgerTask, runtime: Runtime, redis_url: str
) -> None:
    job = _add(runtime)
    other = "other@host:7:8"
    write_transaction(
        runtime.db, lambda s: JobRepository(s).claim(job.id, lease_s=LEASE_S, owner=other)
    )
    held = _job(runtime, job.id)
    ran: list[str] = []

    def logic(context: JobContext) -> JobOutcome:
        ran.append(context.job.id)
        return _with_effect(context)

    # A delivery as a worker receives it (a retry is then sent to the broker).
    task.push_request(
        id=job.id,
        args=[job.id],
        kwargs={},
        retries=0,
        called_directly=False,
        delivery_info={"exchange": "", "routing_key": "canary", "priority": 3},
    )
    try:
        with pytest.raises(Retry) as retried:
            task.run_job(job.id, logic)
    finally:
        task.pop_request()

    assert ran == []
    # Looked at again once the lease has lapsed: its remaining time, plus a second.
    assert retried.value.when is not None
    assert LEASE_S - 5 <= float(retried.value.when) <= LEASE_S + 1
    assert llen(redis_url, "canary") == 1  # the delivery was handed back to the broker
    after = _job(runtime, job.id)
    assert (after.status, after.attempts, after.lease_owner) == (JobStatus.RUNNING, 1, other)
    assert after.lease_expires_at == held.lease_expires_at
