"""Every beat schedule, in one place: the housekeeping entries and the job kinds' declared
schedules. Cron expressions come from the settings.

Beat runs with RedBeat: the schedule lives in Redis under a lock, so a second beat
process stands by instead of firing the same entries twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.settings import Settings
from jobs.queues import (
    ENQUEUE_PERIODIC_TASK,
    ENQUEUE_SCHEDULED_TASK,
    PRUNE_LEDGER_TASK,
    SWEEP_OUTBOX_TASK,
)
from jobs.registry import KindRegistry
from jobs.schedule import parse_cron

#: The outbox sweeper's entry.
SWEEP_OUTBOX_ENTRY = "sweep-outbox"
#: Entries that fire at once when beat takes the lock or Redis comes back, rather than
#: at the end of their period: jobs accepted while Redis was away wait for the sweeper.
DUE_WHEN_REDIS_RETURNS: tuple[str, ...] = (SWEEP_OUTBOX_ENTRY,)

__all__ = ["DUE_WHEN_REDIS_RETURNS", "SWEEP_OUTBOX_ENTRY", "beat_schedule", "parse_cron"]


def beat_schedule(settings: Settings, kinds: KindRegistry) -> dict[str, dict[str, Any]]:
    """The schedule entries: each kind's declared schedules, then housekeeping.

    A ledger job on a schedule fires ``enqueue_scheduled`` with ``(kind, arguments,
    period pattern, cron)``: its period is named after the fire time, and the outbox
    sweeper catches up a lost fire (``jobs/schedule.py``).
    """
    entries: dict[str, dict[str, Any]] = {}
    for kind, schedule in kinds.schedules():
        if schedule.is_off(settings):
            continue
        cron = schedule.cron(settings)
        entries[schedule.name] = {
            "task": ENQUEUE_SCHEDULED_TASK,
            "schedule": parse_cron(cron, variable=schedule.variable),
            "args": (kind.name, dict(schedule.arguments), schedule.period, cron),
        }
    for kind in kinds:
        if kind.periodic is None:
            continue
        for periodic in kind.periodic.load()(settings):
            entries[periodic.name] = {
                "task": ENQUEUE_PERIODIC_TASK,
                "schedule": timedelta(seconds=periodic.interval_s),
                "args": (kind.name, dict(periodic.arguments)),
                # A fire not run within its interval is dropped: the next one comes.
                "options": {"expires": periodic.interval_s},
            }
    entries[SWEEP_OUTBOX_ENTRY] = {
        "task": SWEEP_OUTBOX_TASK,
        "schedule": timedelta(seconds=settings.sweeper_interval_s),
        "options": {"expires": settings.sweeper_interval_s},
    }
    entries["prune-ledger"] = {
        "task": PRUNE_LEDGER_TASK,
        "schedule": parse_cron(settings.prune_cron, variable="PRUNE_CRON"),
    }
    return entries
