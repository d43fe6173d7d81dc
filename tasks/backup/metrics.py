"""The backup kind's own metrics, read from the job ledger at scrape time.

``/metrics/ledger`` adds these to the generic job metrics (the kind's declaration names
:data:`BACKUP_METRICS`): backup jobs by mode and status, and when the newest successful
job of each mode finished. A failed restore drill is a failed job, so it shows here.
"""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import JobModel

PREFIX = "autoforge"
KIND = "backup"


class BackupMetrics:
    """``autoforge_backup_jobs`` and ``autoforge_backup_last_success_timestamp_seconds``."""

    def describe(self) -> list[Metric]:
        return _families([])

    def collect(self, session: Session) -> list[Metric]:
        return _families(backup_outcomes(session))


def backup_outcomes(session: Session) -> list[tuple[str, str, int, float | None]]:
    """(mode, status, number, newest finish as Unix time) of backup jobs in the ledger."""
    mode = func.coalesce(func.json_extract(JobModel.arguments, "$.mode"), "backup")
    newest = func.max((func.julianday(JobModel.finished_at) - 2440587.5) * 86400)
    rows = session.execute(
        select(mode, JobModel.status, func.count(), newest)
        .where(JobModel.kind == KIND)
        .group_by(mode, JobModel.status)
    )
    return [
        (str(m), str(status), int(count), float(last) if last is not None else None)
        for m, status, count, last in rows
    ]


def _families(outcomes: list[tuple[str, str, int, float | None]]) -> list[Metric]:
    jobs = GaugeMetricFamily(
        f"{PREFIX}_backup_jobs",
        "Backup jobs in the ledger by mode (backup, drill) and status; a failed drill is a "
        "failed job.",
        labels=["mode", "status"],
    )
    last_success = GaugeMetricFamily(
        f"{PREFIX}_backup_last_success_timestamp_seconds",
        "When the newest successful backup job of each mode finished (Unix time); a "
        "backup succeeds only once it is verified and stored.",
        labels=["mode"],
    )
    for mode, status, count, last in outcomes:
        jobs.add_metric([mode, status], count)
        if status == "succeeded" and last is not None:
            last_success.add_metric([mode], last)
    return [jobs, last_success]


BACKUP_METRICS = BackupMetrics()
