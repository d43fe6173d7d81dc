"""PNG charts of a run: throughput bars, latency distributions, costs by ledger size.

matplotlib is a benchmark-only dependency (the ``bench`` extra); without it the run
still writes its JSON and Markdown, and says the charts were left out.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bench.report import Results, rows_label

THROUGHPUT = "pipeline-throughput.png"
LATENCY = "pipeline-latency.png"
LEDGER = "pipeline-ledger.png"


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def draw(results: Results, folder: Path) -> list[str]:
    """Write the charts into ``folder``; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    written = []
    if _throughput(results, folder / THROUGHPUT):
        written.append(THROUGHPUT)
    if _latency(results, folder / LATENCY):
        written.append(LATENCY)
    if _ledger(results, folder / LEDGER):
        written.append(LEDGER)
    return written


def _throughput(results: Results, path: Path) -> bool:
    import matplotlib.pyplot as plt

    rows = [c for c in results.comparisons if c.higher_is_better]
    if not rows:
        return False
    figure, axes = plt.subplots(len(rows), 1, figsize=(9, 1.9 * len(rows) + 0.6), squeeze=False)
    for axis, c in zip(axes[:, 0], rows, strict=True):
        labels = [c.ours_name, c.baseline_name]
        medians = [c.ours.median, c.baseline.median]
        low = [c.ours.median - c.ours.min, c.baseline.median - c.baseline.min]
        high = [c.ours.max - c.ours.median, c.baseline.max - c.baseline.median]
        bars = axis.barh(labels, medians, xerr=[low, high], color=["#3b6ea8", "#b0b0b0"])
        axis.bar_label(bars, labels=[f"{m:,.0f}" for m in medians], padding=4, fontsize=8)
        axis.set_title(f"{c.workload}: ratio {c.ratio:.2f}", fontsize=9, loc="left")
        axis.set_xlabel(c.unit, fontsize=8)
        axis.tick_params(labelsize=8)
        axis.invert_yaxis()
    figure.suptitle("Throughput: median of the rounds (bars: min-max)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _latency(results: Results, path: Path) -> bool:
    import matplotlib.pyplot as plt

    panels = [(title, sides) for title, sides in results.distributions.items() if sides]
    if not panels:
        return False
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * len(panels) + 0.6), squeeze=False)
    for axis, (title, sides) in zip(axes[:, 0], panels, strict=True):
        names = list(sides)
        axis.boxplot(
            [sides[name] for name in names],
            vert=False,
            whis=(1, 99),
            showfliers=False,
            tick_labels=names,
        )
        axis.set_xscale("log")
        axis.set_title(f"{title} (box: p25-p75, whiskers: p1-p99)", fontsize=9, loc="left")
        axis.set_xlabel("ms (log scale)", fontsize=8)
        axis.tick_params(labelsize=8)
    figure.suptitle("Latency distributions, all rounds", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _ledger(results: Results, path: Path) -> bool:
    import matplotlib.pyplot as plt

    lines = [g for g in results.growth if g.unit == "ms" and len(g.values) > 1]
    if not lines:
        return False
    figure, axis = plt.subplots(figsize=(11, 5))
    axis.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    for g in lines:
        sizes = sorted(g.values)
        axis.plot(sizes, [g.values[s] for s in sizes], marker="o", label=g.measure)
    sizes = sorted({s for g in lines for s in g.values})
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xticks(sizes, [rows_label(s) for s in sizes])
    axis.set_xlabel("rows in the ledger")
    axis.set_ylabel("ms (log scale)")
    axis.set_title("Cost as the ledger grows (p50; the prune: longest writer wait)", fontsize=10)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
