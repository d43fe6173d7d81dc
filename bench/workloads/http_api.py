"""``POST /v1/jobs/canary`` at concurrency 32: the product's API against a bare route.

Both run under uvicorn, one process each, started once and served in alternating
rounds; nothing consumes the jobs. The load comes from :mod:`bench.load` in this
process.
"""

from __future__ import annotations

from typing import Any

from bench import project
from bench.context import API_KEY, Bench
from bench.load import LoadRun, run_load
from bench.services import BenchError, Server
from bench.stats import Comparison, Summary, percentile

WARM_UP_S = 1.0
TITLE = "POST /v1/jobs/canary at concurrency 32"


def run(
    bench: Bench, concurrency: int, seconds: float
) -> tuple[list[Comparison], dict[str, list[float]]]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    ours_server = Server(
        "api-ours",
        project.API_FACTORY,
        bench.product_env(),
        bench.logs / "api-ours.log",
        "/healthz",
    )
    try:
        raw_server = Server(
            "api-raw",
            "bench.baselines.raw_api:build",
            bench.raw_env(),
            bench.logs / "api-raw.log",
            "/healthz",
        )
    except BaseException:
        ours_server.stop()
        raise
    with ours_server, raw_server:

        def load(server: Server, duration: float) -> LoadRun:
            run = run_load(
                server.url + project.CANARY_PATH,
                body=project.NOOP_CANARY,
                headers=headers,
                concurrency=concurrency,
                seconds=duration,
            )
            if run.errors:
                raise BenchError(f"{server.name}: failed requests {run.errors}")
            return run

        load(ours_server, WARM_UP_S)
        load(raw_server, WARM_UP_S)
        rounds: list[dict[str, LoadRun]] = []
        for i in range(bench.rounds):
            result = bench.alternate(
                i,
                [
                    ("ours", lambda: load(ours_server, seconds)),
                    ("raw", lambda: load(raw_server, seconds)),
                ],
            )
            print(
                f"  api round {i + 1}: "
                + ", ".join(
                    f"{side} {r.throughput:.0f} req/s p50 {percentile(r.latencies_ms, 50):.1f} ms"
                    for side, r in result.items()
                )
            )
            rounds.append(result)

    def summary(side: str, figure: Any) -> Summary:
        return Summary.of([figure(r[side]) for r in rounds])

    def throughput(r: LoadRun) -> float:
        return r.throughput

    def p50(r: LoadRun) -> float:
        return percentile(r.latencies_ms, 50)

    note = f"{concurrency} clients for {seconds:g} s per round, uvicorn, one process each"
    comparisons = [
        Comparison(
            workload=TITLE,
            unit="req/s",
            higher_is_better=True,
            ours=summary("ours", throughput),
            baseline=summary("raw", throughput),
            baseline_name="bare FastAPI route + send_task",
            target=0.7,
            note=note,
        ),
        Comparison(
            workload=f"{TITLE}, p50 latency",
            unit="ms",
            higher_is_better=False,
            ours=summary("ours", p50),
            baseline=summary("raw", p50),
            baseline_name="bare FastAPI route + send_task",
            note=note,
        ),
    ]
    samples = {
        "this project": [ms for r in rounds for ms in r["ours"].latencies_ms],
        "bare FastAPI + send_task": [ms for r in rounds for ms in r["raw"].latencies_ms],
    }
    return comparisons, samples
