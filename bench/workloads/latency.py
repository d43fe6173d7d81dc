"""Enqueue-to-done at a low fixed rate: how long one job takes when nothing queues.

A worker of each side runs (``-c 2 --pool prefork``); jobs are enqueued in this process
at ``rate`` per second for ``seconds``; a job's latency is from the moment its enqueue
began to its end as recorded by the worker (the ledger's ``finished_at``; the raw task's
own clock). Both clocks are this machine's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bench import project
from bench.context import Bench
from bench.services import BenchError, Process, wait_until
from bench.stats import Comparison, Summary, percentile

TITLE = "enqueue-to-done"


def _paced(count: int, rate: float, send: Callable[[int], None]) -> list[float]:
    """Call ``send(n)`` ``count`` times at ``rate`` per second; when each call began."""
    began = time.time()
    starts = []
    for n in range(count):
        due = began + n / rate
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        starts.append(time.time())
        send(n)
    return starts


def ours(bench: Bench, count: int, rate: float, name: str) -> list[float]:
    with bench.product_worker(name) as worker:
        warm = [project.enqueue_canary(bench.runtime)]
        _wait(worker, lambda: project.finished_count(bench.runtime.db, warm) == 1, name)
        ids: list[str] = []
        starts = _paced(count, rate, lambda _: ids.append(project.enqueue_canary(bench.runtime)))
        _wait(worker, lambda: project.finished_count(bench.runtime.db, ids) == count, name)
    times = project.job_times(bench.runtime.db, ids)
    latencies = []
    for job_id, start in zip(ids, starts, strict=True):
        status, _, finished = times[job_id]
        if status != project.SUCCEEDED:
            raise BenchError(f"{name}: job {job_id} ended {status}")
        latencies.append((finished.timestamp() - start) * 1000)
    return latencies


def raw(bench: Bench, count: int, rate: float, name: str) -> list[float]:
    with bench.raw_worker(name) as worker:
        bench.raw_send("warm-up")
        _wait(worker, lambda: bench.raw_done_count() == 1, name)
        starts = _paced(count, rate, lambda n: bench.raw_send(str(n)))
        _wait(worker, lambda: bench.raw_done_count() == count + 1, name)
    ends = {mark: end for mark, _, end in bench.raw_done() if mark != "warm-up"}
    return [(ends[str(n)] - start) * 1000 for n, start in enumerate(starts)]


def _wait(worker: Process, condition: Callable[[], bool], name: str) -> None:
    wait_until(condition, what=f"{name}: jobs done", timeout=120, check=worker.check)


def run(bench: Bench, rate: float, seconds: float) -> tuple[Comparison, dict[str, list[float]]]:
    count = max(1, round(rate * seconds))
    rounds = []
    for i in range(bench.rounds):
        result = bench.alternate(
            i,
            [
                ("ours", lambda i=i: ours(bench, count, rate, f"latency-ours-{i + 1}")),
                ("raw", lambda i=i: raw(bench, count, rate, f"latency-raw-{i + 1}")),
            ],
        )
        print(
            f"  {TITLE} round {i + 1}: "
            + ", ".join(f"{side} p50 {percentile(ms, 50):.1f} ms" for side, ms in result.items())
        )
        rounds.append(result)
    comparison = Comparison(
        workload=f"{TITLE} p50 at {rate:g} jobs/s",
        unit="ms",
        higher_is_better=False,
        ours=Summary.of([percentile(r["ours"], 50) for r in rounds]),
        baseline=Summary.of([percentile(r["raw"], 50) for r in rounds]),
        baseline_name="raw Celery",
        target=2.0,
        note=f"{count} jobs per round, enqueued in process, one worker -c 2 running",
    )
    samples = {
        "this project": [ms for r in rounds for ms in r["ours"]],
        "raw Celery": [ms for r in rounds for ms in r["raw"]],
    }
    return comparison, samples
