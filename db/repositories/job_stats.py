"""Reading the job statistics that triggers on ``jobs`` keep in ``job_stats``.

The triggers (migration 0007) update a handful of rows whenever a job is inserted,
changes status, is taken over after its lease lapsed, or is deleted, inside the writer's
own transaction. Reading them costs one small query, however many jobs the ledger holds,
and the counters never fall when finished jobs are pruned.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import JobStatModel

# The bounds the triggers of revision 0007 use (seconds). Bounds found in the table are
# merged in, so a histogram stays right even if a later revision changes them.
DURATION_BOUNDS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200)
START_DELAY_BOUNDS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


@dataclass(frozen=True, slots=True)
class Histogram:
    """A cumulative histogram: ``(upper bound, observations at or below it)``, +Inf last."""

    buckets: tuple[tuple[float, float], ...]
    sum: float

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0


@dataclass(frozen=True, slots=True)
class JobStats:
    """Everything the triggers keep, keyed by job kind (and status where it applies)."""

    current: dict[tuple[str, str], int] = field(default_factory=dict)
    entered: dict[tuple[str, str], int] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)
    lease_lapses: dict[str, int] = field(default_factory=dict)
    durations: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    start_delays: dict[str, Histogram] = field(default_factory=dict)


class JobStatsRepository:
    """The ``job_stats`` table: read only; the triggers write it."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def read(self) -> JobStats:
        rows = self.session.execute(
            select(
                JobStatModel.name,
                JobStatModel.kind,
                JobStatModel.status,
                JobStatModel.le,
                JobStatModel.value,
            )
        ).all()
        stats = JobStats()
        buckets: dict[str, dict[tuple[str, str], dict[float, float]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        sums: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
        for name, kind, status, le, value in rows:
            if name == "jobs":
                stats.current[(kind, status)] = int(value)
            elif name == "entered":
                stats.entered[(kind, status)] = int(value)
            elif name == "retries":
                stats.retries[kind] = int(value)
            elif name == "lease_lapses":
                stats.lease_lapses[kind] = int(value)
            elif name.endswith("_bucket"):
                buckets[name.removesuffix("_bucket")][(kind, status)][float(le)] = value
            elif name.endswith("_sum"):
                sums[name.removesuffix("_sum")][(kind, status)] = value
        for key, found in buckets["duration"].items():
            stats.durations[key] = _cumulative(found, DURATION_BOUNDS, sums["duration"].get(key))
        for (kind, _), found in buckets["start_delay"].items():
            stats.start_delays[kind] = _cumulative(
                found, START_DELAY_BOUNDS, sums["start_delay"].get((kind, ""))
            )
        return stats


def _cumulative(
    counts: dict[float, float], bounds: tuple[float, ...], total: float | None
) -> Histogram:
    """Per-bucket counts (keyed by upper bound) as a cumulative histogram over every bound."""
    edges = sorted({*map(float, bounds), *counts, math.inf})
    running = 0.0
    cumulative = []
    for edge in edges:
        running += counts.get(edge, 0.0)
        cumulative.append((edge, running))
    return Histogram(buckets=tuple(cumulative), sum=total or 0.0)
