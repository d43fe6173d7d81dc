"""A scheduled backup whose beat message was lost still happens, once per period.

No beat runs here: the nightly backup and the weekly drill never reach the broker, as
when Redis lost beat's message or beat was down at the fire time. A real worker on the
``maintenance`` queue runs the outbox sweep, sent exactly as beat sends it, and the sweep
puts the latest period's jobs in the ledger; a second sweep and beat's own (late) fire of
the same period add nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from db.models import JobModel
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import Job, JobStatus
from jobs.queues import ENQUEUE_SCHEDULED_TASK, MAINTENANCE_QUEUE, SWEEP_OUTBOX_TASK
from jobs.schedule import catch_up
from tests.support.processes import Pipeline, open_pipeline
from workers.beat import beat_schedule

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

TASK_TIMEOUT_S = 40.0


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _backup_jobs(pipeline: Pipeline) -> list[Job]:
    with pipeline.runtime.db.read_session() as session:
        return JobRepository(session).list_recent(kind="backup", limit=100)


def _accepted_at(pipeline: Pipeline, at: datetime) -> None:
    """A job accepted at ``at``: the system has been running since then."""

    def unit(session: Session) -> None:
        job = JobRepository(session).add(Job(kind="canary", arguments={}))
        session.execute(update(JobModel).where(JobModel.id == job.id).values(created_at=at))

    write_transaction(pipeline.runtime.db, unit)


def _send(pipeline: Pipeline, task: str, args: tuple[Any, ...] = ()) -> dict[str, Any]:
    result = pipeline.app.send_task(task, args=args, queue=MAINTENANCE_QUEUE)
    try:
        outcome: dict[str, Any] = result.get(timeout=TASK_TIMEOUT_S)
    finally:
        result.forget()
    return outcome


def test_the_sweeper_makes_the_latest_periods_lost_backup_and_drill_once(
    tmp_path: Path, redis_url: str
) -> None:
    # Schedules whose latest fires were two hours and three days ago: their periods are
    # today's (or yesterday's) date and the ISO week of three days ago, whenever this runs.
    now = datetime.now(UTC)
    nightly_fire = _minute(now - timedelta(hours=2))
    drill_fire = _minute(now - timedelta(days=3))
    backup_cron = f"{nightly_fire.minute} {nightly_fire.hour} * * *"
    drill_cron = f"{drill_fire.minute} {drill_fire.hour} * * {drill_fire.isoweekday() % 7}"
    nightly_key = f"schedule:backup:backup:{nightly_fire:%Y-%m-%d}"
    drill_key = f"schedule:backup:drill:{drill_fire:%G-W%V}"

    with open_pipeline(
        tmp_path,
        redis_url,
        backup_dir=tmp_path / "backups",
        backup_cron=backup_cron,
        restore_drill_cron=drill_cron,
    ) as pipeline:
        pipeline.start_worker([MAINTENANCE_QUEUE], concurrency=2)
        _accepted_at(pipeline, now - timedelta(days=4))

        first = _send(pipeline, SWEEP_OUTBOX_TASK)
        assert first["scheduled"] == 2, first
        jobs = {job.arguments["mode"]: job for job in _backup_jobs(pipeline)}
        assert sorted(jobs) == ["backup", "drill"]
        backup, drill = jobs["backup"], jobs["drill"]
        assert (backup.idempotency_key, drill.idempotency_key) == (nightly_key, drill_key)
        assert backup.arguments == {"mode": "backup", "prune": True}

        # The next sweep finds both periods done; so does beat's own fire, arriving late.
        assert _send(pipeline, SWEEP_OUTBOX_TASK)["scheduled"] == 0
        schedule = beat_schedule(pipeline.settings, pipeline.runtime.kinds)
        fired = _send(pipeline, ENQUEUE_SCHEDULED_TASK, schedule["nightly-backup"]["args"])
        assert fired == {"job_id": backup.id, "created": False, "key": nightly_key}
        fired = _send(pipeline, ENQUEUE_SCHEDULED_TASK, schedule["restore-drill"]["args"])
        assert fired == {"job_id": drill.id, "created": False, "key": drill_key}
        assert len(_backup_jobs(pipeline)) == 2

        # The caught-up backup really runs.
        done = pipeline.wait_for_job(backup.id, JobStatus.SUCCEEDED, timeout=TASK_TIMEOUT_S)
        assert done.result is not None
        assert done.result["mode"] == "backup"


def test_a_fire_older_than_the_ledgers_retention_is_not_caught_up(
    tmp_path: Path, redis_url: str
) -> None:
    """Its job may have been pruned already: catching it up could run it twice."""
    now = datetime.now(UTC)
    fire = _minute(now - timedelta(days=3))
    once_a_year = f"{fire.minute} {fire.hour} {fire.day} {fire.month} *"
    with open_pipeline(
        tmp_path,
        redis_url,
        backup_cron=once_a_year,
        restore_drill_cron=once_a_year,
        ledger_retention_days=2,
    ) as pipeline:
        _accepted_at(pipeline, now - timedelta(days=4))
        assert catch_up(pipeline.runtime, now) == []
        assert _backup_jobs(pipeline) == []

    with open_pipeline(
        tmp_path / "longer", redis_url, backup_cron=once_a_year, restore_drill_cron=once_a_year
    ) as pipeline:
        _accepted_at(pipeline, now - timedelta(days=4))
        made = catch_up(pipeline.runtime, now)
        assert sorted((m.name, m.created) for m in made) == [
            ("nightly-backup", True),
            ("restore-drill", True),
        ]


def test_fires_from_before_the_ledgers_first_job_are_not_caught_up(
    tmp_path: Path, redis_url: str
) -> None:
    """A fresh install starts with no backup and no drill: its first period is the next."""
    now = datetime.now(UTC)
    fire = _minute(now - timedelta(hours=2))
    daily = f"{fire.minute} {fire.hour} * * *"
    with open_pipeline(
        tmp_path, redis_url, backup_cron=daily, restore_drill_cron=daily
    ) as pipeline:
        assert catch_up(pipeline.runtime, now) == []  # an empty ledger
        _accepted_at(pipeline, now - timedelta(hours=1))
        assert catch_up(pipeline.runtime, now) == []  # running only since after the fire
        assert _backup_jobs(pipeline) == []
        _accepted_at(pipeline, now - timedelta(hours=3))
        assert sorted(m.name for m in catch_up(pipeline.runtime, now)) == [
            "nightly-backup",
            "restore-drill",
        ]
