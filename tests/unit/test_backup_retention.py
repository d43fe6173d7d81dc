"""Grandfather-father-son retention over a simulated year of daily backups.

The expected sets are computed here a second way (group by period, take the newest of the
N most recent periods), independently of the walk in :func:`plan_retention`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from tasks.backup.retention import RetentionPolicy, plan_retention

YEAR_START = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)  # a Thursday; 2026 has 53 ISO weeks


@dataclass(frozen=True)
class FakeBackup:
    created_at: datetime
    verified: bool = True


def expected_keep(backups: Sequence[FakeBackup], policy: RetentionPolicy) -> set[FakeBackup]:
    """Newest of each of the most recent N days / M ISO weeks / K months, + newest verified."""
    keep: set[FakeBackup] = set()
    rules: list[tuple[int, Callable[[datetime], Hashable]]] = [
        (policy.daily, lambda t: t.date()),
        (policy.weekly, lambda t: t.isocalendar()[:2]),
        (policy.monthly, lambda t: (t.year, t.month)),
    ]
    for count, period_of in rules:
        groups: dict[Hashable, list[FakeBackup]] = defaultdict(list)
        for backup in backups:
            groups[period_of(backup.created_at)].append(backup)
        recent = sorted(groups, reverse=True)[:count]  # type: ignore[type-var]
        keep.update(max(groups[p], key=lambda b: b.created_at) for p in recent)
    verified = [b for b in backups if b.verified]
    if verified:
        keep.add(max(verified, key=lambda b: b.created_at))
    return keep


def a_year_of_backups() -> list[FakeBackup]:
    """One backup a day at 03:00, an extra one every 10th day at 15:00, a week missing."""
    backups = []
    for day in range(365):
        moment = YEAR_START + timedelta(days=day)
        if date(2026, 8, 3) <= moment.date() <= date(2026, 8, 9):
            continue  # the backup host was down for a week
        backups.append(FakeBackup(moment))
        if day % 10 == 0:
            backups.append(FakeBackup(moment + timedelta(hours=12)))
    return backups


def test_a_year_of_daily_backups_keeps_exactly_the_gfs_set() -> None:
    policy = RetentionPolicy(daily=7, weekly=4, monthly=12)
    backups = a_year_of_backups()

    keep, delete = plan_retention(backups, policy)

    assert set(keep) == expected_keep(backups, policy)
    assert set(keep) | set(delete) == set(backups)
    assert not set(keep) & set(delete)
    assert keep == sorted(keep, key=lambda b: b.created_at, reverse=True)
    # By hand: Dec 25-31 (daily), Dec 20 and 13 (the Sundays of weeks 51 and 50; weeks 52
    # and 53 end on Dec 27 and 31, already kept), and the last backup of Jan..Nov.
    days = sorted(b.created_at.date() for b in keep)
    assert len(days) == 7 + 2 + 11
    assert days[-9:] == [date(2026, 12, 13), date(2026, 12, 20)] + [
        date(2026, 12, d) for d in range(25, 32)
    ]
    assert date(2026, 2, 28) in days
    assert date(2026, 2, 27) not in days


def test_pruning_every_day_for_a_year_ends_with_the_same_set() -> None:
    """What the nightly job does: add one, prune; the newest of a period survives to the end."""
    policy = RetentionPolicy(daily=7, weekly=4, monthly=12)
    stored: list[FakeBackup] = []
    for backup in a_year_of_backups():
        stored.append(backup)
        stored, _deleted = plan_retention(stored, policy)
        assert set(stored) == expected_keep(stored, policy)

    assert set(stored) == expected_keep(a_year_of_backups(), policy)


@pytest.mark.parametrize(
    "policy",
    [
        RetentionPolicy(daily=0, weekly=0, monthly=0),
        RetentionPolicy(daily=3, weekly=0, monthly=0),
        RetentionPolicy(daily=0, weekly=2, monthly=0),
        RetentionPolicy(daily=1, weekly=1, monthly=30),
    ],
)
def test_other_policies_match_the_independent_computation(policy: RetentionPolicy) -> None:
    backups = a_year_of_backups()
    keep, _ = plan_retention(backups, policy)
    assert set(keep) == expected_keep(backups, policy)


def test_the_newest_verified_backup_is_never_deleted() -> None:
    verified = FakeBackup(YEAR_START, verified=True)
    newer_unverified = [
        FakeBackup(YEAR_START + timedelta(days=d), verified=False) for d in range(1, 5)
    ]

    keep, delete = plan_retention([verified, *newer_unverified], RetentionPolicy(1, 1, 1))

    assert verified in keep
    assert keep[0] == newer_unverified[-1]  # the newest of the day, week and month
    assert set(delete) == set(newer_unverified[:-1])

    keep, delete = plan_retention([verified, *newer_unverified], RetentionPolicy(0, 0, 0))
    assert keep == [verified]


def test_periods_are_utc_whatever_the_time_zone_of_the_timestamps() -> None:
    tokyo = timezone(timedelta(hours=9))
    late = FakeBackup(datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
    # March 2nd 07:30 in Tokyo is March 1st 22:30 UTC: the same UTC day as `late`.
    early = FakeBackup(datetime(2026, 3, 2, 7, 30, tzinfo=tokyo))

    keep, delete = plan_retention([late, early], RetentionPolicy(daily=1, weekly=0, monthly=0))

    assert keep == [late]
    assert delete == [early]


def test_negative_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        RetentionPolicy(daily=-1, weekly=0, monthly=0)
