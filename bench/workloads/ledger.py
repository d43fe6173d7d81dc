"""Cost as the ledger grows: the same reads, scrapes, enqueues and prune at each size.

For each size (smallest first) the ledger is filled up to it (:mod:`bench.ledger_fill`)
and copied; the product's API serves the copy under uvicorn and is measured with one
client at a time: ``GET /metrics`` and ``/metrics/ledger``, job listing pages (the
first, pages deep in the history through ``next_cursor``, by status, by kind), ``GET``
of single jobs, and ``POST /v1/jobs/canary`` alone and while another client scrapes
``/metrics/ledger`` in a loop; in ``rounds`` passes over the sizes, medians kept. Then
the product's prune task runs on each copy (about
half the finished jobs are past the retention period) while a writer process commits a
small write unit every 5 ms: how long the prune took and the longest that writer waited.
"""

from __future__ import annotations

import random
import shutil
import statistics
import threading
import time
from pathlib import Path

import httpx
import libsql

from bench import ledger_fill, project
from bench.context import API_KEY, Bench
from bench.load import timed_gets
from bench.report import rows_label
from bench.services import Server
from bench.stats import Growth, percentile
from bench.workloads.writes import start_writers

SAMPLES = 40
BUDGET_S = 8.0
DEEP_PAGES = 20
WRITER_INTERVAL_S = 0.005
WARM_UP_REQUESTS = 10
WARM_UP_PATHS = ("/metrics", "/metrics/ledger", "/v1/jobs?limit=50", "/v1/jobs?status=queued")


def parse_sizes(text: str) -> list[int]:
    """``"10k,100k,1M"`` -> [10000, 100000, 1000000]."""
    sizes = []
    for part in text.split(","):
        part = part.strip().lower()
        factor = 1
        if part.endswith("k"):
            factor, part = 1000, part[:-1]
        elif part.endswith("m"):
            factor, part = 1_000_000, part[:-1]
        try:
            sizes.append(int(float(part) * factor))
        except ValueError:
            raise ValueError(f"--sizes: {part!r} is not a number like 10k or 1M") from None
    return sorted(set(sizes))


def _count(path: Path, where: str = "1") -> int:
    connection = libsql.connect(str(path))
    try:
        return int(connection.execute(f"SELECT count(*) FROM jobs WHERE {where}").fetchall()[0][0])
    finally:
        connection.close()


def _sample_ids(path: Path, count: int) -> list[str]:
    connection = libsql.connect(str(path))
    try:
        top = int(connection.execute("SELECT max(rowid) FROM jobs").fetchall()[0][0])
        picks = random.Random(7).sample(range(1, top + 1), min(count, top))
        marks = ",".join(str(p) for p in picks)
        rows = connection.execute(f"SELECT id FROM jobs WHERE rowid IN ({marks})").fetchall()
        return [str(row[0]) for row in rows]
    finally:
        connection.close()


def measure_api(bench: Bench, database: Path, size: int) -> dict[str, float]:
    """p50 (ms) of each read, scrape and enqueue through the API serving ``database``."""
    name = f"api-ledger-{rows_label(size)}"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    figures: dict[str, float] = {}
    with (
        Server(
            name,
            project.API_FACTORY,
            bench.product_env(database),
            bench.logs / f"{name}.log",
            "/healthz",
        ) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=120) as client,
    ):

        def p50(path: str) -> float:
            return percentile(timed_gets(client, path, count=SAMPLES, budget_s=BUDGET_S), 50)

        # A fresh server's first requests pay for imports and caches: not the ledger's cost.
        for path in WARM_UP_PATHS:
            timed_gets(client, path, count=WARM_UP_REQUESTS, budget_s=BUDGET_S)
        _enqueue_p50(client, WARM_UP_REQUESTS)

        figures["GET /metrics p50"] = p50("/metrics")
        figures["GET /metrics/ledger p50"] = p50("/metrics/ledger")
        figures["GET /v1/jobs (first page of 50) p50"] = p50("/v1/jobs?limit=50")
        figures["GET /v1/jobs?status=queued p50"] = p50("/v1/jobs?status=queued&limit=50")
        figures["GET /v1/jobs?kind=canary p50"] = p50("/v1/jobs?kind=canary&limit=50")
        deep = []
        cursor = None
        for _ in range(DEEP_PAGES):
            url = "/v1/jobs?limit=50" + (f"&cursor={cursor}" if cursor else "")
            began = time.perf_counter()
            response = client.get(url)
            deep.append((time.perf_counter() - began) * 1000)
            response.raise_for_status()
            cursor = response.json()["next_cursor"]
            if cursor is None:
                break
        figures[f"GET /v1/jobs, next {DEEP_PAGES} pages p50"] = percentile(deep, 50)
        gets = []
        for job_id in _sample_ids(database, SAMPLES):
            began = time.perf_counter()
            client.get(f"/v1/jobs/{job_id}").raise_for_status()
            gets.append((time.perf_counter() - began) * 1000)
        figures["GET /v1/jobs/{id} p50"] = percentile(gets, 50)
        figures["POST /v1/jobs/canary p50"] = _enqueue_p50(client)
        scraping = threading.Event()
        scrapes: list[float] = []

        def scrape() -> None:
            with httpx.Client(base_url=server.url, headers=headers, timeout=120) as scraper:
                while not scraping.is_set():
                    began = time.perf_counter()
                    scraper.get("/metrics/ledger").raise_for_status()
                    scrapes.append((time.perf_counter() - began) * 1000)

        thread = threading.Thread(target=scrape, daemon=True)
        thread.start()
        try:
            figures["POST /v1/jobs/canary p50 while /metrics/ledger is scraped"] = _enqueue_p50(
                client
            )
        finally:
            scraping.set()
            thread.join(timeout=120)
    return figures


