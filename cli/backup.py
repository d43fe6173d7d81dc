"""``autoforge backup ...``: create, list, verify, restore and prune backups.

These run in this process against the configured database and backup storage (an
operator's tool: a restore must work when the API and workers are down). Long
operations draw a progress bar on stderr, so ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from core.settings import Settings

if TYPE_CHECKING:
    from tasks.backup.manifest import BackupManifest

backup_app = typer.Typer(
    help="Backups of the database: create, list, verify, restore, prune.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


class StageProgress:
    """One progress bar per stage of a long operation, on stderr."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._stage: str | None = None
        self._bar: Any = None
        self._done = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self._enabled or total <= 0:
            return
        if stage != self._stage:
            self.close()
            self._stage, self._done = stage, 0
            self._bar = typer.progressbar(length=total, label=f"{stage:<8}", file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(max(0, min(done, total) - self._done))
        self._done = min(done, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _progress(as_json: bool) -> StageProgress:
    return StageProgress(enabled=not as_json and sys.stderr.isatty())


def _line(manifest: BackupManifest) -> str:
    verified = manifest.verified_at.isoformat() if manifest.verified_at else "never"
    return (
        f"{manifest.id}  {manifest.created_at.isoformat()}  {manifest.stored_size_bytes:>12} B  "
        f"rev {manifest.schema_revision}  verified {verified}  {manifest.stored.location}"
    )


def _emit(data: Any, as_json: bool, human: str) -> None:
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else human)


def register(settings_factory: Any, run: Any) -> typer.Typer:
    """The ``backup`` command group, using the CLI's settings and error handling."""

    @backup_app.command("create")
    def create(as_json: JsonFlag = False) -> None:
        """Take a consistent online backup now, verify it and store it."""
        from db.database import Database
        from tasks.backup.job import manifest_summary
        from tasks.backup.service import create_backup

        def body() -> None:
            settings: Settings = settings_factory()
            db = Database(settings)
            bar = _progress(as_json)
            try:
                manifest = create_backup(settings, db, progress=bar)
            finally:
                bar.close()
                db.dispose()
            _emit(manifest_summary(manifest), as_json, f"created {_line(manifest)}")

        run(body)

    @backup_app.command("list")
    def list_(as_json: JsonFlag = False) -> None:
        """The catalogue, newest first."""
        from tasks.backup.service import list_backups

        def body() -> None:
            manifests = list_backups(settings_factory())
            _emit(
                [json.loads(m.to_json()) for m in manifests],
                as_json,
                "\n".join(_line(m) for m in manifests) or "no backups",
            )

        run(body)

    @backup_app.command("verify")
    def verify(backup_id: str, as_json: JsonFlag = False) -> None:
        """Restore BACKUP_ID into a temporary file and check it against its manifest."""
        from tasks.backup.service import verify_backup

        def body() -> None:
            manifest = verify_backup(settings_factory(), backup_id)
            _emit(json.loads(manifest.to_json()), as_json, f"verified {_line(manifest)}")

        run(body)

    @backup_app.command("adopt")
    def adopt(backup_id: str, as_json: JsonFlag = False) -> None:
        """Sign the manifest of BACKUP_ID, taken before manifests were signed, once its
        data checks out with BACKUP_ENCRYPTION_KEY."""
        from tasks.backup.service import adopt_backup

        def body() -> None:
            manifest = adopt_backup(settings_factory(), backup_id)
            _emit(json.loads(manifest.to_json()), as_json, f"adopted {_line(manifest)}")

        run(body)

    @backup_app.command("restore")
    def restore(
        backup_id: Annotated[str | None, typer.Argument(help="The backup to restore.")] = None,
        at: Annotated[
            datetime | None,
            typer.Option(
                "--at",
                help="Restore the newest verified backup taken at or before this time (UTC).",
                formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"],
            ),
        ] = None,
        to: Annotated[
            Path | None,
            typer.Option("--to", help="Write here instead of the configured database."),
        ] = None,
        force: Annotated[
            bool,
            typer.Option("--force", help="Replace the database workers and the API are using."),
        ] = False,
        as_json: JsonFlag = False,
    ) -> None:
        """Restore a backup (by id, or --at a time) onto the database or --to a file."""
        from tasks.backup.service import restore_backup

        if (backup_id is None) == (at is None):
            typer.echo("error: give a BACKUP_ID or --at TIMESTAMP (one of them)", err=True)
            raise typer.Exit(2)

        def body() -> None:
            moment = at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at
            report = restore_backup(settings_factory(), backup_id, at=moment, to=to, force=force)
            data = {
                "backup_id": report.backup.id,
                "chosen": report.chosen,
                "target": str(report.target),
                "replaced": str(report.replaced) if report.replaced else None,
                "table_counts": report.database.table_counts,
            }
            human = f"{report.chosen}\nrestored into {report.target}"
            if report.replaced:
                human += f"\nthe previous file is kept as {report.replaced}"
            _emit(data, as_json, human)

        run(body)

    @backup_app.command("prune")
    def prune(as_json: JsonFlag = False) -> None:
        """Delete the backups the retention policy (BACKUP_KEEP_*) does not keep."""
        from tasks.backup.service import prune_backups

        def body() -> None:
            kept, deleted = prune_backups(settings_factory())
            _emit(
                {"kept": [m.id for m in kept], "deleted": [m.id for m in deleted]},
                as_json,
                f"kept {len(kept)}, deleted {len(deleted)}"
                + "".join(f"\n  deleted {m.id}" for m in deleted),
            )

        run(body)

    @backup_app.command("new-key")
    def new_key() -> None:
        """Print a new random BACKUP_ENCRYPTION_KEY (keep it safe: backups need it)."""
        typer.echo(base64.b64encode(os.urandom(32)).decode())

    return backup_app
