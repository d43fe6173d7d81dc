"""Summaries of measured samples, and how this project compares with a baseline.

A workload runs in rounds, alternating this project and its baseline; each round gives
one figure per side (a throughput, or a percentile of the round's latencies). The rounds
of a side are summarised by their minimum, median and maximum, and the comparison is
the ratio of the medians: ``this project / baseline``. A ratio reads in the direction of
its unit: for a throughput above 1 means this project is faster, for a latency above 1
means it is slower.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method: a value that was seen.

    With few samples a high percentile is their maximum, which is what it means then.
    """
    if not samples:
        raise ValueError("no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    """Minimum, median and maximum of one side's per-round figures."""

    min: float
    median: float
    max: float
    rounds: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no values to summarise")
        return cls(
            min=min(values),
            median=statistics.median(values),
            max=max(values),
            rounds=tuple(values),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "min": self.min,
            "median": self.median,
            "max": self.max,
            "rounds": list(self.rounds),
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """One row of the results: this project's rounds against a baseline's.

    ``higher_is_better`` says how to read the unit (jobs/s: yes; ms: no); ``target`` is
    the ratio the project aims for, in the same direction (``>= 0.7``, ``<= 2``).
    """

    workload: str
    unit: str
    higher_is_better: bool
    ours: Summary
    baseline: Summary
    baseline_name: str
    target: float | None = None
    note: str = ""
    ours_name: str = "this project"

    @property
    def ratio(self) -> float:
        """This project's median divided by the baseline's."""
        if self.baseline.median == 0:
            return math.inf if self.ours.median else 1.0
        return self.ours.median / self.baseline.median

    @property
    def meets_target(self) -> bool | None:
        """Whether the ratio reaches the target (None: no target)."""
        if self.target is None:
            return None
        if self.higher_is_better:
            return self.ratio >= self.target
        return self.ratio <= self.target

    def target_text(self) -> str:
        if self.target is None:
            return ""
        return f"{'>=' if self.higher_is_better else '<='} {self.target:g}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "ours_name": self.ours_name,
            "ours": self.ours.as_dict(),
            "baseline_name": self.baseline_name,
            "baseline": self.baseline.as_dict(),
            "ratio": self.ratio,
            "target": self.target_text() or None,
            "meets_target": self.meets_target,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Figure:
    """A measurement of this project alone (a write unit's p99, errors that escaped)."""

    measure: str
    unit: str
    value: Summary
    target: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "unit": self.unit,
            "value": self.value.as_dict(),
            "target": self.target or None,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Growth:
    """A cost measured on ledgers of several sizes: ``values`` maps rows to the figure."""

    measure: str
    unit: str
    values: dict[int, float]
    note: str = ""

    @property
    def growth(self) -> float | None:
        """The figure at the largest ledger divided by the figure at the smallest."""
        if len(self.values) < 2:
            return None
        smallest, largest = min(self.values), max(self.values)
        first = self.values[smallest]
        if first == 0:
            return None
        return self.values[largest] / first

    def as_dict(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "unit": self.unit,
            "values": {str(rows): value for rows, value in sorted(self.values.items())},
            "growth": self.growth,
            "note": self.note,
        }
