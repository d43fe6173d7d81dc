"""The retry policy and the beat schedule (no services)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from celery.schedules import crontab

from core.errors import ConfigurationError
from jobs.queues import PRUNE_LEDGER_TASK, SWEEP_OUTBOX_TASK
from jobs.retry import (
    PROVIDER_RETRY_POLICY,
    SUPERVISOR_RESTART_POLICY,
    RetryPolicy,
    job_retry_policy,
)
from jobs.schedule import parse_cron
from tasks.registry import kind_registry
from tests.conftest import make_settings
from workers.beat import beat_schedule


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 10, 30])
def test_backoff_grows_exponentially_with_jitter_and_a_cap(attempt: int) -> None:
    policy = RetryPolicy(base_s=2.0, max_s=60.0)
    ceiling = min(60.0, 2.0 * 2 ** (attempt - 1))
    delays = {policy.delay(attempt) for _ in range(200)}
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(delays) > 1, "no jitter"


def test_retry_after_is_honoured_but_capped() -> None:
    policy = RetryPolicy(base_s=1.0, max_s=30.0)
    assert all(policy.delay(1, retry_after=12.0) >= 12.0 for _ in range(50))
    assert all(policy.delay(1, retry_after=3600.0) <= 30.0 for _ in range(50))


def test_supervisor_restarts_double_without_jitter_up_to_their_cap() -> None:
    delays = [SUPERVISOR_RESTART_POLICY.delay(crash) for crash in range(1, 8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_each_retry_of_the_system_is_a_declared_policy(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "x.db", job_retry_backoff_s=3, job_retry_backoff_max_s=90)
    assert job_retry_policy(settings) == RetryPolicy(base_s=3.0, max_s=90.0)
    assert RetryPolicy(base_s=1.0, max_s=60.0) == PROVIDER_RETRY_POLICY
    # A provider's Retry-After is honoured, up to the policy's cap.
    assert PROVIDER_RETRY_POLICY.delay(1, retry_after=45) >= 45


def test_parse_cron_reads_five_fields() -> None:
    schedule = parse_cron("0 3 * * *", variable="BACKUP_CRON")
    assert isinstance(schedule, crontab)
    assert schedule.hour == {3}
    assert schedule.minute == {0}


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("0 3 * *", "BACKUP_CRON: expected 5 cron fields"),
        ("61 3 * * *", "BACKUP_CRON: invalid cron expression"),
        ("a b c d e", "BACKUP_CRON: invalid cron expression"),
    ],
)
def test_parse_cron_names_the_variable(expression: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_cron(expression, variable="BACKUP_CRON")
    assert problem in str(caught.value)


def test_beat_schedule_comes_from_the_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "x.db", sweeper_interval_s=7, prune_cron="5 4 * * 0")
    schedule = beat_schedule(settings, kind_registry())
    assert schedule["sweep-outbox"]["task"] == SWEEP_OUTBOX_TASK
    assert schedule["sweep-outbox"]["schedule"] == timedelta(seconds=7)
    assert schedule["prune-ledger"]["task"] == PRUNE_LEDGER_TASK
    assert schedule["prune-ledger"]["schedule"].day_of_week == {0}
