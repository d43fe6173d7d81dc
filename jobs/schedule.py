"""Scheduled ledger jobs: which period a fire belongs to, and catching up a lost fire.

Job kinds declare their schedules (:class:`jobs.kind.Schedule`: the backup kind's nightly
backup and weekly restore drill), and beat fires ``enqueue_scheduled`` at each of their
cron times (``workers/beat.py`` makes the entries). Until a worker runs it, that fire is
only a Redis message: lost with Redis, or never sent while beat was down, the period
would have no job. So the outbox sweeper also makes sure that the latest period of each
schedule has its job in the ledger (:func:`catch_up`).

Both name a period's job by the same idempotency key, derived from the schedule's fire
time rather than from when the task happens to run: a fire whose task runs after
midnight still names its own day, and the sweeper's catch-up and beat's own fire of one
period make one job between them, whichever comes first.

Only the latest period is caught up: after a week of downtime there is one backup, not
seven. A fire older than ``LEDGER_RETENTION_DAYS`` is not caught up either: its job may
have been pruned already, and a catch-up would run it a second time. Nor is a fire from
before the oldest job in the ledger: the system was not running then (a fresh install
does not start with a backup and a drill of a database it has only just created; its
first period is the next fire).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.schedules import crontab

from core.errors import ConfigurationError
from core.settings import Settings
from db.repositories.jobs import JobRepository
from domain.idempotency import schedule_key
from jobs.errors import UndeclaredSchedule
from jobs.kind import Schedule
from jobs.outbox import Enqueued, enqueue
from jobs.registry import KindRegistry
from jobs.runtime import Runtime

# Searching further back than this for a fire is pointless: such a fire is older than any
# ledger retention. It only bounds the search for schedules that almost never fire.
_LOOKBACK_DAYS = 5 * 366


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


@dataclass(frozen=True, slots=True)
class ScheduledJob:
    """A ledger job that beat enqueues on a cron schedule, once per period."""

    kind: str
    declared: Schedule
    schedule: crontab

    @property
    def name(self) -> str:
        return self.declared.name

    @property
    def arguments(self) -> dict[str, Any]:
        return dict(self.declared.arguments)

    @property
    def period(self) -> str:
        """strftime pattern of the fire time (UTC) naming the period."""
        return self.declared.period

    def key(self, fire: datetime) -> str:
        """The idempotency key of the period that ``fire`` belongs to."""
        return period_key(self.kind, self.declared.key, self.period, fire)


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """What the sweeper found for one schedule: the period's job, and if it made it."""

    name: str
    key: str
    job_id: str
    created: bool


def scheduled_jobs(settings: Settings, kinds: KindRegistry) -> list[ScheduledJob]:
    """The ledger jobs that the kinds schedule, with their cron times from ``settings``."""
    return [
        ScheduledJob(
            kind.name,
            schedule,
            parse_cron(schedule.cron(settings), variable=schedule.variable),
        )
        for kind, schedule in kinds.schedules()
        if not schedule.is_off(settings)
    ]


def latest_fire(schedule: crontab, now: datetime) -> datetime | None:
    """The latest minute at or before ``now`` at which ``schedule`` fires (UTC).

    Celery's own rule: a minute fires when its month, day of month, day of week, hour and
    minute are all in the schedule's sets. ``None`` if it did not fire in five years.
    """
    now = now.astimezone(UTC).replace(second=0, microsecond=0)
    hours = sorted(schedule.hour, reverse=True)
    minutes = sorted(schedule.minute, reverse=True)
    day = now.date()
    for days_back in range(_LOOKBACK_DAYS):
        fires_that_day = (
            day.month in schedule.month_of_year
            and day.day in schedule.day_of_month
            and day.isoweekday() % 7 in schedule.day_of_week  # Sunday is 0
        )
        if fires_that_day:
            for hour in hours:
                if days_back == 0 and hour > now.hour:
                    continue
                for minute in minutes:
                    if days_back == 0 and hour == now.hour and minute > now.minute:
                        continue
                    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
        day -= timedelta(days=1)
    return None


def period_key(kind: str, schedule: str, period: str, fire: datetime) -> str:
    """The idempotency key of a scheduled job: its kind, its schedule's ``key`` and the
    period (``period``, a strftime pattern) of its fire."""
    return schedule_key(kind, schedule, fire.strftime(period))


def fire_of(cron: str | None, now: datetime) -> datetime:
    """The fire that a scheduled task running at ``now`` belongs to.

    Beat does not say when it meant to fire; the latest fire at or before ``now`` is it
    (the task runs at or after its fire time). Without a cron (a message sent before
    fires carried one), ``now`` itself.
    """
    if cron is None:
        return now
    return latest_fire(parse_cron(cron, variable="cron"), now) or now


def enqueue_fire(
    runtime: Runtime,
    kind: str,
    arguments: dict[str, Any],
    period: str,
    cron: str | None,
    now: datetime,
) -> tuple[Enqueued, str]:
    """Beat's fire of a schedule: its period's job (made now, or the one already made)
    and the period's key.

    The fire names its kind and arguments (as beat's messages always have); the schedule
    they belong to is found among the kinds' declarations.

    Raises:
        UndeclaredSchedule: no kind declares a schedule of ``kind`` with ``arguments``.
    """
    declared = runtime.kinds.schedule_of(kind, arguments)
    if declared is None:
        raise UndeclaredSchedule(f"no schedule of job kind {kind!r} has arguments {arguments}")
    key = period_key(kind, declared.key, period, fire_of(cron, now))
    return enqueue(runtime, kind, arguments, idempotency_key=key), key


def catch_up(runtime: Runtime, now: datetime) -> list[CaughtUp]:
    """Make sure each schedule's latest period has its job in the ledger.

    A period whose job exists, whatever its status, is left alone: a catch-up happens at
    most once per period, and never for a period whose fire is older than the ledger's
    retention or than the ledger's oldest job (see the module's docstring).
    """
    settings = runtime.settings
    oldest = now - timedelta(days=settings.ledger_retention_days)
    wanted = []
    for job in scheduled_jobs(settings, runtime.kinds):
        fire = latest_fire(job.schedule, now)
        if fire is not None and fire > oldest:
            wanted.append((job, fire, job.key(fire)))
    if not wanted:
        return []
    # A read first: in nearly every sweep every period already has its job.
    with runtime.db.read_session() as session:
        jobs = JobRepository(session)
        installed = jobs.oldest_created_at()
        existing = {key: jobs.get_by_idempotency_key(key) for _, _, key in wanted}
    if installed is None:
        return []
    installed = installed.replace(tzinfo=UTC) if installed.tzinfo is None else installed
    report = []
    for job, fire, key in wanted:
        found = existing[key]
        if found is None and fire < installed:
            continue  # the system was not running at that fire
        if found is not None:
            report.append(CaughtUp(job.name, key, found.id, created=False))
            continue
        # Idempotent: if beat's own fire got there in between, this returns its job.
        accepted = enqueue(runtime, job.kind, job.arguments, idempotency_key=key)
        report.append(CaughtUp(job.name, key, accepted.job.id, accepted.created))
    return report
