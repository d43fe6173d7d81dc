"""The job pipeline end to end: enqueue in the ledger, a real worker runs it, the ledger says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobStatus
from jobs.outbox import enqueue
from tests.support.processes import Pipeline, open_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def pipeline(tmp_path: Path, redis_url: str) -> Iterator[Pipeline]:
    with open_pipeline(tmp_path, redis_url) as pipeline:
        yield pipeline


def test_a_canary_runs_once_and_the_ledger_says_succeeded(pipeline: Pipeline) -> None:
    pipeline.start_worker(["canary"])

    enqueued = enqueue(pipeline.runtime, "canary", {"sleep_ms": 50})

    assert enqueued.created
    assert enqueued.published
    job = pipeline.wait_for_job(enqueued.job.id, JobStatus.SUCCEEDED)
    assert job.attempts == 1
    assert job.result == {"slept_ms": 50, "attempts": 1}
    assert job.error is None
    assert job.progress == 1.0
    assert job.started_at is not None
    assert job.finished_at is not None
    assert job.lease_expires_at is None
    assert pipeline.effects() == [(job.id, 1)]


def test_a_canary_enqueued_over_http_runs_on_a_real_worker(pipeline: Pipeline) -> None:
    pipeline.start_worker(["canary"])

    with pipeline.api_client() as client:
        accepted = client.post("/v1/jobs/canary", json={"sleep_ms": 10, "fail_times": 1})
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]
        assert accepted.headers["Location"] == f"/v1/jobs/{job_id}"

        pipeline.wait_for_job(job_id, JobStatus.SUCCEEDED)
        shown = client.get(accepted.headers["Location"])

    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert (body["status"], body["attempts"], body["error"]) == ("succeeded", 2, None)
    assert body["result"] == {"slept_ms": 10, "attempts": 2}
    assert pipeline.effects() == [(job_id, 2)]


def test_transient_failures_are_retried_until_the_canary_succeeds(pipeline: Pipeline) -> None:
    pipeline.start_worker(["canary"])

    job_id = enqueue(pipeline.runtime, "canary", {"fail_times": 2}).job.id

    job = pipeline.wait_for_job(job_id, JobStatus.SUCCEEDED)
    assert job.attempts == 3
    assert job.error is None  # the last failure is cleared by the success
    assert job.result == {"slept_ms": 0, "attempts": 3}
    assert pipeline.effects() == [(job_id, 3)]


def test_a_job_that_exhausts_its_attempts_ends_failed_with_its_last_error(
    tmp_path: Path, redis_url: str
) -> None:
    with open_pipeline(tmp_path, redis_url, job_max_attempts={"canary": 3}) as pipeline:
        pipeline.start_worker(["canary"])

        job_id = enqueue(pipeline.runtime, "canary", {"fail_times": 10}).job.id

        job = pipeline.wait_for_job(job_id, JobStatus.FAILED)
        assert job.attempts == job.max_attempts == 3
        assert job.error is not None
        assert job.error.kind == "CanaryFailure"
        assert "attempt 3" in job.error.message
        assert job.result is None
        assert pipeline.effects() == []
        # The dead-letter list: failed jobs, each with why.
        assert pipeline.wait_for_task_outcomes(job_id, 1) == [{"failed": True}]


def test_a_job_cancelled_before_it_starts_never_runs(pipeline: Pipeline) -> None:
    enqueued = enqueue(pipeline.runtime, "canary", {})
    assert enqueued.published  # its message waits in Redis: no worker runs yet
    assert pipeline.queue_length("canary") == 1
    cancelled = write_transaction(
        pipeline.runtime.db, lambda s: JobRepository(s).cancel(enqueued.job.id)
    )
    assert cancelled

    pipeline.start_worker(["canary"])

    # The worker takes the message and drops it.
    assert pipeline.wait_for_task_outcomes(enqueued.job.id, 1) == [{"skipped": True}]
    job = pipeline.job(enqueued.job.id)
    assert job.status == JobStatus.CANCELLED
    assert job.attempts == 0
    assert job.started_at is None
    assert pipeline.effects() == []
    assert pipeline.queue_length("canary") == 0


def test_redelivery_of_a_succeeded_job_does_nothing(pipeline: Pipeline) -> None:
    pipeline.start_worker(["canary"])
    job_id = enqueue(pipeline.runtime, "canary", {}).job.id
    first = pipeline.wait_for_job(job_id, JobStatus.SUCCEEDED)
    assert pipeline.wait_for_task_outcomes(job_id, 1) == [{"succeeded": True, "attempt": 1}]

    assert pipeline.runtime.publisher.publish(first)  # the same message, delivered again

    outcomes = pipeline.wait_for_task_outcomes(job_id, 2)
    assert outcomes == [{"succeeded": True, "attempt": 1}, {"skipped": True}]
    again = pipeline.job(job_id)
    assert again.status == JobStatus.SUCCEEDED
    assert again.attempts == first.attempts == 1
    assert again.finished_at == first.finished_at
    assert again.result == first.result
    assert pipeline.effects() == [(job_id, 1)]


def test_a_worker_consumes_only_the_queues_it_was_given(pipeline: Pipeline) -> None:
    # Kinds routed per job (a replica's sync goes to its host's queue) need real arguments
    # to have a queue at all; their routing has tests of its own.
    others = [
        kind for kind in pipeline.runtime.kinds if kind.queue != "canary" and kind.route is None
    ]
    # A ledger row and its message on each other queue (what the job would do does not
    # matter: it must not start).
    parked = {kind.name: _park(pipeline, kind.name) for kind in others}
    queues = {kind.queue for kind in others}
    assert {queue: pipeline.queue_length(queue) for queue in queues} == dict.fromkeys(queues, 1)

    pipeline.start_worker(["canary"])
    # Positive control: the worker consumes its own queue while the others wait next to it.
    canary_id = enqueue(pipeline.runtime, "canary", {}).job.id
    pipeline.wait_for_job(canary_id, JobStatus.SUCCEEDED)

    assert {queue: pipeline.queue_length(queue) for queue in queues} == dict.fromkeys(queues, 1)
    for job in pipeline.jobs([job.id for job in parked.values()]):
        assert (job.status, job.attempts) == (JobStatus.QUEUED, 0), job


def _park(pipeline: Pipeline, kind: str) -> Job:
    """A job of ``kind`` in the ledger, and its message on the kind's queue."""
    job = write_transaction(pipeline.runtime.db, lambda s: JobRepository(s).add(Job(kind, {})))
    assert pipeline.runtime.publisher.publish(job)
    return job
