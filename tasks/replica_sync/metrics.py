"""The replica-sync kind's metrics, read from ``replica_syncs`` at scrape time.

A scrape finds the replicas in the rows (those that have synced at least once), so the
API needs no ``REPLICAS`` of its own to report them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.orm import Session

from tasks.replica_sync.repository import ReplicaSyncRecord, ReplicaSyncRepository

PREFIX = "autoforge"


class ReplicaMetrics:
    """Syncs by replica and status; each replica's last success, lag and duration."""

    def describe(self) -> list[Metric]:
        return _families({}, {}, datetime.now(UTC))

    def collect(self, session: Session) -> list[Metric]:
        repository = ReplicaSyncRepository(session)
        counts = repository.counts()
        names = sorted({replica for replica, _ in counts})
        successes = {name: repository.latest(name, status="succeeded") for name in names}
        return _families(counts, successes, datetime.now(UTC))


def _families(
    counts: dict[tuple[str, str], int],
    successes: dict[str, ReplicaSyncRecord | None],
    now: datetime,
) -> list[Metric]:
    syncs = GaugeMetricFamily(
        f"{PREFIX}_replica_syncs",
        "Replica syncs recorded, by replica and status (succeeded; skipped: another sync "
        "of the replica was running; failed).",
        labels=["replica", "status"],
    )
    last = GaugeMetricFamily(
        f"{PREFIX}_replica_last_success_timestamp_seconds",
        "When the last successful pull of each replica started (Unix time).",
        labels=["replica"],
    )
    lag = GaugeMetricFamily(
        f"{PREFIX}_replica_lag_seconds",
        "Seconds since the last successful pull of each replica started: the replica has "
        "everything the primary committed before then.",
        labels=["replica"],
    )
    duration = GaugeMetricFamily(
        f"{PREFIX}_replica_last_sync_duration_seconds",
        "How long the last successful sync of each replica took.",
        labels=["replica"],
    )
    for (replica, status), number in sorted(counts.items()):
        syncs.add_metric([replica, status], number)
    for replica, success in sorted(successes.items()):
        if success is None:
            continue
        began = success.started_at.astimezone(UTC)
        last.add_metric([replica], began.timestamp())
        lag.add_metric([replica], max(0.0, (now - began).total_seconds()))
        duration.add_metric([replica], success.duration_s)
    return [syncs, last, lag, duration]


REPLICA_METRICS = ReplicaMetrics()
