"""Prometheus metrics of the API: this process's own, and the shared state of the system.

Two registries, served on two paths, so that what is shared is exported once:

- ``/metrics`` (:attr:`ApiMetrics.registry`): what this process counts itself: jobs it
  enqueued, its database lock retries, its HTTP requests (:mod:`api.http_metrics`).
  Prometheus scrapes it on every API replica and sums.
- ``/metrics/ledger`` (:attr:`ApiMetrics.ledger_registry`): read from the job ledger and
  Redis at scrape time: jobs by kind and status, status changes, retries, lease lapses,
  job durations and start delays, the outbox backlog, queue depths, and each kind's own
  metrics (its declaration's ``metrics``: backup outcomes). Every replica would answer the
  same, so Prometheus scrapes it from one target.

The job figures come from ``job_stats``, which triggers on ``jobs`` keep in the writer's
own transaction (migration 0007): counters that never fall when finished jobs are
pruned, and histograms recorded when a job starts or ends.

Each app has its own registries (no global registry), so several apps can live in one
process, as they do in the tests.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import redis
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from db.repositories.job_stats import Histogram, JobStats, JobStatsRepository
from db.repositories.jobs import JobRepository
from jobs.kind import KindMetrics
from jobs.queues import broker_lists
from jobs.runtime import Runtime

log = logging.getLogger("autoforge.api.metrics")

PREFIX = "autoforge"


class LedgerCollector:
    """Reads the job statistics, the ledger and the Redis queues on every scrape.

    A source that cannot be read is reported by ``autoforge_metrics_source_up`` (0) and
    its metrics are left out of that scrape; the scrape itself still succeeds.
    """

    def __init__(self, runtime: Runtime, redis_client: redis.Redis) -> None:
        self._runtime = runtime
        self._redis = redis_client

    def describe(self) -> Iterable[Metric]:
        kinds = [metrics.describe() for metrics in self._kind_metrics()]
        return [
            *_ledger_families(JobStats(), 0),
            *(family for families in kinds for family in families),
            _queue_family([]),
            _source_family({}),
        ]

    def _kind_metrics(self) -> list[KindMetrics]:
        return [kind.metrics.load() for kind in self._runtime.kinds if kind.metrics is not None]

    def collect(self) -> Iterable[Metric]:
        up: dict[str, int] = {}
        collected: list[Metric] = []
        try:
            with self._runtime.db.read_session() as session:
                stats = JobStatsRepository(session).read()
                backlog = JobRepository(session).outbox_backlog()
                kinds = [family for m in self._kind_metrics() for family in m.collect(session)]
        except Exception as exc:  # a scrape must not fail because the database did
            log.warning("metrics: cannot read the job ledger: %s", type(exc).__name__)
            up["database"] = 0
        else:
            up["database"] = 1
            collected += [*_ledger_families(stats, backlog), *kinds]
        try:
            queues = self._runtime.kinds.every_queue(self._runtime.settings)
            depths = [(queue, _llen(self._redis, queue)) for queue in queues]
        except redis.RedisError as exc:
            log.warning("metrics: cannot read the queue depths: %s", type(exc).__name__)
            up["redis"] = 0
        else:
            up["redis"] = 1
            collected.append(_queue_family(depths))
        return [*collected, _source_family(up)]


def _ledger_families(stats: JobStats, backlog: int) -> list[Metric]:
    jobs = GaugeMetricFamily(
        f"{PREFIX}_jobs", "Jobs in the ledger by kind and status.", labels=["kind", "status"]
    )
    for (kind, status), count in sorted(stats.current.items()):
        jobs.add_metric([kind, status], count)
    changes = CounterMetricFamily(
        f"{PREFIX}_job_status_changes",
        "Times a job entered each status (being accepted enters queued); never falls "
        "when finished jobs are pruned.",
        labels=["kind", "status"],
    )
    for (kind, status), count in sorted(stats.entered.items()):
        changes.add_metric([kind, status], count)
    retries = CounterMetricFamily(
        f"{PREFIX}_job_retries",
        "Automatic retries after a transient error (running back to queued).",
        labels=["kind"],
    )
    for kind, count in sorted(stats.retries.items()):
        retries.add_metric([kind], count)
    lapses = CounterMetricFamily(
        f"{PREFIX}_job_lease_lapses",
        "Running jobs taken over by a new attempt after their lease lapsed (a worker died "
        "or stalled).",
        labels=["kind"],
    )
    for kind, count in sorted(stats.lease_lapses.items()):
        lapses.add_metric([kind], count)
    durations = HistogramMetricFamily(
        f"{PREFIX}_job_duration_seconds",
        "First start to end of each job that started, recorded when it ends.",
        labels=["kind", "status"],
    )
    for (kind, status), histogram in sorted(stats.durations.items()):
        durations.add_metric([kind, status], _buckets(histogram), histogram.sum)
    delays = HistogramMetricFamily(
        f"{PREFIX}_job_start_delay_seconds",
        "From the moment a queued job could run (accepted, or its retry delay over) to "
        "its start: enqueue-to-start latency.",
        labels=["kind"],
    )
    for kind, histogram in sorted(stats.start_delays.items()):
        delays.add_metric([kind], _buckets(histogram), histogram.sum)
    outbox = GaugeMetricFamily(
        f"{PREFIX}_outbox_backlog", "Queued jobs never handed to the broker."
    )
    outbox.add_metric([], backlog)
    return [jobs, changes, retries, lapses, durations, delays, outbox]


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    # Prometheus spells bounds as floats ("1.0") and the last one "+Inf".
    return [
        ("+Inf" if math.isinf(bound) else repr(float(bound)), count)
        for bound, count in histogram.buckets
    ]


def _queue_family(depths: list[tuple[str, int]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        f"{PREFIX}_queue_depth", "Messages waiting in each Redis queue.", labels=["queue"]
    )
    for queue, depth in depths:
        family.add_metric([queue], depth)
    return family


def _source_family(up: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        f"{PREFIX}_metrics_source_up",
        "1 if the source could be read for this scrape, else 0.",
        labels=["source"],
    )
    for source, value in sorted(up.items()):
        family.add_metric([source], value)
    return family


def _llen(client: redis.Redis, queue: str) -> int:
    # Celery's Redis transport keeps a queue's messages in one list per priority step.
    with client.pipeline(transaction=False) as pipe:
        for name in broker_lists(queue):
            pipe.llen(name)
        depths = pipe.execute()
    return sum(int(depth) for depth in depths)


class LockRetryCollector:
    """This process's database lock retries (``write_transaction``'s own counter)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            f"{PREFIX}_db_lock_retries",
            "Write units this process re-ran because the database was locked.",
        )
        family.add_metric([], self._runtime.db.stats.lock_retries)
        return [family]


class ApiMetrics:
    """The registries of one app, and the counters the API itself keeps."""

    def __init__(self, runtime: Runtime, redis_client: redis.Redis) -> None:
        #: This process's own metrics: ``/metrics``.
        self.registry = CollectorRegistry(auto_describe=False)
        self.jobs_enqueued = Counter(
            f"{PREFIX}_jobs_enqueued",
            "Jobs this API process accepted (idempotent replays not counted).",
            labelnames=["kind"],
            registry=self.registry,
        )
        self.registry.register(LockRetryCollector(runtime))
        #: The shared state of the system, the same from every replica: ``/metrics/ledger``.
        self.ledger_registry = CollectorRegistry(auto_describe=False)
        self.ledger_registry.register(LedgerCollector(runtime, redis_client))
