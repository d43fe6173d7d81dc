"""Which backups to keep: grandfather-father-son, as a pure function.

With ``daily=N, weekly=M, monthly=K``, a backup is kept if it is

- the newest backup of one of the N most recent days that have a backup,
- the newest backup of one of the M most recent ISO weeks that have a backup, or
- the newest backup of one of the K most recent months that have a backup,

or if it is the newest *verified* backup, which is never deleted, whatever the policy
says (zero everywhere included). Days, weeks and months are UTC, like the timestamps.
"Periods that have a backup" rather than "the last N calendar days" (as restic's
``--keep-daily``): a fortnight without backups does not wipe out the older ones.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar


class Dated(Protocol):
    """What retention looks at: when a backup was taken and whether it was verified."""

    @property
    def created_at(self) -> datetime: ...

    @property
    def verified(self) -> bool: ...


T = TypeVar("T", bound=Dated)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How many days, ISO weeks and months keep a backup each."""

    daily: int
    weekly: int
    monthly: int

    def __post_init__(self) -> None:
        if min(self.daily, self.weekly, self.monthly) < 0:
            raise ValueError("retention counts cannot be negative")


def _day(moment: datetime) -> Hashable:
    return moment.date()


def _week(moment: datetime) -> Hashable:
    year, week, _ = moment.isocalendar()
    return (year, week)


def _month(moment: datetime) -> Hashable:
    return (moment.year, moment.month)


def plan_retention(backups: Sequence[T], policy: RetentionPolicy) -> tuple[list[T], list[T]]:
    """Split ``backups`` into (keep, delete), each newest first."""
    ordered = sorted(backups, key=lambda b: b.created_at, reverse=True)
    kept: set[int] = set()
    rules: tuple[tuple[int, Callable[[datetime], Hashable]], ...] = (
        (policy.daily, _day),
        (policy.weekly, _week),
        (policy.monthly, _month),
    )
    for count, period_of in rules:
        periods: set[Hashable] = set()
        for position, backup in enumerate(ordered):
            if len(periods) >= count:
                break
            period = period_of(backup.created_at.astimezone(UTC))
            if period not in periods:
                # Newest first: the first backup seen in a period is its newest.
                periods.add(period)
                kept.add(position)
    newest_verified = next((i for i, b in enumerate(ordered) if b.verified), None)
    if newest_verified is not None:
        kept.add(newest_verified)
    keep = [b for i, b in enumerate(ordered) if i in kept]
    delete = [b for i, b in enumerate(ordered) if i not in kept]
    return keep, delete
