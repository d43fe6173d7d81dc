"""A Redis outage: a worker and beat, started with plain ``celery``, ride it out.

Redis stops for :data:`OUTAGE_S` while a job runs and more jobs keep being accepted (the
ledger takes them; publishing fails). Then a *fresh* server starts on the same port: the
queues, the beat schedule and beat's lock are gone. The same worker and beat processes
carry on, and every accepted job runs exactly once within :data:`RECOVERY_BOUND_S` of
Redis returning, with the default sweeper interval.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from devstack.redis_server import EmbeddedRedis
from domain.jobs import JobStatus
from jobs.outbox import enqueue
from tests.support.processes import (
    BEAT_ACQUIRED_LOCK,
    CeleryProcess,
    Pipeline,
    open_pipeline,
    wait_for,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

#: How long Redis stays away. The system must ride out an outage of any length; two
#: minutes (eight times beat's lock timeout, 24 worker reconnect intervals) is what this
#: test shows.
OUTAGE_S = 120.0
#: Every job accepted during the outage has run once within this long of Redis returning.
RECOVERY_BOUND_S = 45.0
JOBS = 100
#: Jobs are accepted in this many batches spread over the outage.
BATCHES = 10
#: A job that is running when Redis goes away (it finishes during the outage).
RUNNING_JOB_MS = 3000

DEFAULT_SWEEPER_INTERVAL_S = Settings.model_fields["sweeper_interval_s"].default
DEFAULT_REPUBLISH_AFTER_S = Settings.model_fields["outbox_republish_after_s"].default


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """An in-memory Redis on a fixed port: stopped, it comes back empty on the same port."""
    server = EmbeddedRedis(tmp_path / "redis", port=_free_port(), persistent=False)
    server.start()
    yield server
    server.stop()


def _accept_jobs_for(pipeline: Pipeline, seconds: float) -> list[str]:
    """Accept :data:`JOBS` canary jobs spread over ``seconds``; each must be accepted
    without being published (Redis is down)."""
    started = time.monotonic()
    job_ids: list[str] = []
    for batch in range(BATCHES):
        time.sleep(max(0.0, started + batch * seconds / BATCHES - time.monotonic()))
        for _ in range(JOBS // BATCHES):
            accepted = enqueue(pipeline.runtime, "canary", {})
            assert accepted.created, accepted
            assert not accepted.published, accepted
            job_ids.append(accepted.job.id)
    time.sleep(max(0.0, started + seconds - time.monotonic()))
    return job_ids


def _worker_event(pipeline: Pipeline, timeout: float) -> dict[str, Any]:
    """The first event a worker sends (its heartbeat comes every few seconds)."""
    events: list[dict[str, Any]] = []
    with pipeline.app.connection_for_read() as connection:

        def on_event(event: dict[str, Any]) -> None:
            if str(event.get("type", "")).startswith(("worker-", "task-")):
                events.append(event)
                receiver.should_stop = True

        receiver = pipeline.app.events.Receiver(connection, handlers={"*": on_event})
        try:
            receiver.capture(limit=None, timeout=timeout, wakeup=False)
        except TimeoutError:
            pytest.fail(f"no worker event within {timeout:g} s\n{pipeline.describe()}")
    return events[0]


def _alive(*processes: CeleryProcess, pipeline: Pipeline) -> None:
    for process in processes:
        assert process.alive, f"{process.name} died\n{pipeline.describe()}"


@pytest.mark.timeout(OUTAGE_S + 5 * RECOVERY_BOUND_S + 120)
def test_worker_and_beat_ride_out_an_outage_and_redis_returning_empty(
    tmp_path: Path, server: EmbeddedRedis
) -> None:
    with open_pipeline(
        tmp_path / "pipeline",
        server.url,
        # The defaults: the recovery bound must hold with them.
        sweeper_interval_s=DEFAULT_SWEEPER_INTERVAL_S,
        outbox_republish_after_s=DEFAULT_REPUBLISH_AFTER_S,
    ) as pipeline:
        worker = pipeline.start_worker()
        beat = pipeline.start_beat()
        running = enqueue(pipeline.runtime, "canary", {"sleep_ms": RUNNING_JOB_MS}).job.id
        pipeline.wait_for_job(running, JobStatus.RUNNING)

        server.stop()
        job_ids = _accept_jobs_for(pipeline, OUTAGE_S)
        _alive(worker, beat, pipeline=pipeline)
        # The job that was running finished meanwhile: the ledger needs no Redis.
        assert pipeline.job(running).status == JobStatus.SUCCEEDED

        server.start()  # the same port, and empty: queues, schedule and lock are gone
        back_at = time.monotonic()
        assert pipeline.redis.dbsize() == 0

        def all_succeeded() -> bool:
            return all(job.status == JobStatus.SUCCEEDED for job in pipeline.jobs(job_ids))

        wait_until(
            all_succeeded,
            timeout=RECOVERY_BOUND_S,
            what=f"all {JOBS} jobs accepted during the outage succeeded",
            describe=lambda: pipeline.describe(
                job.id for job in pipeline.jobs(job_ids) if job.status != JobStatus.SUCCEEDED
            ),
        )
        print(f"{JOBS} jobs done {time.monotonic() - back_at:.1f} s after Redis returned empty")

        assert sorted(job_id for job_id, _ in pipeline.effects()) == sorted([running, *job_ids])
        _alive(worker, beat, pipeline=pipeline)
        # The same beat fired after the outage: it took the lock again.
        assert beat.log_text().count(BEAT_ACQUIRED_LOCK) == 2, pipeline.describe()
        # The worker's other parts reconnected too: it sends events (Flower's view) and
        # answers remote control (cancelling a running job).
        assert _worker_event(pipeline, timeout=15)["hostname"].startswith("e2e-")
        replies = wait_for(
            lambda: pipeline.app.control.inspect(timeout=2).ping() or None,
            timeout=15,
            what="the worker answering a ping",
            describe=pipeline.describe,
        )
        assert any(node.startswith("e2e-") for node in replies), replies


#: Long enough for beat's schedule lock (15 s with a 1 s sweeper) to expire meanwhile.
SHORT_OUTAGE_S = 20.0
SENT = "Sending due task sweep-outbox"
WINDOW_S = 8.0


def test_two_beats_fire_once_per_period_after_redis_returns_empty(
    tmp_path: Path, server: EmbeddedRedis
) -> None:
    with open_pipeline(tmp_path / "pipeline", server.url, sweeper_interval_s=1) as pipeline:
        first = pipeline.start_beat()
        server.stop()
        # A beat can start while Redis is down; it waits for it.
        second = pipeline.launch_beat()
        pipeline.wait_for_beat(second, lock_holder=False)
        time.sleep(SHORT_OUTAGE_S)
        _alive(first, second, pipeline=pipeline)

        server.start()  # empty: the lock and the schedule are gone
        logged = {beat: len(beat.log_text()) for beat in (first, second)}
        wait_until(
            lambda: pipeline.queue_length("maintenance") > 0,
            timeout=15,
            what="a beat firing the sweeper after Redis returned",
            describe=pipeline.describe,
        )
        before = pipeline.queue_length("maintenance")
        started = time.monotonic()
        time.sleep(WINDOW_S)

        fired = pipeline.queue_length("maintenance") - before
        periods = (time.monotonic() - started) / pipeline.settings.sweeper_interval_s
        assert 3 <= fired <= periods + 2, f"{fired} in {periods:.1f} periods\n{pipeline.describe()}"
        since = {beat: beat.log_text()[logged[beat] :] for beat in (first, second)}
        firing = [beat for beat in (first, second) if SENT in since[beat]]
        assert len(firing) == 1, pipeline.describe()
        assert sum(BEAT_ACQUIRED_LOCK in text for text in since.values()) == 1
        _alive(first, second, pipeline=pipeline)
