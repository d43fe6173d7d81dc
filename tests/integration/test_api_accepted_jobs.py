"""What the API promises about a job once the ledger has committed it.

- The answer is ``202`` whatever happens to the bookkeeping afterwards: here another
  process takes the database's write lock the instant the job's message reaches Redis,
  so any write after the publish would fail. One write transaction accepts the job.
- A retried job's attempt numbers keep growing, so an attempt from before the retry
  (still running somewhere) can neither succeed nor fail the new run.

Real libSQL file, real Redis (behind a tap that triggers the lock), a real second process.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from core.settings import Settings
from db.column_types import utcnow
from db.models import JobModel
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobError, JobStatus
from tests.support.api import AUTH, api_settings, client_for, ledger, llen
from tests.support.interference import RedisTap, WriteLockHolder

pytestmark = pytest.mark.integration

# Writes give up quickly when the lock is held, so that the test is short.
QUICK_TO_GIVE_UP = {
    "db_busy_timeout_ms": 200,
    "db_write_max_attempts": 2,
    "db_write_max_seconds": 2.0,
}


def _jobs(settings: Settings) -> list[Job]:
    with ledger(settings) as db, db.read_session() as session:
        return JobRepository(session).list_recent(limit=100)


def _fail(settings: Settings, job_id: str) -> None:
    with ledger(settings) as db:
        assert write_transaction(
            db, lambda s: JobRepository(s).fail(job_id, JobError("CanaryFailure", "on purpose"))
        )


@pytest.mark.parametrize("route", ["enqueue", "retry"])
def test_a_committed_job_is_accepted_even_if_the_ledger_locks_right_after_its_publish(
    migrated: Settings, db_path: Path, redis_url: str, route: str
) -> None:
    plain = api_settings(db_path, redis_url)
    job_id = None
    if route == "retry":
        with client_for(plain, headers=AUTH) as client:
            job_id = client.post("/v1/jobs/canary", json={}).json()["id"]
        _fail(plain, job_id)
        assert llen(redis_url, "canary") == 1

    with (
        WriteLockHolder(db_path) as holder,
        RedisTap(redis_url, b"LPUSH", holder.lock) as tap,
    ):
        settings = api_settings(db_path, tap.url, **QUICK_TO_GIVE_UP)
        with client_for(settings, headers=AUTH) as client:
            if route == "enqueue":
                response = client.post("/v1/jobs/canary", json={})
            else:
                response = client.post(f"/v1/jobs/{job_id}/retry")
        assert tap.fired
        assert holder.held  # the ledger was locked from the publish to the answer

    assert response.status_code == 202, response.text
    jobs = _jobs(plain)
    assert [job.id for job in jobs] == [response.json()["id"]]  # exactly one job
    assert jobs[0].status is JobStatus.QUEUED
    assert jobs[0].published_at is not None
    assert llen(redis_url, "canary") == (1 if route == "enqueue" else 2)


def test_an_attempt_from_before_a_retry_cannot_end_the_retried_run(
    migrated: Settings, db_path: Path, redis_url: str
) -> None:
    settings = api_settings(db_path, redis_url)
    with client_for(settings, headers=AUTH) as client, ledger(settings) as db:
        job_id = client.post("/v1/jobs/canary", json={}).json()["id"]
        # Attempt 1 starts and goes quiet (its worker hangs): its lease lapses, attempt 2
        # takes over and fails for good.
        assert write_transaction(db, lambda s: JobRepository(s).claim(job_id, lease_s=60))
        write_transaction(
            db,
            lambda s: s.execute(
                update(JobModel)
                .where(JobModel.id == job_id)
                .values(lease_expires_at=utcnow() - timedelta(minutes=5))
            ),
        )
        assert write_transaction(db, lambda s: JobRepository(s).claim(job_id, lease_s=60))
        _fail(settings, job_id)

        response = client.post(f"/v1/jobs/{job_id}/retry")
        assert response.status_code == 202, response.text
        live = write_transaction(db, lambda s: JobRepository(s).claim(job_id, lease_s=60))
        assert live is not None

        # Attempt 1 wakes up and ends: neither its success nor its failure counts.
        assert not write_transaction(
            db, lambda s: JobRepository(s).succeed(job_id, attempt=1, result={"stale": True})
        )
        assert not write_transaction(
            db, lambda s: JobRepository(s).fail(job_id, JobError("Stale", "old"), attempt=1)
        )
        assert write_transaction(
            db,
            lambda s: JobRepository(s).succeed(job_id, attempt=live.attempts, result={"ok": 1}),
        )

    stored = _jobs(settings)[0]
    assert (stored.status, stored.result) == (JobStatus.SUCCEEDED, {"ok": 1})
    assert stored.attempts == 3
