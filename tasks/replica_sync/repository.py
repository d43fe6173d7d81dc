"""Persistence of replica syncs. Takes a session; the caller owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from tasks.replica_sync.models import ReplicaSyncModel


@dataclass(frozen=True, slots=True)
class ReplicaSyncRecord:
    """One recorded sync."""

    replica: str
    host: str
    job_id: str | None
    status: str
    started_at: datetime
    duration_s: float
    changed: bool | None = None
    frames: int | None = None
    revision: str | None = None
    lag_s: float | None = None
    error: str | None = None


def _record(row: ReplicaSyncModel) -> ReplicaSyncRecord:
    return ReplicaSyncRecord(
        replica=row.replica,
        host=row.host,
        job_id=row.job_id,
        status=row.status,
        started_at=row.started_at,
        duration_s=row.duration_s,
        changed=None if row.changed is None else bool(row.changed),
        frames=row.frames,
        revision=row.revision,
        lag_s=row.lag_s,
        error=row.error,
    )


class ReplicaSyncRepository:
    """The ``replica_syncs`` table."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, record: ReplicaSyncRecord) -> None:
        self.session.add(
            ReplicaSyncModel(
                replica=record.replica,
                host=record.host,
                job_id=record.job_id,
                status=record.status,
                started_at=record.started_at,
                duration_s=record.duration_s,
                changed=None if record.changed is None else int(record.changed),
                frames=record.frames,
                revision=record.revision,
                lag_s=record.lag_s,
                error=record.error,
            )
        )
        self.session.flush()

    def latest(self, replica: str, status: str | None = None) -> ReplicaSyncRecord | None:
        """The newest sync of ``replica`` (of ``status``, if given)."""
        query = select(ReplicaSyncModel).where(ReplicaSyncModel.replica == replica)
        if status is not None:
            query = query.where(ReplicaSyncModel.status == status)
        row = self.session.scalars(
            query.order_by(ReplicaSyncModel.started_at.desc(), ReplicaSyncModel.id.desc()).limit(1)
        ).first()
        return None if row is None else _record(row)

    def counts(self) -> dict[tuple[str, str], int]:
        """Syncs by (replica, status)."""
        rows = self.session.execute(
            select(ReplicaSyncModel.replica, ReplicaSyncModel.status, func.count()).group_by(
                ReplicaSyncModel.replica, ReplicaSyncModel.status
            )
        )
        return {(str(r), str(s)): int(n) for r, s, n in rows}

    def prune(self, replica: str, *, before: datetime, batch: int = 500) -> int:
        """Delete up to ``batch`` of ``replica``'s syncs that started before ``before``,
        oldest first, never its newest success (its lag is measured from it)."""
        newest_success = (
            select(ReplicaSyncModel.id)
            .where(ReplicaSyncModel.replica == replica, ReplicaSyncModel.status == "succeeded")
            .order_by(ReplicaSyncModel.started_at.desc(), ReplicaSyncModel.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        doomed = (
            select(ReplicaSyncModel.id)
            .where(
                ReplicaSyncModel.replica == replica,
                ReplicaSyncModel.started_at < before,
                ReplicaSyncModel.id != func.coalesce(newest_success, -1),
            )
            .order_by(ReplicaSyncModel.started_at)
            .limit(batch)
        )
        result = self.session.execute(
            delete(ReplicaSyncModel).where(ReplicaSyncModel.id.in_(doomed))
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def all(self, replica: str) -> list[ReplicaSyncRecord]:
        """Every sync of ``replica``, oldest first."""
        rows = self.session.scalars(
            select(ReplicaSyncModel)
            .where(ReplicaSyncModel.replica == replica)
            .order_by(ReplicaSyncModel.started_at, ReplicaSyncModel.id)
        )
        return [_record(row) for row in rows]
