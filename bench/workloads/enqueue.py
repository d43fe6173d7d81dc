"""Enqueue in process: the product's outbox ``enqueue`` against raw Celery's ``delay()``.

One thread, one job after another, nothing consuming: the cost of accepting a job.
"""

from __future__ import annotations

import time

from bench import project
from bench.context import Bench
from bench.stats import Comparison, Summary

WARM_UP = 20


def run(bench: Bench, jobs: int) -> Comparison:
    for _ in range(WARM_UP):
        project.enqueue_canary(bench.runtime)
        bench.raw_send("warm-up")

    def ours() -> float:
        began = time.perf_counter()
        for _ in range(jobs):
            project.enqueue_canary(bench.runtime)
        return jobs / (time.perf_counter() - began)

    def raw() -> float:
        began = time.perf_counter()
        for n in range(jobs):
            bench.raw_send(str(n))
        return jobs / (time.perf_counter() - began)

    rounds = [bench.alternate(i, [("ours", ours), ("raw", raw)]) for i in range(bench.rounds)]
    for i, result in enumerate(rounds, 1):
        print(f"  enqueue round {i}: ours {result['ours']:.0f}/s, raw {result['raw']:.0f}/s")
    return Comparison(
        workload="enqueue in process (outbox `enqueue` vs `delay()`)",
        unit="jobs/s",
        higher_is_better=True,
        ours=Summary.of([r["ours"] for r in rounds]),
        baseline=Summary.of([r["raw"] for r in rounds]),
        baseline_name="raw Celery",
        target=0.7,
        note=f"{jobs} jobs per round, one thread",
    )
