"""``autoforge replica ...``: sync this host's replicas now, list every replica's state.

``sync`` runs here, on the host that holds the files (as the operator's tool it needs no
worker), with the same lock and deadline as a sync job, and records each sync in
``replica_syncs`` like a job does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from cli.errors import CommandFailed
from cli.options import command_settings

replica_app = typer.Typer(
    help="Local replicas of the primary (REPLICAS): sync them, list their state.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _record(db: Any, record: Any) -> None:
    from db.transaction import write_transaction
    from tasks.replica_sync.repository import ReplicaSyncRepository

    write_transaction(db, lambda session: ReplicaSyncRepository(session).add(record))


@replica_app.command("list")
def replica_list(as_json: JsonFlag = False) -> None:
    """Every declared replica: last successful sync, lag, last error, syncs by outcome."""
    from db.database import Database
    from tasks.replica_sync.status import replica_statuses

    settings = command_settings()
    db = Database(settings)
    try:
        with db.read_session() as session:
            statuses = replica_statuses(session, settings)
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps({"items": [s.as_dict() for s in statuses]}, indent=2))
        return
    if not statuses:
        typer.echo("no replicas are declared (REPLICAS)")
        return
    for s in statuses:
        lag = "never synced" if s.lag_s is None else f"lag {s.lag_s:.1f} s"
        line = f"{s.name}  {s.protocol}  host {s.host}  {lag}"
        if s.stale:
            line += "  STALE"
        if s.last_error:
            line += f"  last error: {s.last_error}"
        typer.echo(line)


@replica_app.command("sync")
def replica_sync(
    name: Annotated[
        str | None, typer.Argument(help="A replica; default: all of this host's.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Sync this host's replicas (or the one named) now."""
    from core.errors import AutoforgeError
    from db.database import Database
    from tasks.replica_sync.repository import ReplicaSyncRecord
    from tasks.replica_sync.sync import sync_replica

    settings = command_settings()
    local = settings.local_replicas()
    if name is not None:
        local = [r for r in local if r.name == name]
        if not local:
            raise CommandFailed(
                f"no replica {name!r} is declared on this host ({settings.replica_host})"
            )
    if not local:
        raise CommandFailed(f"no replica is declared on this host ({settings.replica_host})")
    db = Database(settings)
    results: list[dict[str, Any]] = []
    failed = False
    try:
        for replica in local:
            started = datetime.now(UTC)
            try:
                report = sync_replica(replica, timeout_s=settings.replica_sync_timeout_s)
                record = ReplicaSyncRecord(
                    replica=replica.name,
                    host=settings.replica_host,
                    job_id=None,
                    status="skipped" if report.skipped else "succeeded",
                    started_at=datetime.fromtimestamp(report.started_at, UTC),
                    duration_s=report.duration_s,
                    changed=None if report.skipped else report.changed,
                    frames=report.frames,
                    revision=report.revision,
                )
            except AutoforgeError as exc:
                failed = True
                record = ReplicaSyncRecord(
                    replica=replica.name,
                    host=settings.replica_host,
                    job_id=None,
                    status="failed",
                    started_at=started,
                    duration_s=(datetime.now(UTC) - started).total_seconds(),
                    error=exc.message,
                )
            _record(db, record)
            results.append(
                {
                    "replica": record.replica,
                    "status": record.status,
                    "changed": record.changed,
                    "duration_s": round(record.duration_s, 4),
                    "error": record.error,
                }
            )
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps({"items": results}, indent=2))
    else:
        for item in results:
            detail = item["error"] or ("changed" if item["changed"] else "up to date")
            typer.echo(f"{item['replica']}: {item['status']} ({detail}, {item['duration_s']} s)")
    if failed:
        raise CommandFailed("a replica failed to sync")
