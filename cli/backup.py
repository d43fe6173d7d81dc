"""``autoforge backup ...``: create, list, verify, restore and prune backups.

These run in this process against the configured database and backup storage (an
operator's tool: a restore must work when the API and workers are down). Long
operations draw progress bars on stderr when it is a terminal, so ``--json`` output on
stdout stays clean; sizes are printed for people (``12.3 MB``), and in bytes in JSON.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.filesize import decimal as human_size

from cli import inputs
from cli.errors import CommandFailed, ExitCode
from cli.options import command_settings

if TYPE_CHECKING:
    from rich.progress import TaskID

    from tasks.backup.manifest import BackupManifest
    from tasks.backup.storage import BackupStorage, UploadProgress

#: How often a download's progress is looked at (the bytes that reached the file).
DOWNLOAD_POLL_S = 0.1

backup_app = typer.Typer(
    help="Backups of the database: create, list, verify, restore, prune.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
BackupId = Annotated[str, typer.Argument(metavar="BACKUP_ID", callback=inputs.text)]


class StageProgress:
    """One progress bar per stage of a long operation, drawn on stderr.

    Called as ``progress(stage, done, total)`` (the backup service's callback); a stage
    whose length is not known is begun with :meth:`begin` and pulses until it completes.
    Starting a stage completes the one before it.
    """

    def __init__(self, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        self._progress = Progress(
            TextColumn("{task.description:<8}"),
            BarColumn(),
            TaskProgressColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._tasks: dict[str, TaskID] = {}
        self._current: str | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return not self._progress.disable

    def __enter__(self) -> StageProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self._current is not None:
            self.complete(self._current)
        self._progress.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if total <= 0:
            return
        task = self._stage(stage, total)
        self._progress.update(task, total=total, completed=min(max(done, 0), total))

    def begin(self, stage: str, total: int | None = None) -> None:
        """Start ``stage`` (``total=None``: its length is not known)."""
        self._stage(stage, total)

    def complete(self, stage: str) -> None:
        """Show ``stage`` as done."""
        task = self._tasks.get(stage)
        if task is not None:
            total = self._progress.tasks[task].total or 1
            self._progress.update(task, total=total, completed=total)

    def _stage(self, stage: str, total: int | None) -> TaskID:
        with self._lock:
            task = self._tasks.get(stage)
            if task is None:
                if self._current is not None:
                    self.complete(self._current)
                task = self._progress.add_task(stage, total=total)
                self._tasks[stage] = task
                self._current = stage
            return task


class WatchedStorage:
    """A backup storage whose downloads show on a :class:`StageProgress`.

    A download is followed by the bytes that have reached its target file; what comes
    after it (decrypting, decompressing, checking) shows as the ``check`` stage.
    """

    def __init__(
        self, storage: BackupStorage, progress: StageProgress, sizes: dict[str, int]
    ) -> None:
        self._storage, self._progress, self._sizes = storage, progress, sizes

    @property
    def backend(self) -> Literal["local", "s3"]:
        return self._storage.backend

    def describe(self) -> str:
        return self._storage.describe()

    def location(self, key: str) -> str:
        return self._storage.location(key)

    def put_file(self, key: str, source: Path, *, progress: UploadProgress | None = None) -> None:
        self._storage.put_file(key, source, progress=progress)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._storage.put_bytes(key, data)

    def get_bytes(self, key: str) -> bytes:
        return self._storage.get_bytes(key)

    def list_keys(self, suffix: str = "") -> list[str]:
        return self._storage.list_keys(suffix)

    def delete(self, key: str) -> None:
        self._storage.delete(key)

    def exists(self, key: str) -> bool:
        return self._storage.exists(key)

    def get_file(self, key: str, target: Path) -> None:
        total = self._sizes.get(key, 0)
        self._progress.begin("download", total or None)
        finished = threading.Event()

        def watch() -> None:
            while not finished.wait(DOWNLOAD_POLL_S):
                try:
                    arrived = target.stat().st_size
                except OSError:
                    continue  # not created yet
                self._progress("download", arrived, total)

        watcher = threading.Thread(target=watch, name="download-progress", daemon=True)
        watcher.start()
        try:
            self._storage.get_file(key, target)
        finally:
            finished.set()
            watcher.join()
        self._progress.complete("download")
        self._progress.begin("check")


def _progress(as_json: bool) -> StageProgress:
    return StageProgress(enabled=not as_json and sys.stderr.isatty())


def _watched(progress: StageProgress, settings: Any) -> BackupStorage:
    """The configured storage, its downloads shown on ``progress``."""
    from tasks.backup.service import list_backups
    from tasks.backup.storage import storage_for

    storage = storage_for(settings)
    sizes: dict[str, int] = {}
    if progress.enabled:
        # A download's total is its stored size, from the catalogue.
        sizes = {m.stored.key: m.stored_size_bytes for m in list_backups(settings, storage=storage)}
    return WatchedStorage(storage, progress, sizes)


def _line(manifest: BackupManifest) -> str:
    verified = manifest.verified_at.isoformat() if manifest.verified_at else "never"
    return (
        f"{manifest.id}  {manifest.created_at.isoformat()}  "
        f"{human_size(manifest.stored_size_bytes):>9}  rev {manifest.schema_revision}  "
        f"verified {verified}  {manifest.stored.location}"
    )


def _emit(data: Any, as_json: bool, human: str) -> None:
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else human)


@backup_app.command("create")
def create(as_json: JsonFlag = False) -> None:
    """Take a consistent online backup now, verify it and store it."""
    from db.database import Database
    from tasks.backup.job import manifest_summary
    from tasks.backup.service import create_backup

    settings = command_settings()
    db = Database(settings)
    try:
        with _progress(as_json) as progress:
            manifest = create_backup(settings, db, progress=progress)
    finally:
        db.dispose()
    _emit(manifest_summary(manifest), as_json, f"created {_line(manifest)}")


@backup_app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """The catalogue, newest first."""
    from tasks.backup.service import list_backups

    manifests = list_backups(command_settings())
    _emit(
        [json.loads(m.to_json()) for m in manifests],
        as_json,
        "\n".join(_line(m) for m in manifests) or "no backups",
    )


@backup_app.command("verify")
def verify(backup_id: BackupId, as_json: JsonFlag = False) -> None:
    """Restore BACKUP_ID into a temporary file and check it against its manifest."""
    from tasks.backup.service import verify_backup

    settings = command_settings()
    with _progress(as_json) as progress:
        storage = _watched(progress, settings)
        manifest = verify_backup(settings, backup_id, storage=storage)
    _emit(json.loads(manifest.to_json()), as_json, f"verified {_line(manifest)}")


@backup_app.command("adopt")
def adopt(backup_id: BackupId, as_json: JsonFlag = False) -> None:
    """Sign the manifest of BACKUP_ID, taken before manifests were signed, once its data
    checks out with BACKUP_ENCRYPTION_KEY."""
    from tasks.backup.service import adopt_backup

    manifest = adopt_backup(command_settings(), backup_id)
    _emit(json.loads(manifest.to_json()), as_json, f"adopted {_line(manifest)}")


@backup_app.command("restore")
def restore(
    backup_id: Annotated[
        str | None,
        typer.Argument(metavar="[BACKUP_ID]", help="The backup to restore.", callback=inputs.text),
    ] = None,
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
        raise CommandFailed("give a BACKUP_ID or --at TIMESTAMP (one of them)", ExitCode.USAGE)
    settings = command_settings()
    moment = at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at
    with _progress(as_json) as progress:
        storage = _watched(progress, settings)
        report = restore_backup(settings, backup_id, at=moment, to=to, force=force, storage=storage)
    data = {
        "backup_id": report.backup.id,
        "chosen": report.chosen,
        "target": str(report.target),
        "replaced": str(report.replaced) if report.replaced else None,
        "table_counts": report.database.table_counts,
    }
    human = (
        f"{report.chosen}\nrestored {human_size(report.backup.raw_size_bytes)} into {report.target}"
    )
    if report.replaced:
        human += f"\nthe previous file is kept as {report.replaced}"
    _emit(data, as_json, human)


@backup_app.command("prune")
def prune(
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Only list what would be deleted; delete nothing."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete the backups the retention policy (BACKUP_KEEP_*) does not keep."""
    from tasks.backup.retention import RetentionPolicy, plan_retention
    from tasks.backup.service import list_backups, prune_backups

    settings = command_settings()
    if dry_run:
        policy = RetentionPolicy(
            daily=settings.backup_keep_daily,
            weekly=settings.backup_keep_weekly,
            monthly=settings.backup_keep_monthly,
        )
        kept, deleted = plan_retention(list_backups(settings), policy)
        verb = "would delete"
    else:
        kept, deleted = prune_backups(settings)
        verb = "deleted"
    summary = f"kept {len(kept)}, {verb} {len(deleted)}"
    if dry_run:
        summary += " (dry run: nothing was deleted)"
    _emit(
        {"dry_run": dry_run, "kept": [m.id for m in kept], "deleted": [m.id for m in deleted]},
        as_json,
        summary
        + "".join(
            f"\n  {verb} {m.id}  {m.created_at.isoformat()}  {human_size(m.stored_size_bytes)}"
            for m in deleted
        ),
    )


@backup_app.command("new-key")
def new_key() -> None:
    """Print a new random BACKUP_ENCRYPTION_KEY (keep it safe: backups need it)."""
    typer.echo(base64.b64encode(os.urandom(32)).decode())
