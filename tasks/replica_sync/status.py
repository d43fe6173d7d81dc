"""Each declared replica's state, read from ``replica_syncs``: what ``/v1/replicas``,
``autoforge replica list``, ``/readyz`` and the metrics show."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from core.settings import Settings
from db.database import Database
from tasks.replica_sync.repository import ReplicaSyncRepository


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """One replica: its last success, lag, last error and sync counts."""

    name: str
    host: str
    protocol: str
    interval_s: float
    last_success_at: str | None
    last_duration_s: float | None
    last_changed: bool | None
    last_frames: int | None
    last_revision: str | None
    #: Seconds since the start of the last successful pull (None: never synced).
    lag_s: float | None
    stale: bool
    last_error: str | None
    last_error_at: str | None
    syncs: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def replica_statuses(
    session: Session, settings: Settings, now: datetime | None = None
) -> list[ReplicaStatus]:
    """Every replica in ``REPLICAS``, in declaration order."""
    now = now or datetime.now(UTC)
    repository = ReplicaSyncRepository(session)
    counts = repository.counts()
    statuses = []
    for replica in settings.replicas:
        success = repository.latest(replica.name, status="succeeded")
        failure = repository.latest(replica.name, status="failed")
        lag = None
        if success is not None:
            lag = max(0.0, (now - success.started_at.astimezone(UTC)).total_seconds())
        error_newer = failure is not None and (
            success is None or failure.started_at > success.started_at
        )
        statuses.append(
            ReplicaStatus(
                name=replica.name,
                host=replica.host_or(settings.replica_host),
                protocol=replica.protocol,
                interval_s=replica.interval_s,
                last_success_at=None if success is None else _iso(success.started_at),
                last_duration_s=None if success is None else success.duration_s,
                last_changed=None if success is None else success.changed,
                last_frames=None if success is None else success.frames,
                last_revision=None if success is None else success.revision,
                lag_s=lag,
                stale=lag is None or lag > settings.replica_stale_after_s,
                last_error=failure.error if error_newer and failure is not None else None,
                last_error_at=_iso(failure.started_at) if error_newer and failure else None,
                syncs={
                    status: counts.get((replica.name, status), 0)
                    for status in ("succeeded", "skipped", "failed")
                },
            )
        )
    return statuses


def readiness(settings: Settings, db: Database) -> str | None:
    """What ``/readyz`` says of this host's replicas (``REPLICA_HOST``): ``"ok"``, or
    which are stale (last success older than ``REPLICA_STALE_AFTER_S``); ``None``
    without replicas here. The kind's readiness check."""
    if not settings.local_replicas():
        return None
    with db.read_session() as session:
        statuses = replica_statuses(session, settings)
    local = {replica.name for replica in settings.local_replicas()}
    stale = [s for s in statuses if s.name in local and s.stale]
    if not stale:
        return "ok"
    described = ", ".join(
        f"{s.name} (never synced)" if s.lag_s is None else f"{s.name} ({s.lag_s:.0f} s behind)"
        for s in stale
    )
    return (
        f"error: stale replica(s) on {settings.replica_host}: {described}; "
        f"threshold REPLICA_STALE_AFTER_S={settings.replica_stale_after_s:g}"
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
