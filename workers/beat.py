"""Every beat schedule, in one place. Cron expressions come from the settings.

Beat runs with RedBeat: the schedule lives in Redis under a lock, so a second beat
process stands by instead of firing the same entries twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery.schedules import crontab

from core.errors import ConfigurationError
from core.settings import Settings
from jobs.queues import ENQUEUE_SCHEDULED_TASK, PRUNE_LEDGER_TASK, SWEEP_OUTBOX_TASK

#: The outbox sweeper's entry.
SWEEP_OUTBOX_ENTRY = "sweep-outbox"
#: Entries that fire at once when beat takes the lock or Redis comes back, rather than
#: at the end of their period: jobs accepted while Redis was away wait for the sweeper.
DUE_WHEN_REDIS_RETURNS: tuple[str, ...] = (SWEEP_OUTBOX_ENTRY,)


def parse_cron(expression: str, *, variable: str) -> crontab:
    """A five-field cron expression (minute hour day-of-month month day-of-week)."""
    fields = expression.split()
    if len(fields) != 5:
        raise ConfigurationError(
            f"{variable}: expected 5 cron fields (minute hour day month weekday), "
            f"got {len(fields)} in {expression!r}"
        )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    except Exception as exc:  # celery raises ValueError or its own ParseException
        raise ConfigurationError(
            f"{variable}: invalid cron expression {expression!r}: {exc}"
        ) from None


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The schedule entries. Replica syncs are added by their issue.

    A ledger job on a schedule fires ``enqueue_scheduled`` with ``(kind, arguments,
    period pattern, cron)``: its period is named after the fire time, and the outbox
    sweeper catches up a lost fire (``tasks/maintenance/schedule.py``).
    """
    return {
        "nightly-backup": {
            "task": ENQUEUE_SCHEDULED_TASK,
            "schedule": parse_cron(settings.backup_cron, variable="BACKUP_CRON"),
            "args": (
                "backup",
                {"mode": "backup", "prune": True},
                "%Y-%m-%d",
                settings.backup_cron,
            ),
        },
        "restore-drill": {
            "task": ENQUEUE_SCHEDULED_TASK,
            "schedule": parse_cron(settings.restore_drill_cron, variable="RESTORE_DRILL_CRON"),
            "args": (
                "backup",
                {"mode": "drill", "prune": True},
                "%G-W%V",
                settings.restore_drill_cron,
            ),
        },
        SWEEP_OUTBOX_ENTRY: {
            "task": SWEEP_OUTBOX_TASK,
            "schedule": timedelta(seconds=settings.sweeper_interval_s),
            "options": {"expires": settings.sweeper_interval_s},
        },
        "prune-ledger": {
            "task": PRUNE_LEDGER_TASK,
            "schedule": parse_cron(settings.prune_cron, variable="PRUNE_CRON"),
        },
    }
