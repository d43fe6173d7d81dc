"""The results of a run: kept as JSON, shown as Markdown tables.

Charts are drawn from the same object by :mod:`bench.charts` (matplotlib is optional).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import Comparison, Figure, Growth


def number(value: float) -> str:
    """A figure with as many digits as it deserves: 1,051 / 22.3 / 2.80 / 0.312."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def rows_label(rows: int) -> str:
    """10000 -> 10k, 1000000 -> 1M."""
    if rows >= 1_000_000 and rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows >= 1000 and rows % 1000 == 0:
        return f"{rows // 1000}k"
    return str(rows)


@dataclass
class Results:
    """Everything one run measured."""

    machine: dict[str, Any]
    arguments: dict[str, Any]
    comparisons: list[Comparison] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    growth: list[Growth] = field(default_factory=list)
    #: Latency samples for the distribution charts: chart title -> side -> milliseconds.
    distributions: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: Workloads that did not run, with the reason.
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "arguments": self.arguments,
            "seconds": self.seconds,
            "comparisons": [c.as_dict() for c in self.comparisons],
            "figures": [f.as_dict() for f in self.figures],
            "ledger_growth": [g.as_dict() for g in self.growth],
            # Microseconds are plenty, and keep the file small.
            "distributions": {
                title: {side: [round(ms, 3) for ms in samples] for side, samples in sides.items()}
                for title, sides in self.distributions.items()
            },
            "skipped": self.skipped,
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")


def _spread(minimum: float, median: float, maximum: float) -> str:
    return f"{number(median)} ({number(minimum)}-{number(maximum)})"


def _verdict(comparison: Comparison) -> str:
    met = comparison.meets_target
    if met is None:
        return ""
    return f"{comparison.target_text()} {'met' if met else 'not met'}"


def comparison_table(comparisons: list[Comparison]) -> str:
    """This project against its baselines: median (min-max) of each side, median ratio."""
    lines = [
        "| workload | unit | this project | baseline | baseline median (min-max) | ratio "
        "| target |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        lines.append(
            f"| {c.workload} | {c.unit} | {_spread(c.ours.min, c.ours.median, c.ours.max)} "
            f"| {c.baseline_name} | {_spread(c.baseline.min, c.baseline.median, c.baseline.max)} "
            f"| {c.ratio:.2f} | {_verdict(c)} |"
        )
    return "\n".join(lines)


def figure_table(figures: list[Figure]) -> str:
    """Measurements of this project alone: median (min-max) over the rounds."""
    lines = ["| measure | unit | median (min-max) | target |", "|---|---|---|---|"]
    for f in figures:
        lines.append(
            f"| {f.measure} | {f.unit} | {_spread(f.value.min, f.value.median, f.value.max)} "
            f"| {f.target} |"
        )
    return "\n".join(lines)


def growth_table(growth: list[Growth]) -> str:
    """Costs by ledger size, and the largest size's figure over the smallest's."""
    sizes = sorted({rows for g in growth for rows in g.values})
    header = " | ".join(f"{rows_label(rows)} rows" for rows in sizes)
    lines = [
        f"| measure | unit | {header} | largest / smallest |",
        "|---|---|" + "---|" * len(sizes) + "---|",
    ]
    for g in growth:
        cells = " | ".join(number(g.values[rows]) if rows in g.values else "" for rows in sizes)
        ratio = "" if g.growth is None else f"{g.growth:.2f}"
        lines.append(f"| {g.measure} | {g.unit} | {cells} | {ratio} |")
    return "\n".join(lines)


def markdown(results: Results, charts: list[str] | None = None) -> str:
    """The whole run as a Markdown document (``charts``: image file names beside it)."""
    machine = results.machine
    parts = [
        "# Pipeline benchmark",
        "",
        f"Run of {machine.get('date', '?')} on {machine.get('description', '?')}, "
        f"{results.seconds:.0f} s. Arguments: `{results.arguments.get('command', '')}`.",
        "",
    ]
    loads = [machine.get(f"load_average_at_{when}") for when in ("start", "end")]
    if all(loads):
        parts += [
            f"Load average (1, 5, 15 min) before the run {loads[0]} (other work on the "
            f"machine), after it {loads[1]} (the run's own processes included).",
            "",
        ]
    if results.comparisons:
        parts += [
            "## This project against its baselines",
            "",
            "Each side's figure is the median of its rounds (min-max in brackets); rounds "
            "alternate between the sides. ratio = this project's median / the baseline's: "
            "for a throughput higher is better, for a latency lower is better.",
            "",
            comparison_table(results.comparisons),
            "",
        ]
    if results.figures:
        parts += ["## Write unit", "", figure_table(results.figures), ""]
    if results.growth:
        parts += ["## Cost as the ledger grows", "", growth_table(results.growth), ""]
    if results.skipped:
        parts += ["## Skipped", ""]
        parts += [f"- {name}: {reason}" for name, reason in results.skipped.items()]
        parts.append("")
    for chart in charts or []:
        parts += [f"![{chart}]({chart})", ""]
    return "\n".join(parts)
