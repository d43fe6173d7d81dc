"""Scheduled ledger jobs: the latest fire of a cron schedule and the period it names.

Celery's own crontab arithmetic (the next fire after a time, as beat computes it) is the
oracle for :func:`latest_fire`.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery.schedules import crontab

from jobs.schedule import fire_of, latest_fire, parse_cron, period_key, scheduled_jobs
from tasks.registry import kind_registry
from tests.conftest import make_settings

CRONS = [
    "0 3 * * *",
    "30 4 * * 0",
    "17 4 * * *",
    "*/5 * * * *",
    "0 0 1 * *",
    "15 2,14 * * 1-5",
    "0 3 1-7 * 1",  # celery: day of month AND day of week (the first Monday)
    "45 23 * * 6",
    "0 12 29 2 *",
]


def _next_fire(schedule: crontab, after: datetime) -> datetime:
    """Celery's next fire strictly after ``after`` (what beat would wait for)."""
    last, delta, _ = schedule.remaining_delta(after, tz=UTC)
    fire: datetime = last + delta
    return fire


@pytest.mark.parametrize("cron", CRONS)
def test_latest_fire_agrees_with_celerys_next_fire(cron: str) -> None:
    schedule = parse_cron(cron, variable="CRON")
    rng = random.Random(cron)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for _ in range(200):
        now = start + timedelta(seconds=rng.randrange(3 * 366 * 24 * 3600))
        fire = latest_fire(schedule, now)
        assert fire is not None
        assert fire <= now
        # The schedule fires at ``fire`` ...
        assert _next_fire(schedule, fire - timedelta(minutes=1)) == fire
        # ... and not again until after ``now``.
        assert _next_fire(schedule, fire) > now


def test_a_fire_is_its_own_latest_fire() -> None:
    schedule = parse_cron("0 3 * * *", variable="BACKUP_CRON")
    at_fire = datetime(2026, 5, 1, 3, 0, 0, tzinfo=UTC)
    assert latest_fire(schedule, at_fire) == at_fire
    assert latest_fire(schedule, at_fire + timedelta(seconds=59)) == at_fire
    assert latest_fire(schedule, at_fire - timedelta(seconds=1)) == at_fire - timedelta(days=1)


def test_a_fire_whose_task_runs_after_midnight_names_its_own_day() -> None:
    late_fire = parse_cron("50 23 * * *", variable="BACKUP_CRON")
    ran_at = datetime(2026, 5, 2, 0, 5, tzinfo=UTC)  # delayed 15 minutes, past midnight
    fire = fire_of("50 23 * * *", ran_at)
    assert fire == latest_fire(late_fire, ran_at) == datetime(2026, 5, 1, 23, 50, tzinfo=UTC)
    key = period_key("backup", "backup", "%Y-%m-%d", fire)
    assert key == "schedule:backup:backup:2026-05-01"


def test_a_weekly_drill_names_the_iso_week_of_its_fire() -> None:
    ran_at = datetime(2026, 5, 4, 0, 10, tzinfo=UTC)  # Monday, week 19; fired Sunday, week 18
    fire = fire_of("30 4 * * 0", ran_at)
    assert fire == datetime(2026, 5, 3, 4, 30, tzinfo=UTC)
    assert period_key("backup", "drill", "%G-W%V", fire) == ("schedule:backup:drill:2026-W18")


def test_a_message_without_a_cron_names_the_period_of_now() -> None:
    now = datetime(2026, 5, 2, 0, 5, tzinfo=UTC)
    assert fire_of(None, now) == now


def test_the_scheduled_jobs_are_beats_enqueue_entries(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "x.db", backup_cron="5 1 * * *", restore_drill_cron="0 6 * * 3"
    )
    jobs = {job.name: job for job in scheduled_jobs(settings, kind_registry())}
    assert set(jobs) == {"nightly-backup", "restore-drill", "embed-stale"}
    assert jobs["embed-stale"].arguments == {"all_stale": True}
    # Embedding stale prompts is on in local, off unless asked for elsewhere.
    off = make_settings(tmp_path / "x.db", embed_stale_cron="off")
    assert {job.name for job in scheduled_jobs(off, kind_registry())} == {
        "nightly-backup",
        "restore-drill",
    }
    nightly, drill = jobs["nightly-backup"], jobs["restore-drill"]
    assert nightly.arguments == {"mode": "backup", "prune": True}
    assert drill.arguments == {"mode": "drill", "prune": True}
    when = datetime(2026, 5, 7, 12, 0, tzinfo=UTC)  # a Thursday
    assert latest_fire(nightly.schedule, when) == datetime(2026, 5, 7, 1, 5, tzinfo=UTC)
    assert latest_fire(drill.schedule, when) == datetime(2026, 5, 6, 6, 0, tzinfo=UTC)
    assert drill.key(datetime(2026, 5, 6, 6, 0, tzinfo=UTC)) == "schedule:backup:drill:2026-W19"
