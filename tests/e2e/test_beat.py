"""Beat with RedBeat: two beat processes at once fire each period once, and the standby
takes over when the lock holder dies. No worker runs: fired tasks pile up in Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.queues import MAINTENANCE_QUEUE
from tests.support.processes import (
    BEAT_ACQUIRED_LOCK,
    CeleryProcess,
    Pipeline,
    open_pipeline,
    wait_for,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SENT = "Sending due task sweep-outbox"
WINDOW_S = 8.0


@pytest.fixture
def pipeline(tmp_path: Path, redis_url: str) -> Iterator[Pipeline]:
    with open_pipeline(tmp_path, redis_url, sweeper_interval_s=1) as pipeline:
        yield pipeline


def _two_beats(pipeline: Pipeline) -> tuple[CeleryProcess, CeleryProcess]:
    """Start two beats at once; return (lock holder, standby)."""
    first, second = pipeline.launch_beat(), pipeline.launch_beat()
    for beat in (first, second):
        pipeline.wait_for_beat(beat, lock_holder=False)
    holder = wait_for(
        lambda: next((b for b in (first, second) if BEAT_ACQUIRED_LOCK in b.log_text()), None),
        timeout=15,
        what="one beat acquiring the schedule lock",
        describe=pipeline.describe,
    )
    return holder, second if holder is first else first


def test_two_beats_fire_a_short_interval_schedule_once_per_period(pipeline: Pipeline) -> None:
    holder, standby = _two_beats(pipeline)
    before = pipeline.queue_length(MAINTENANCE_QUEUE)
    started = time.monotonic()

    time.sleep(WINDOW_S)  # the window being measured: beat fires on its own clock

    fired = pipeline.queue_length(MAINTENANCE_QUEUE) - before
    periods = (time.monotonic() - started) / pipeline.settings.sweeper_interval_s
    assert 3 <= fired <= periods + 2, (
        f"{fired} sweeps in {periods:.1f} periods\n{pipeline.describe()}"
    )
    assert BEAT_ACQUIRED_LOCK not in standby.log_text()
    assert SENT not in standby.log_text()
    assert SENT in holder.log_text()


def test_the_standby_beat_takes_over_when_the_lock_holder_dies(pipeline: Pipeline) -> None:
    holder, standby = _two_beats(pipeline)

    holder.kill_group()  # SIGKILL: no chance to release the lock
    killed_at_length = pipeline.queue_length(MAINTENANCE_QUEUE)

    # The lock lapses after its timeout; the standby tries to take it once per beat loop.
    conf = pipeline.app.conf
    takeover_s = conf.redbeat_lock_timeout + conf.beat_max_loop_interval
    standby.wait_for_log(BEAT_ACQUIRED_LOCK, timeout=takeover_s + 10, describe=pipeline.describe)
    wait_until(
        lambda: pipeline.queue_length(MAINTENANCE_QUEUE) >= killed_at_length + 2,
        timeout=10,
        what="the new lock holder firing the sweeper",
        describe=pipeline.describe,
    )
    assert SENT in standby.log_text()
