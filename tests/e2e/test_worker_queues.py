"""Which queues a plain ``celery worker`` consumes, and the warning when the sweeper's
queue is left out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.jobs import JobStatus
from jobs.outbox import enqueue
from jobs.queues import MAINTENANCE_QUEUE
from tests.support.processes import Pipeline, open_pipeline, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NO_MAINTENANCE = f"does not consume the '{MAINTENANCE_QUEUE}' queue"


@pytest.fixture
def pipeline(tmp_path: Path, redis_url: str) -> Iterator[Pipeline]:
    with open_pipeline(tmp_path, redis_url) as pipeline:
        yield pipeline


def _consumed(pipeline: Pipeline) -> dict[str, set[str]]:
    """Each worker's queues, as the workers themselves report them."""
    replies = wait_for(
        lambda: pipeline.app.control.inspect(timeout=2).active_queues() or None,
        timeout=15,
        what="the workers listing their queues",
        describe=pipeline.describe,
    )
    return {node: {queue["name"] for queue in queues} for node, queues in replies.items()}


def test_a_worker_started_without_queues_consumes_every_queue(pipeline: Pipeline) -> None:
    worker = pipeline.start_worker(queues=None)

    assert list(_consumed(pipeline).values()) == [set(pipeline.runtime.kinds.queues)]
    job_id = enqueue(pipeline.runtime, "canary", {}).job.id
    pipeline.wait_for_job(job_id, JobStatus.SUCCEEDED)
    assert NO_MAINTENANCE not in worker.log_text()


def test_a_worker_without_the_maintenance_queue_says_so(pipeline: Pipeline) -> None:
    without = pipeline.start_worker(queues=("evaluations", "canary"))
    with_it = pipeline.start_worker(queues=(MAINTENANCE_QUEUE,))

    assert NO_MAINTENANCE in without.log_text()
    assert "-Q maintenance" in without.log_text()
    # The kinds declared on that queue are named: their jobs wait too.
    assert "and the backup jobs" in without.log_text()
    assert NO_MAINTENANCE not in with_it.log_text()
