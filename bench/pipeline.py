"""``python3 -m bench pipeline``: this project's job pipeline against raw Celery, on one
machine, in one run, rounds alternating between the sides.

Workloads (``--only`` picks some): ``enqueue`` (in process), ``drain`` (N no-op jobs by a
``-c 2`` prefork worker; procrastinate too when PostgreSQL is reachable), ``api``
(``POST /v1/jobs/canary`` at concurrency 32 against a bare FastAPI route), ``latency``
(enqueue-to-done at 20 jobs/s), ``writes`` (the write unit, 8 writers against 1, also
with ``DB_BUSY_TIMEOUT_MS=1``) and ``ledger`` (costs on ledgers of ``--sizes`` rows).

Writes ``pipeline.json``, ``pipeline.md`` and PNG charts to ``--results``
(``bench/results``). See bench/README.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from bench import charts, machine
from bench.context import open_bench
from bench.report import Results, markdown
from bench.workloads import drain, enqueue, http_api, latency, ledger, writes
from bench.workloads.procrastinate_drain import ProcrastinateDrain, unavailable

WORKLOADS = ("enqueue", "drain", "api", "latency", "writes", "ledger")
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"

# (normal, --quick)
DEFAULTS = {
    "rounds": (3, 3),
    "enqueue_jobs": (2000, 500),
    "drain_jobs": (2000, 500),
    "api_seconds": (10.0, 4.0),
    "latency_seconds": (10.0, 5.0),
    "write_seconds": (10.0, 3.0),
    "sizes": ("10k,100k,1M", "10k,100k"),
}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench pipeline", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="smaller figures: a few minutes")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    parser.add_argument("--rounds", type=int, help="rounds per side (default 3)")
    parser.add_argument("--enqueue-jobs", type=int, help="jobs per enqueue round (2000)")
    parser.add_argument("--drain-jobs", type=int, help="jobs per drain round (2000)")
    parser.add_argument("--api-seconds", type=float, help="load per API round (10)")
    parser.add_argument("--concurrency", type=int, default=32, help="API clients (32)")
    parser.add_argument("--rate", type=float, default=20.0, help="enqueue-to-done jobs/s (20)")
    parser.add_argument("--latency-seconds", type=float, help="per latency round (10)")
    parser.add_argument("--write-seconds", type=float, help="per write-unit window (10)")
    parser.add_argument("--writers", type=int, default=8, help="concurrent writers (8)")
    parser.add_argument("--sizes", help="ledger sizes (10k,100k,1M; --quick: 10k,100k)")
    parser.add_argument(
        "--postgres-dsn", default=DEFAULT_DSN, help=f"for procrastinate ({DEFAULT_DSN})"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="output folder")
    parser.add_argument("--workdir", type=Path, help="keep the scratch files in this folder")
    return parser


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    pick = 1 if args.quick else 0
    for name, values in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, values[pick])
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(WORKLOADS))
    if unknown:
        print(f"--only: unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")
        return 2
    sizes = ledger.parse_sizes(args.sizes)
    command = shlex.join(["python3", "-m", "bench", "pipeline", *argv])
    arguments = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    arguments.pop("postgres_dsn")
    results = Results(machine=machine.describe(), arguments={"command": command, **arguments})
    began = time.perf_counter()
    print(f"{results.machine['description']}\n{command}")
    with open_bench(args.workdir, args.rounds) as bench:
        if "enqueue" in chosen:
            print("enqueue in process ...")
            results.comparisons.append(enqueue.run(bench, args.enqueue_jobs))
        if "drain" in chosen:
            print("drain ...")
            reason = unavailable(args.postgres_dsn)
            if reason is not None:
                print(f"  procrastinate skipped: {reason}")
                results.skipped["procrastinate drain"] = reason
                results.comparisons += drain.run(bench, args.drain_jobs, None)
            else:
                with ProcrastinateDrain(args.postgres_dsn, bench.logs) as other:
                    results.comparisons += drain.run(bench, args.drain_jobs, other)
        if "api" in chosen:
            print(f"POST /v1/jobs/canary at concurrency {args.concurrency} ...")
            found, samples = http_api.run(bench, args.concurrency, args.api_seconds)
            results.comparisons += found
            results.distributions[http_api.TITLE] = samples
        if "latency" in chosen:
            print(f"enqueue-to-done at {args.rate:g} jobs/s ...")
            comparison, samples = latency.run(bench, args.rate, args.latency_seconds)
            results.comparisons.append(comparison)
            results.distributions[f"enqueue-to-done at {args.rate:g} jobs/s"] = samples
        if "writes" in chosen:
            print("write units ...")
            found, figures, samples = writes.run(bench, args.write_seconds, args.writers)
            results.comparisons += found
            results.figures += figures
            results.distributions["write unit (one small UPDATE)"] = samples
        if "ledger" in chosen:
            print(f"ledger growth: {', '.join(map(str, sizes))} rows ...")
            results.growth += ledger.run(bench, sizes)
    results.seconds = time.perf_counter() - began
    results.machine["load_average_at_end"] = machine.load_average()
    args.results.mkdir(parents=True, exist_ok=True)
    results.write_json(args.results / "pipeline.json")
    drawn: list[str] = []
    if charts.available():
        drawn = charts.draw(results, args.results)
    else:
        print("charts left out: matplotlib is not installed (.venv/bin/pip install -e '.[bench]')")
    document = markdown(results, drawn)
    (args.results / "pipeline.md").write_text(document)
    print()
    print(document)
    print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
