"""Chaos: kill workers mid-job, lose Redis entirely. No accepted job is lost, no effect doubles.

Redelivery has three paths, each exercised here: a prefork worker hands back the message
of a pool process that died; Redis hands back an unacknowledged message after the
visibility timeout; the outbox sweeper (beat) republishes a running job whose lease has
lapsed.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.redis_server import EmbeddedRedis
from domain.jobs import JobStatus
from jobs.outbox import enqueue
from tasks.registry import kind_registry
from tests.support.processes import (
    Pipeline,
    group_members,
    is_alive,
    open_pipeline,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

JOB_MS = 4000
# Accepting a job is a ledger write, milliseconds; this bound only catches a publisher
# that waits for a broker that is down.
ACCEPT_DEADLINE_S = 15.0


@pytest.fixture
def pipeline(tmp_path: Path, redis_url: str) -> Iterator[Pipeline]:
    with open_pipeline(tmp_path, redis_url) as pipeline:
        yield pipeline


def _start_long_job(pipeline: Pipeline) -> str:
    job_id = enqueue(pipeline.runtime, "canary", {"sleep_ms": JOB_MS}).job.id
    pipeline.wait_for_job(job_id, JobStatus.RUNNING, timeout=15)
    return job_id


def test_a_killed_pool_process_does_not_lose_its_job(pipeline: Pipeline) -> None:
    # No beat: Celery alone hands the message back to a new pool process of the same
    # worker. The killed attempt's lease is still live then, so that delivery looks
    # again once the lease has lapsed.
    worker = pipeline.start_worker()
    job_id = _start_long_job(pipeline)
    pool = worker.pool_processes()

    for pid in pool:
        os.kill(pid, signal.SIGKILL)

    assert pipeline.job(job_id).status == JobStatus.RUNNING  # killed mid-job
    job = pipeline.wait_for_job(job_id, JobStatus.SUCCEEDED, timeout=30)
    assert job.attempts == 2
    assert pipeline.effects() == [(job_id, 2)]
    # The same worker lived on with new pool processes.
    assert worker.alive
    assert not set(worker.pool_processes()) & set(pool)
    log = worker.log_text()
    assert "exited with 'signal 9 (SIGKILL)'" in log
    # The dead process's lease was released at once: the next delivery claimed the job
    # without waiting for the lease to lapse.
    assert f"job {job_id}: its process is gone; lease released" in log
    assert "holds a live lease" not in log


def test_a_killed_worker_job_is_republished_when_its_lease_lapses(pipeline: Pipeline) -> None:
    worker = pipeline.start_worker()
    pipeline.start_beat()
    job_id = _start_long_job(pipeline)

    worker.kill_group()  # parent and pool processes at once
    assert group_members(worker.pid) == []
    assert pipeline.job(job_id).status == JobStatus.RUNNING
    pipeline.start_worker()

    # Lease (3 s) + sweeper period (1 s) + the job itself, well before the visibility timeout.
    settings = pipeline.settings
    within = settings.job_lease_s + settings.sweeper_interval_s + JOB_MS / 1000 + 10
    assert within < settings.celery_visibility_timeout_s
    job = pipeline.wait_for_job(job_id, JobStatus.SUCCEEDED, timeout=within)
    assert job.attempts >= 2
    assert pipeline.effects() == [(job_id, job.attempts)]
    # Handed over once, though the sweeper ran many times meanwhile.
    republished = f"job {job_id}: the lease of attempt"
    assert sum(process.log_text().count(republished) for process in pipeline.processes) == 1


def test_the_lease_keeper_ends_with_its_worker(pipeline: Pipeline) -> None:
    # Only the worker's main process is killed: its keeper must not outlive it (and keep
    # renewing leases of jobs nobody runs any more).
    worker = pipeline.start_worker()
    [keeper] = worker.lease_keepers()
    os.kill(worker.pid, signal.SIGKILL)
    wait_until(
        lambda: not is_alive(keeper),
        timeout=15,
        what="the lease keeper gone after its worker was killed",
        describe=pipeline.describe,
    )


#: The shortest visibility timeout allowed, and time limits below it (the job takes 4 s):
#: Redis's redelivery is waited out in seconds rather than the pipeline's usual 25.
SHORT_VISIBILITY: dict[str, Any] = {
    "celery_visibility_timeout_s": 10,
    "job_time_limits_s": dict.fromkeys(kind_registry().names, 9),
}


def test_a_killed_worker_job_comes_back_after_the_visibility_timeout(
    tmp_path: Path, redis_url: str
) -> None:
    # No beat, hence no sweeper: only Redis's own redelivery can bring the job back.
    with open_pipeline(tmp_path, redis_url, **SHORT_VISIBILITY) as pipeline:
        _a_killed_worker_job_comes_back_after_the_visibility_timeout(pipeline)


def _a_killed_worker_job_comes_back_after_the_visibility_timeout(pipeline: Pipeline) -> None:
    worker = pipeline.start_worker()
    job_id = _start_long_job(pipeline)

    worker.kill_group()
    pipeline.start_worker()

    settings = pipeline.settings
    within = (
        settings.celery_visibility_timeout_s
        + settings.celery_unacked_restore_interval_s
        + JOB_MS / 1000
        + 10
    )
    job = pipeline.wait_for_job(job_id, JobStatus.SUCCEEDED, timeout=within)
    assert job.attempts == 2
    assert pipeline.effects() == [(job_id, 2)]
    # It really was Redis's redelivery, which waits for the visibility timeout.
    assert job.started_at is not None
    assert job.finished_at is not None
    ran_for = job.finished_at - job.started_at
    assert ran_for.total_seconds() >= settings.celery_visibility_timeout_s


def _accepted_promptly(started: float, done: int) -> None:
    elapsed = time.monotonic() - started
    assert elapsed < ACCEPT_DEADLINE_S, (
        f"accepting {done} jobs with Redis down took {elapsed:.1f} s: enqueue must not wait "
        "for the broker (the outbox sweeper publishes later)"
    )


def _enqueue_over_http(pipeline: Pipeline, count: int) -> list[str]:
    job_ids = []
    with pipeline.api_client() as client:
        started = time.monotonic()
        for done in range(1, count + 1):
            response = client.post("/v1/jobs/canary", json={"sleep_ms": 0, "fail_times": 0})
            assert response.status_code == 202, response.text
            job_ids.append(str(response.json()["id"]))
            _accepted_promptly(started, done)
    return job_ids


def test_jobs_accepted_while_redis_is_down_all_run_once_after_it_returns_empty(
    tmp_path: Path,
) -> None:
    with (
        EmbeddedRedis(tmp_path / "redis", persistent=False) as server,
        open_pipeline(tmp_path / "pipeline", server.url) as pipeline,
    ):
        port = server.port
        server.stop()

        accepted = []
        started = time.monotonic()
        for done in range(1, 51):
            accepted.append(enqueue(pipeline.runtime, "canary", {}))
            _accepted_promptly(started, done)
        assert all(a.created and not a.published for a in accepted)
        job_ids = [a.job.id for a in accepted] + _enqueue_over_http(pipeline, 50)
        assert len(set(job_ids)) == 100
        for job in pipeline.jobs(job_ids):
            assert (job.status, job.published_at) == (JobStatus.QUEUED, None), job

        server.start()  # the same port, nothing in it: everything Redis held is gone
        assert server.port == port
        assert pipeline.redis.dbsize() == 0
        pipeline.start_worker()
        pipeline.start_beat()

        wait_until(
            lambda: all(job.status == JobStatus.SUCCEEDED for job in pipeline.jobs(job_ids)),
            timeout=60,
            what="all 100 jobs succeeded",
            describe=lambda: pipeline.describe(
                job.id for job in pipeline.jobs(job_ids) if job.status != JobStatus.SUCCEEDED
            ),
        )
        effects = pipeline.effects()
        assert sorted(job_id for job_id, _ in effects) == sorted(job_ids)
        assert all(attempt == 1 for _, attempt in effects)
