"""The replica-sync job: sync one replica, or each replica of this host, and record it.

**Lag.** A replica holds everything the primary had committed when its last successful
pull *started*. Its lag at any moment is therefore ``now - start of the last successful
pull`` (what ``/v1/replicas`` and ``autoforge_replica_lag_seconds`` show); each sync row
records ``lag_s``, the lag just before it ran (its start minus the previous success's).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.errors import PermanentError, TransientError
from core.settings import ReplicaConfig
from db.transaction import write_transaction
from jobs.context import JobContext, JobOutcome
from tasks.replica_sync.errors import SyncFailed
from tasks.replica_sync.kind import ReplicaSyncArguments
from tasks.replica_sync.repository import ReplicaSyncRecord, ReplicaSyncRepository
from tasks.replica_sync.routing import replicas_of
from tasks.replica_sync.sync import sync_replica


def run_replica_sync_job(context: JobContext) -> JobOutcome:
    arguments = ReplicaSyncArguments.model_validate(context.job.arguments)
    settings = context.settings
    replicas = replicas_of(arguments, settings)
    if arguments.replica is not None and not replicas:
        raise SyncFailed(f"replica {arguments.replica!r} is not declared in this host's REPLICAS")
    records: list[ReplicaSyncRecord] = []
    failures: list[Exception] = []
    for replica in replicas:
        if replica.host_or(settings.replica_host) != settings.replica_host:
            raise SyncFailed(
                f"replica {replica.name!r} is on host {replica.host!r}, not on this one "
                f"({settings.replica_host!r})"
            )
        try:
            records.append(sync_one(context, replica))
        except (TransientError, PermanentError) as exc:
            failures.append(exc)
    if failures:
        # Transient first: a retry syncs them all again, which is harmless.
        transient = [exc for exc in failures if isinstance(exc, TransientError)]
        raise (transient or failures)[0]

    # The history is kept as long as the ledger's (LEDGER_RETENTION_DAYS); each sync
    # trims a bounded batch of its replica's older rows as it records itself.
    before = datetime.now(UTC) - timedelta(days=settings.ledger_retention_days)

    def write(session: Session) -> None:
        repository = ReplicaSyncRepository(session)
        for record in records:
            repository.add(record)
            repository.prune(record.replica, before=before)

    return JobOutcome(result={"replicas": [_summary(r) for r in records]}, write_effects=write)


def sync_one(context: JobContext, replica: ReplicaConfig) -> ReplicaSyncRecord:
    """Sync ``replica`` and return its record (to write with the job's success); a failed
    sync is recorded at once, in its own write transaction, and raised."""
    host = context.settings.replica_host
    with context.db.read_session() as session:
        previous = ReplicaSyncRepository(session).latest(replica.name, status="succeeded")
    started = datetime.now(UTC)
    try:
        report = sync_replica(replica, timeout_s=context.settings.replica_sync_timeout_s)
    except (TransientError, PermanentError) as exc:
        failed = ReplicaSyncRecord(
            replica=replica.name,
            host=host,
            job_id=context.job.id,
            status="failed",
            started_at=started,
            duration_s=(datetime.now(UTC) - started).total_seconds(),
            error=str(exc),
        )
        write_transaction(context.db, lambda s: ReplicaSyncRepository(s).add(failed))
        raise
    began = datetime.fromtimestamp(report.started_at, UTC)
    lag = None
    if previous is not None:
        lag = (began - previous.started_at.astimezone(UTC)).total_seconds()
    return ReplicaSyncRecord(
        replica=replica.name,
        host=host,
        job_id=context.job.id,
        status="skipped" if report.skipped else "succeeded",
        started_at=began,
        duration_s=report.duration_s,
        changed=None if report.skipped else report.changed,
        frames=report.frames,
        revision=report.revision,
        lag_s=None if report.skipped else lag,
    )


def _summary(record: ReplicaSyncRecord) -> dict[str, Any]:
    return {
        "replica": record.replica,
        "status": record.status,
        "changed": record.changed,
        "frames": record.frames,
        "revision": record.revision,
        "duration_s": round(record.duration_s, 4),
        "lag_s": None if record.lag_s is None else round(record.lag_s, 3),
    }