def _enqueue_p50(client: httpx.Client, count: int = SAMPLES * 2) -> float:
    latencies: list[float] = []
    deadline = time.perf_counter() + BUDGET_S
    while len(latencies) < count and (len(latencies) < 5 or time.perf_counter() < deadline):
        began = time.perf_counter()
        client.post(project.CANARY_PATH, json=project.NOOP_CANARY).raise_for_status()
        latencies.append((time.perf_counter() - began) * 1000)
    return percentile(latencies, 50)


def measure_prune(bench: Bench, database: Path) -> dict[str, float]:
    """The product's prune on ``database`` while a writer commits every 5 ms."""
    settings = project.settings_for(database, bench.redis_url)
    app, runtime = project.open_runtime(settings)
    writer_job = project.enqueue_canary(runtime)
    runtime.db.dispose()
    before = _count(database)
    group = start_writers(
        database, bench.redis_url, [writer_job], 3600, {}, interval_s=WRITER_INTERVAL_S
    )
    try:
        time.sleep(1.0)  # the writer's usual pace, before the prune
        began = time.time()
        project.prune_ledger(app)
        ended = time.time()
        time.sleep(0.5)
    finally:
        group.stop_writing()
        (result,) = group.collect()
    runtime.db.dispose()
    during = [ms for at, ms in result.samples if began - 0.5 <= at <= ended]
    outside = [ms for at, ms in result.samples if at < began - 0.5]
    return {
        "prune seconds": ended - began,
        "rows pruned": float(before - _count(database)),
        "longest writer wait during prune": max(during) if during else float("nan"),
        "writer p50 before prune": percentile(outside, 50) if outside else float("nan"),
        "lock errors escaped during prune": float(sum(result.errors.values())),
    }


UNITS = {
    "prune seconds": "s",
    "rows pruned": "rows",
    "lock errors escaped during prune": "errors",
    "database file": "MB",
    "fill seconds": "s",
}


def run(bench: Bench, sizes: list[int]) -> list[Growth]:
    base = bench.workdir / "ledger-base.db"
    project.migrate(project.settings_for(base, bench.redis_url))
    filled = 0
    copies: dict[int, Path] = {}
    table: dict[str, dict[int, float]] = {}
    for size in sizes:
        seconds = ledger_fill.append_rows(base, size - filled)
        filled = size
        copies[size] = bench.workdir / f"ledger-{rows_label(size)}.db"
        shutil.copyfile(base, copies[size])
        megabytes = copies[size].stat().st_size / 1e6
        print(f"  ledger {rows_label(size)}: filled in {seconds:.1f} s, {megabytes:.0f} MB")
        table.setdefault("fill seconds", {})[size] = seconds
        table.setdefault("database file", {})[size] = megabytes
    base.unlink()
    # The reads go in rounds over the sizes, the order reversed each round, so that a
    # busy moment of the machine does not land on one size only; medians are kept.
    passes: dict[str, dict[int, list[float]]] = {}
    for i in range(bench.rounds):
        for size in sizes if i % 2 == 0 else list(reversed(sizes)):
            for name, value in measure_api(bench, copies[size], size).items():
                passes.setdefault(name, {}).setdefault(size, []).append(value)
            bench.flush()
        print(f"  ledger reads, round {i + 1} of {bench.rounds} done")
    for name, by_size in passes.items():
        table[name] = {size: statistics.median(values) for size, values in by_size.items()}
    for size in sizes:
        for name, value in measure_prune(bench, copies[size]).items():
            table.setdefault(name, {})[size] = value
        for path in copies[size].parent.glob(copies[size].name + "*"):
            path.unlink()
        bench.flush()
    for name, values in table.items():
        cells = ", ".join(f"{rows_label(size)} {value:.2f}" for size, value in values.items())
        print(f"    {name}: {cells}")
    return [
        Growth(measure=name, unit=UNITS.get(name, "ms"), values=values)
        for name, values in table.items()
    ]
