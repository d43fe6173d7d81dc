"""The pipeline benchmark's arithmetic and tables: percentiles, summaries, ratios, Markdown.

The benchmark itself is not run here (it is not a test); what turns its samples into the
published figures is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report import Results, comparison_table, growth_table, markdown, number, rows_label
from bench.stats import Comparison, Figure, Growth, Summary, percentile


def _enqueue() -> Comparison:
    return Comparison(
        workload="enqueue",
        unit="jobs/s",
        higher_is_better=True,
        ours=Summary.of([120.0, 100.0, 110.0]),
        baseline=Summary.of([240.0, 200.0, 220.0]),
        baseline_name="raw Celery",
        target=0.7,
    )


def _latency() -> Comparison:
    return Comparison(
        workload="enqueue-to-done p50",
        unit="ms",
        higher_is_better=False,
        ours=Summary.of([3.0, 5.0]),
        baseline=Summary.of([2.0, 2.0]),
        baseline_name="raw Celery",
        target=2.0,
    )


def test_percentiles_are_nearest_rank_values() -> None:
    samples = [float(n) for n in range(10, 0, -1)]  # unsorted on purpose
    assert percentile(samples, 50) == 5.0
    assert percentile(samples, 99) == 10.0
    assert percentile(samples, 0) == 1.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1.0], 101)


def test_summary_of_rounds() -> None:
    summary = Summary.of([3.0, 1.0, 2.0, 10.0])
    assert (summary.min, summary.median, summary.max) == (1.0, 2.5, 10.0)
    assert summary.rounds == (3.0, 1.0, 2.0, 10.0)


def test_ratio_is_of_medians_and_read_in_the_units_direction() -> None:
    throughput, latency = _enqueue(), _latency()
    assert throughput.ratio == pytest.approx(0.5)
    assert throughput.meets_target is False
    assert throughput.target_text() == ">= 0.7"
    assert latency.ratio == pytest.approx(2.0)
    assert latency.meets_target is True  # 2x slower meets "<= 2"
    assert latency.target_text() == "<= 2"


def test_comparison_table_shows_median_min_max_and_ratio() -> None:
    table = comparison_table([_enqueue(), _latency()]).splitlines()
    assert table[0].startswith("| workload | unit | this project | baseline |")
    assert table[2] == (
        "| enqueue | jobs/s | 110 (100-120) | raw Celery | 220 (200-240) | 0.50 | >= 0.7 not met |"
    )
    assert table[3] == (
        "| enqueue-to-done p50 | ms | 4.00 (3.00-5.00) | raw Celery | 2.00 (2.00-2.00) | 2.00 "
        "| <= 2 met |"
    )


def test_growth_table_has_a_column_per_size_and_the_growth() -> None:
    growth = Growth("GET /metrics/ledger p50", "ms", {1_000_000: 40.0, 10_000: 10.0})
    assert growth.growth == pytest.approx(4.0)
    assert growth_table([growth]).splitlines() == [
        "| measure | unit | 10k rows | 1M rows | largest / smallest |",
        "|---|---|---|---|---|",
        "| GET /metrics/ledger p50 | ms | 10.0 | 40.0 | 4.00 |",
    ]


def test_numbers_and_sizes_read_well() -> None:
    assert [number(v) for v in (2860.4, 22.34, 2.8, 0.3124)] == ["2,860", "22.3", "2.80", "0.312"]
    assert [rows_label(n) for n in (10_000, 1_000_000, 1234)] == ["10k", "1M", "1234"]


def test_results_round_trip_as_json_and_markdown(tmp_path: Path) -> None:
    results = Results(machine={"date": "today", "description": "2 cores"}, arguments={})
    results.comparisons.append(_enqueue())
    results.figures.append(Figure("write unit p50", "ms", Summary.of([0.2, 0.4]), "<= 0.3"))
    results.skipped["procrastinate drain"] = "PostgreSQL is not reachable"
    path = tmp_path / "pipeline.json"
    results.write_json(path)
    saved = json.loads(path.read_text())
    assert saved["comparisons"][0]["ratio"] == pytest.approx(0.5)
    assert saved["comparisons"][0]["ours"] == {
        "min": 100.0,
        "median": 110.0,
        "max": 120.0,
        "rounds": [120.0, 100.0, 110.0],
    }
    assert saved["figures"][0]["value"]["median"] == pytest.approx(0.3)
    document = markdown(results, ["pipeline-throughput.png"])
    assert "| write unit p50 | ms | 0.300 (0.200-0.400) | <= 0.3 |" in document
    assert "- procrastinate drain: PostgreSQL is not reachable" in document
    assert "![pipeline-throughput.png](pipeline-throughput.png)" in document
