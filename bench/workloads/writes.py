"""The write unit: ``write_transaction`` with one small UPDATE, on a local file.

Writers are separate processes (``spawn``), each with its own database handle, each
updating its own job row in a loop for the same window; a unit's latency includes its
waits for the write lock. One writer against eight shows what contention costs: the
throughput ratio (eight writers' units / one writer's), the p99, and the lock errors
that escaped ``write_transaction`` (``DatabaseBusy`` after its retries). The same runs
again with ``DB_BUSY_TIMEOUT_MS=1``.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from bench import project
from bench.context import Bench
from bench.stats import Comparison, Figure, Summary, percentile

READY_TIMEOUT_S = 120.0  # spawned writers import the product: slow on a busy machine


@dataclass
class WriterResult:
    units: int = 0
    #: (when the unit began, Unix seconds; its latency in ms)
    samples: list[tuple[float, float]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


def writer(
    database: str,
    redis_url: str,
    overrides: dict[str, Any],
    job_id: str,
    seconds: float,
    interval_s: float,
    ready: Any,
    go: Event,
    stop: Event,
    results: Any,
) -> None:
    """A writer process: once ``go`` is set, units for ``seconds`` or until ``stop``."""
    settings = project.settings_for(Path(database), redis_url, **overrides)
    db = project.Database(settings)
    project.touch_job(db, job_id, 0.0)  # connect before the window opens
    result = WriterResult()
    ready.put(job_id)
    go.wait()
    stop_at = time.time() + seconds
    n = 0
    while time.time() < stop_at and not stop.is_set():
        began = time.time()
        clock = time.perf_counter()
        try:
            project.touch_job(db, job_id, (n % 100) / 100)
        except project.AutoforgeError as exc:
            name = type(exc).__name__
            result.errors[name] = result.errors.get(name, 0) + 1
        else:
            result.units += 1
            result.samples.append((began, (time.perf_counter() - clock) * 1000))
        n += 1
        if interval_s:
            time.sleep(interval_s)
    db.dispose()
    results.put(result)


@dataclass
class WriterGroup:
    """Writer processes under way; :meth:`collect` waits for what they report."""

    processes: list[Any]
    results: Any
    stop: Event
    timeout: float

    def stop_writing(self) -> None:
        """End the window now."""
        self.stop.set()

    def collect(self) -> list[WriterResult]:
        """Wait for the window to end; what each writer saw."""
        collected = []
        deadline = time.monotonic() + self.timeout
        for _ in self.processes:
            try:
                collected.append(self.results.get(timeout=max(1.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        if len(collected) != len(self.processes):
            raise RuntimeError(f"only {len(collected)} of {len(self.processes)} writers reported")
        return collected


def start_writers(
    database: Path,
    redis_url: str,
    job_ids: list[str],
    seconds: float,
    overrides: dict[str, Any],
    *,
    interval_s: float = 0.0,
) -> WriterGroup:
    """One writer process per job id; returns once all of them are writing."""
    context = multiprocessing.get_context("spawn")
    results, ready = context.Queue(), context.Queue()
    go, stop = context.Event(), context.Event()
    processes = [
        context.Process(
            target=writer,
            args=(
                str(database), redis_url, overrides, job_id, seconds, interval_s,
                ready, go, stop, results,
            ),
        )
        for job_id in job_ids
    ]  # fmt: skip
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=READY_TIMEOUT_S)
    go.set()
    return WriterGroup(processes, results, stop, seconds + 60)


def writers_window(
    database: Path, redis_url: str, job_ids: list[str], seconds: float, overrides: dict[str, Any]
) -> list[WriterResult]:
    return start_writers(database, redis_url, job_ids, seconds, overrides).collect()


def run(
    bench: Bench, seconds: float, writers: int
) -> tuple[list[Comparison], list[Figure], dict[str, list[float]]]:
    database = bench.workdir / "writes.db"
    settings = project.settings_for(database, bench.redis_url)
    project.migrate(settings)
    _, runtime = project.open_runtime(settings)
    job_ids = [project.enqueue_canary(runtime) for _ in range(writers)]
    runtime.db.dispose()
    comparisons: list[Comparison] = []
    figures: list[Figure] = []
    samples: dict[str, list[float]] = {}
    for label, overrides in (("", {}), (", DB_BUSY_TIMEOUT_MS=1", {"db_busy_timeout_ms": 1})):
        rounds = []
        for i in range(bench.rounds):
            result = bench.alternate(
                i,
                [
                    (
                        "one",
                        lambda o=overrides: writers_window(
                            database, bench.redis_url, job_ids[:1], seconds, o
                        ),
                    ),
                    (
                        "many",
                        lambda o=overrides: writers_window(
                            database, bench.redis_url, job_ids, seconds, o
                        ),
                    ),
                ],
            )
            rounds.append(result)
            one, many = result["one"], result["many"]
            print(
                f"  write units{label} round {i + 1}: 1 writer {one[0].units / seconds:.0f}/s "
                f"p50 {_p(one, 50):.2f} ms; {writers} writers "
                f"{sum(w.units for w in many) / seconds:.0f}/s p99 {_p(many, 99):.1f} ms, "
                f"escaped errors {_errors(many)}"
            )
        comparisons.append(
            Comparison(
                workload=f"write units, {writers} writer processes vs 1{label}",
                unit="units/s",
                higher_is_better=True,
                ours=Summary.of([sum(w.units for w in r["many"]) / seconds for r in rounds]),
                baseline=Summary.of([r["one"][0].units / seconds for r in rounds]),
                baseline_name="1 writer process",
                ours_name=f"{writers} writer processes",
                target=0.9,
                note=f"{seconds:g} s windows",
            )
        )
        figures += [
            Figure(
                f"write unit p50, 1 writer{label}",
                "ms",
                Summary.of([_p(r["one"], 50) for r in rounds]),
                target="<= 0.3",
            ),
            Figure(
                f"write unit p99, 1 writer{label}",
                "ms",
                Summary.of([_p(r["one"], 99) for r in rounds]),
            ),
            Figure(
                f"write unit p99, {writers} writers{label}",
                "ms",
                Summary.of([_p(r["many"], 99) for r in rounds]),
                target="<= 20",
            ),
            Figure(
                f"lock errors escaped, {writers} writers{label}",
                "errors per window",
                Summary.of([float(_errors(r["many"])) for r in rounds]),
                target="0",
            ),
            Figure(
                f"fewest / most units of one writer, {writers} writers{label}",
                "ratio",
                Summary.of([_share(r["many"]) for r in rounds]),
                note="1 is a fair share",
            ),
        ]
        if not label:
            samples["1 writer"] = [ms for r in rounds for _, ms in r["one"][0].samples]
            samples[f"{writers} writers"] = [
                ms for r in rounds for w in r["many"] for _, ms in w.samples
            ]
    return comparisons, figures, samples


def _p(results: list[WriterResult], q: float) -> float:
    latencies = [ms for w in results for _, ms in w.samples]
    return percentile(latencies, q) if latencies else float("nan")


def _errors(results: list[WriterResult]) -> int:
    return sum(sum(w.errors.values()) for w in results)


def _share(results: list[WriterResult]) -> float:
    units = [w.units for w in results]
    return min(units) / max(units) if max(units) else 0.0
