"""Leases with real workers: a job keeps its lease whatever its own code does, and a dead
worker's jobs come back once each, ahead of the queue, within the stated bound.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from domain.jobs import JobStatus
from jobs.outbox import enqueue
from tests.support.processes import FAST_TIMINGS, Pipeline, open_pipeline, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

# What the sweeper logs for each job it hands over because its lease lapsed.
REPUBLISHED = "job {job_id}: the lease of attempt"

# The timings a deployment gets when it sets none (the pipeline's default is short ones).
DEFAULT_TIMINGS: dict[str, Any] = {
    name: Settings.model_fields[name].get_default(call_default_factory=True)
    for name in FAST_TIMINGS
    if name != "log_level"
}
# The README's promise: with the default timings, a killed worker's jobs (of a few
# seconds) are done within this long, even with a backlog queued behind them.
RECOVERY_BOUND_S = 30.0
LOST_JOBS = 4
LOST_JOB_MS = 4000
BACKLOG_JOBS = 60
BACKLOG_JOB_MS = 1000


def _republished(pipeline: Pipeline, job_id: str) -> int:
    needle = REPUBLISHED.format(job_id=job_id)
    return sum(process.log_text().count(needle) for process in pipeline.processes)


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_a_job_that_keeps_the_gil_keeps_its_lease_and_runs_once(
    tmp_path: Path, redis_url: str, pool: str
) -> None:
    # The job stalls in one C call that keeps the GIL for four leases. Renewal from its
    # own process would stop; the sweeper would hand the job to the second worker, and
    # a second attempt would run beside the first.
    with open_pipeline(tmp_path, redis_url) as pipeline:
        stall_ms = int(pipeline.settings.job_lease_s * 4 * 1000)
        stalling = pipeline.start_worker(("canary",), concurrency=1, pool=pool)
        job_id = enqueue(pipeline.runtime, "canary", {"stall_ms": stall_ms}).job.id
        pipeline.wait_for_job(job_id, JobStatus.RUNNING, timeout=30)
        # A second worker that would take the job over, and beat to run the sweeper.
        pipeline.start_worker(("canary", "maintenance"))
        pipeline.start_beat()

        job = pipeline.wait_for_job(job_id, JobStatus.SUCCEEDED, timeout=stall_ms / 1000 + 60)

        assert job.attempts == 1
        assert pipeline.effects() == [(job_id, 1)]
        assert _republished(pipeline, job_id) == 0
        assert pipeline.task_outcomes(job_id) == [{"succeeded": True, "attempt": 1}]
        assert "Task autoforge.canary" in stalling.log_text()


def test_a_killed_workers_jobs_are_done_within_the_bound_ahead_of_a_backlog_once_each(
    tmp_path: Path, redis_url: str
) -> None:
    with open_pipeline(tmp_path, redis_url, **DEFAULT_TIMINGS) as pipeline:
        settings = pipeline.settings
        # Handed over within a lease and a sweep; then the first free pool process takes
        # them, before the backlog.
        assert settings.job_lease_s + settings.sweeper_interval_s <= RECOVERY_BOUND_S / 2
        doomed = pipeline.start_worker(concurrency=LOST_JOBS)
        pipeline.start_beat()
        lost = [
            enqueue(pipeline.runtime, "canary", {"sleep_ms": LOST_JOB_MS}).job.id
            for _ in range(LOST_JOBS)
        ]
        for job_id in lost:
            pipeline.wait_for_job(job_id, JobStatus.RUNNING, timeout=30)
        backlog = [
            enqueue(pipeline.runtime, "canary", {"sleep_ms": BACKLOG_JOB_MS}).job.id
            for _ in range(BACKLOG_JOBS)
        ]

        doomed.kill_group()
        killed_at = time.monotonic()
        pipeline.start_worker(concurrency=2)

        wait_until(
            lambda: all(job.status is JobStatus.SUCCEEDED for job in pipeline.jobs(lost)),
            timeout=max(killed_at + RECOVERY_BOUND_S - time.monotonic(), 0),
            what=f"the killed worker's {LOST_JOBS} jobs done within {RECOVERY_BOUND_S:g} s",
            describe=lambda: pipeline.describe(lost),
        )
        recovered_in = time.monotonic() - killed_at
        print(f"\nthe killed worker's jobs were all done {recovered_in:.1f} s after the kill")

        # The backlog was still waiting: the lost jobs went ahead of it.
        waiting = [job for job in pipeline.jobs(backlog) if job.status is JobStatus.QUEUED]
        assert waiting, "the backlog drained first: the test shows nothing about ordering"
        # Each lost job was handed over exactly once, and no other job was.
        assert [_republished(pipeline, job_id) for job_id in lost] == [1] * LOST_JOBS
        assert sum(_republished(pipeline, job_id) for job_id in backlog) == 0

        everything = lost + backlog
        wait_until(
            lambda: all(job.status is JobStatus.SUCCEEDED for job in pipeline.jobs(everything)),
            timeout=BACKLOG_JOBS * BACKLOG_JOB_MS / 1000 + 60,
            what="the backlog drained",
            describe=lambda: pipeline.describe(),
        )
        effects = dict(pipeline.effects())
        assert sorted(effects) == sorted(everything)  # each job's effect exactly once
        assert all(effects[job_id] == 2 for job_id in lost)


def test_an_attempt_frozen_before_a_retry_cannot_end_the_retried_run(
    tmp_path: Path, redis_url: str
) -> None:
    # Attempt 1 freezes (its whole worker, lease keeper included) and its lease lapses;
    # attempt 2 runs elsewhere and uses the last attempt; the job is retried and attempt 3
    # runs. Then attempt 1 wakes up and fails, as the canary was told to: were attempt
    # numbers to start over at a retry, it would own the run again.
    with open_pipeline(tmp_path, redis_url, job_max_attempts={"canary": 2}) as pipeline:
        frozen = pipeline.start_worker(("canary",), concurrency=1)
        job_id = enqueue(pipeline.runtime, "canary", {"sleep_ms": 3000, "fail_times": 2}).job.id
        pipeline.wait_for_job(job_id, JobStatus.RUNNING)
        os.killpg(frozen.pid, signal.SIGSTOP)
        try:
            pipeline.start_worker(("canary", "maintenance"))
            pipeline.start_beat()
            failed = pipeline.wait_for_job(job_id, JobStatus.FAILED, timeout=30)
            assert failed.attempts == 2

            with pipeline.api_client() as client:
                response = client.post(f"/v1/jobs/{job_id}/retry")
            assert response.status_code == 202, response.text
            wait_until(
                lambda: pipeline.job(job_id).attempts == 3,
                timeout=30,
                what="attempt 3 started",
                describe=lambda: pipeline.describe([job_id]),
            )
        finally:
            os.killpg(frozen.pid, signal.SIGCONT)

        stale = frozen.wait_for_log(
            rf"Task autoforge.canary\[{job_id}\] succeeded in [\d.e-]+s: (\{{[^}}]*\}})",
            describe=pipeline.describe,
        )
        assert stale.group(1) == "{'superseded': True}"
        job = pipeline.wait_for_job(job_id, JobStatus.SUCCEEDED)

        assert (job.attempts, job.result) == (3, {"slept_ms": 3000, "attempts": 3})
        assert pipeline.effects() == [(job_id, 3)]
        time.sleep(1)  # nothing the stale attempt left behind changes the job later
        assert pipeline.job(job_id).status is JobStatus.SUCCEEDED
