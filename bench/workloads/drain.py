"""Drain: N no-op jobs waiting in the queue, then a worker; first start to last end.

Each side gets a real ``celery worker -c 2 --pool prefork`` (acks late, prefetch 1),
started after its jobs are queued and stopped after the last one ends, so neither
side's start-up counts. This project runs canary jobs with ``sleep_ms`` 0 through its
ledger (claim, run, succeed) and its times come from the ledger; raw Celery runs a
task that only records its start and end in Redis. procrastinate, when it can run,
drains the same number of no-op jobs with one worker of concurrency 2.
"""

from __future__ import annotations

from bench import project
from bench.context import Bench
from bench.services import BenchError, wait_until
from bench.stats import Comparison, Summary
from bench.workloads.procrastinate_drain import ProcrastinateDrain


def _timeout(jobs: int) -> float:
    return 120 + jobs / 10  # ten jobs a second would be far below any side's rate


def drain_ours(bench: Bench, jobs: int, name: str) -> float:
    ids = [project.enqueue_canary(bench.runtime) for _ in range(jobs)]
    with bench.product_worker(name) as worker:
        wait_until(
            lambda: project.finished_count(bench.runtime.db, ids) == jobs,
            what=f"{name}: {jobs} jobs finished",
            timeout=_timeout(jobs),
            interval=0.25,
            check=worker.check,
        )
    times = list(project.job_times(bench.runtime.db, ids).values())
    failed = [status for status, _, _ in times if status != project.SUCCEEDED]
    if failed:
        raise BenchError(f"{name}: {len(failed)} jobs did not succeed ({failed[:3]})")
    first = min(started for _, started, _ in times)
    last = max(finished for _, _, finished in times)
    return jobs / (last - first).total_seconds()


def drain_raw(bench: Bench, jobs: int, name: str) -> float:
    for n in range(jobs):
        bench.raw_send(str(n))
    with bench.raw_worker(name) as worker:
        wait_until(
            lambda: bench.raw_done_count() >= jobs,
            what=f"{name}: {jobs} tasks done",
            timeout=_timeout(jobs),
            interval=0.25,
            check=worker.check,
        )
    done = bench.raw_done()
    first = min(start for _, start, _ in done)
    last = max(end for _, _, end in done)
    return jobs / (last - first)


def run(bench: Bench, jobs: int, procrastinate: ProcrastinateDrain | None) -> list[Comparison]:
    rounds = []
    for i in range(bench.rounds):
        sides = [
            ("ours", lambda i=i: drain_ours(bench, jobs, f"drain-ours-{i + 1}")),
            ("raw", lambda i=i: drain_raw(bench, jobs, f"drain-raw-{i + 1}")),
        ]
        if procrastinate is not None:
            sides.append(
                (
                    "procrastinate",
                    lambda i=i: procrastinate.drain(
                        jobs, f"drain-procrastinate-{i + 1}", _timeout(jobs)
                    ),
                )
            )
        result = bench.alternate(i, sides)
        print(
            f"  drain round {i + 1}: "
            + ", ".join(f"{side} {rate:.0f}/s" for side, rate in result.items())
        )
        rounds.append(result)
    ours = Summary.of([r["ours"] for r in rounds])
    comparisons = [
        Comparison(
            workload=f"drain of {jobs:,} no-op jobs (first start to last end)",
            unit="jobs/s",
            higher_is_better=True,
            ours=ours,
            baseline=Summary.of([r["raw"] for r in rounds]),
            baseline_name="raw Celery",
            target=0.7,
            note="celery worker -c 2 --pool prefork, acks late, prefetch 1, on both sides",
        )
    ]
    if procrastinate is not None:
        comparisons.append(
            Comparison(
                workload=f"drain of {jobs:,} no-op jobs (first start to last end)",
                unit="jobs/s",
                higher_is_better=True,
                ours=ours,
                baseline=Summary.of([r["procrastinate"] for r in rounds]),
                baseline_name="procrastinate (PostgreSQL, -c 2)",
                target=2.0,
                note="procrastinate: one worker process, concurrency 2, on local PostgreSQL",
            )
        )
    return comparisons
