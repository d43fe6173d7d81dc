"""Prometheus metrics of the API process, read from the ledger at scrape time.

The job ledger is the truth, so most metrics are not counted in this process but
queried when Prometheus scrapes: jobs by kind and status, the outbox backlog, retries and
durations, and the depth of each Redis queue. Two are this process's own: jobs it
enqueued (a counter) and its database lock retries.

Each app has its own :class:`~prometheus_client.CollectorRegistry` (no global registry),
so several apps can live in one process, as they do in the tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from db.repositories.jobs import JobRepository
from workers.queues import ALL_QUEUES, broker_lists
from workers.runtime import Runtime

log = logging.getLogger("autoforge.api.metrics")

PREFIX = "autoforge"


class LedgerCollector:
    """Reads the job ledger and the Redis queues on every scrape.

    A source that cannot be read is reported by ``autoforge_metrics_source_up`` (0) and
    its metrics are left out of that scrape; the scrape itself still succeeds.
    """

    def __init__(self, runtime: Runtime, redis_client: redis.Redis) -> None:
        self._runtime = runtime
        self._redis = redis_client

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        (
            jobs,
            backlog,
            retries,
            durations,
            queue_depth,
            up,
            lock_retries,
            backups,
            backup_last,
        ) = self._families()
        collected: list[Metric] = []
        try:
            with self._runtime.db.read_session() as session:
                repository = JobRepository(session)
                for kind, status, count in repository.counts():
                    jobs.add_metric([kind, status], count)
                backlog.add_metric([], repository.outbox_backlog())
                for kind, total in repository.retry_totals():
                    retries.add_metric([kind], total)
                for kind, count, seconds in repository.duration_totals():
                    durations.add_metric([kind], count, seconds)
                for mode, status, count, last in repository.backup_outcomes():
                    backups.add_metric([mode, status], count)
                    if status == "succeeded" and last is not None:
                        backup_last.add_metric([mode], last)
        except Exception as exc:  # a scrape must not fail because the database did
            log.warning("metrics: cannot read the job ledger: %s", type(exc).__name__)
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            collected += [jobs, backlog, retries, durations, backups, backup_last]
        try:
            depths = [(queue, _llen(self._redis, queue)) for queue in ALL_QUEUES]
        except redis.RedisError as exc:
            log.warning("metrics: cannot read the queue depths: %s", type(exc).__name__)
            up.add_metric(["redis"], 0)
        else:
            for queue, depth in depths:
                queue_depth.add_metric([queue], depth)
            up.add_metric(["redis"], 1)
            collected.append(queue_depth)
        lock_retries.add_metric([], self._runtime.db.stats.lock_retries)
        return [*collected, up, lock_retries]

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        SummaryMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        CounterMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
    ]:
        return (
            GaugeMetricFamily(
                f"{PREFIX}_jobs",
                "Jobs in the ledger by kind and status.",
                labels=["kind", "status"],
            ),
            GaugeMetricFamily(
                f"{PREFIX}_outbox_backlog", "Queued jobs never handed to the broker."
            ),
            GaugeMetricFamily(
                f"{PREFIX}_job_retries",
                "Attempts beyond the first, summed over the jobs in the ledger.",
                labels=["kind"],
            ),
            SummaryMetricFamily(
                f"{PREFIX}_job_duration_seconds",
                "Run time (finished - started) of the finished jobs in the ledger.",
                labels=["kind"],
            ),
            GaugeMetricFamily(
                f"{PREFIX}_queue_depth", "Messages waiting in each Redis queue.", labels=["queue"]
            ),
            GaugeMetricFamily(
                f"{PREFIX}_metrics_source_up",
                "1 if the source could be read for this scrape, else 0.",
                labels=["source"],
            ),
            CounterMetricFamily(
                f"{PREFIX}_db_lock_retries",
                "Write units this process re-ran because the database was locked.",
            ),
            GaugeMetricFamily(
                f"{PREFIX}_backup_jobs",
                "Backup jobs in the ledger by mode (backup, drill) and status; a failed "
                "drill is a failed job.",
                labels=["mode", "status"],
            ),
            GaugeMetricFamily(
                f"{PREFIX}_backup_last_success_timestamp_seconds",
                "When the newest successful backup job of each mode finished (Unix time).",
                labels=["mode"],
            ),
        )


def _llen(client: redis.Redis, queue: str) -> int:
    # Celery's Redis transport keeps a queue's messages in one list per priority step.
    with client.pipeline(transaction=False) as pipe:
        for name in broker_lists(queue):
            pipe.llen(name)
        depths = pipe.execute()
    return sum(int(depth) for depth in depths)


class ApiMetrics:
    """The metrics registry of one app, and the counters the API itself keeps."""

    def __init__(self, runtime: Runtime, redis_client: redis.Redis) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.jobs_enqueued = Counter(
            f"{PREFIX}_jobs_enqueued",
            "Jobs this API process accepted (idempotent replays not counted).",
            labelnames=["kind"],
            registry=self.registry,
        )
        self.registry.register(LedgerCollector(runtime, redis_client))
