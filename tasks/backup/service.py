"""Backups as plain functions: what the Celery task and the CLI call.

- :func:`create_backup`: copy the database (an online snapshot of a local file, or a
  logical export of a remote one) into a temporary file, verify it, compress and encrypt
  it, store it, and publish its manifest last;
- :func:`list_backups`, :func:`verify_backup`, :func:`prune_backups`;
- :func:`adopt_backup`: sign the manifest of a backup from before manifests were signed;
- :func:`restore_backup`: download, check the sha256, decrypt, decompress, verify the
  integrity and the contents against the manifest, and only then swap the file into place;
- :func:`restore_drill`: the same restore, of the newest backup, into a throwaway file.

Nothing is changed by a restore until the restored copy has passed every check: a
corrupted, tampered or wrongly-keyed backup, or one whose manifest is not signed with the
configured key (:mod:`tasks.backup.signing`), is refused and the target stays untouched.
Decoding stops at the size the manifest records, so a small object cannot fill the disk.
Temporary files live in scratch folders under ``<DATA_DIR>/tmp``
(:mod:`tasks.backup.workdir`; those left by a killed backup are removed before the next
one); the restored copy is written next to its target, so the final rename stays on one
file system and is atomic.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from core.settings import Settings
from db.database import Database
from tasks.backup import catalogue
from tasks.backup.codec import (
    CHUNK_BYTES,
    decode_file,
    decode_key,
    encode_file,
    key_id,
    sha256_file,
)
from tasks.backup.errors import (
    BackupCorrupted,
    BackupKeyMismatch,
    BackupNotFound,
    DrillFailed,
    EncryptionKeyMissing,
    ManifestRejected,
    RestoreRefused,
    SnapshotFailed,
)
from tasks.backup.manifest import (
    BackupManifest,
    EncryptionInfo,
    StoredObject,
    data_key,
    new_backup_id,
)
from tasks.backup.retention import RetentionPolicy, plan_retention
from tasks.backup.schema import Connection
from tasks.backup.signing import ManifestSigner
from tasks.backup.snapshot import export_remote, snapshot_local
from tasks.backup.storage import BackupStorage, storage_for
from tasks.backup.verify import DatabaseReport, differences, verify_database
from tasks.backup.workdir import remove_stale_workdirs, workdir

log = logging.getLogger("autoforge.backup")

#: Called with (stage, done, total): stages are snapshot (pages), export (tables),
#: verify (0 or 1 of 1), encode (bytes), upload (bytes).
BackupProgress = Callable[[str, int, int], None]

#: Rows per round trip of a logical export.
EXPORT_BATCH_ROWS = 1000

_SIDECARS = ("-wal", "-shm", "-journal")
#: Free space to leave on the file system a restore writes to, beyond the restored file.
_FREE_SPACE_MARGIN_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What :func:`restore_backup` did."""

    backup: BackupManifest
    target: Path
    #: The file that was at ``target`` before, kept beside it (None: there was none).
    replaced: Path | None
    #: Which backup was restored and why that one, for the user to read.
    chosen: str
    database: DatabaseReport


@dataclass(frozen=True, slots=True)
class DrillReport:
    """The outcome of :func:`restore_drill`."""

    backup_id: str
    backup_created_at: datetime
    ok: bool
    #: What did not match (empty when ``ok``).
    problems: list[str]
    #: Row counts of the restored copy (empty if it could not be read).
    table_counts: dict[str, int]
    manifest_counts: dict[str, int]
    checked_at: datetime
    duration_s: float
    manifest: BackupManifest = field(repr=False)

    def raise_for_failure(self) -> None:
        """:class:`DrillFailed` unless the drill passed (for the task: a failed drill fails)."""
        if not self.ok:
            raise DrillFailed(
                f"restore drill of {self.backup_id} failed: {'; '.join(self.problems)}"
            )


def encryption_key(settings: Settings) -> bytes | None:
    """The configured backup key (``BACKUP_ENCRYPTION_KEY``), or None."""
    secret = settings.backup_encryption_key
    return decode_key(secret.get_secret_value()) if secret is not None else None


def manifest_signer(settings: Settings) -> ManifestSigner:
    """Signs and checks manifests with the configured backup key (unsigned without one)."""
    return ManifestSigner(encryption_key(settings))


def _warn_unauthenticated(signer: ManifestSigner, what: str) -> None:
    if not signer.signs:
        log.warning(
            "%s: BACKUP_ENCRYPTION_KEY is not set, so backups are neither encrypted nor "
            "authenticated, and their manifests are trusted as stored",
            what,
        )


def create_backup(
    settings: Settings,
    db: Database,
    *,
    progress: BackupProgress | None = None,
    method: Literal["auto", "snapshot", "export"] = "auto",
    storage: BackupStorage | None = None,
) -> BackupManifest:
    """Take, verify, encode and store one backup of the configured database.

    ``method="auto"`` snapshots a local file and exports a remote database; ``"export"``
    also exports a local one (through ``db``'s engine), which exercises the remote path.
    """
    storage = storage if storage is not None else storage_for(settings)
    target = settings.database
    report_progress = progress or (lambda _stage, _done, _total: None)
    key = encryption_key(settings)
    signer = ManifestSigner(key)
    started = time.perf_counter()
    used: Literal["snapshot", "export"]
    remove_stale_workdirs(settings.data_dir)
    with workdir(settings.data_dir) as work:
        raw = work / "snapshot.db"
        if target.is_local and method != "export":
            assert target.path is not None
            snap = snapshot_local(
                target.path,
                raw,
                pages_per_step=settings.backup_step_pages,
                pause_s=settings.backup_step_pause_ms / 1000,
                progress=lambda done, total: report_progress("snapshot", done, total),
            )
            taken_at, used = snap.taken_at, "snapshot"
            log.info(
                "snapshot of %s: %d pages in %d steps (%d restarts), %.1f s",
                target.describe(),
                snap.page_count,
                snap.steps,
                snap.restarts,
                snap.duration_s,
            )
        else:
            if method == "snapshot":
                raise SnapshotFailed(f"{target.describe()} is not a local file: use an export")
            connection = db.engine.raw_connection()
            try:
                driver: Connection | None = connection.driver_connection
                assert driver is not None
                exported = export_remote(
                    driver,
                    raw,
                    batch_rows=EXPORT_BATCH_ROWS,
                    progress=lambda done, total: report_progress("export", done, total),
                )
            finally:
                connection.close()
            taken_at, used = exported.taken_at, "export"

        report_progress("verify", 0, 1)
        try:
            checked = verify_database(raw)
        except BackupCorrupted as exc:
            raise SnapshotFailed(
                f"the fresh copy of {target.describe()} fails verification ({exc.message}); the "
                "database itself may be damaged: check it with PRAGMA integrity_check"
            ) from exc
        verified_at = datetime.now(UTC)
        report_progress("verify", 1, 1)

        backup_id = new_backup_id(taken_at)
        stored_key = data_key(backup_id, settings.backup_compression, key is not None)
        stored = work / stored_key
        encoded = encode_file(
            raw,
            stored,
            compression=settings.backup_compression,
            key=key,
            progress=lambda done, total: report_progress("encode", done, total),
        )
        manifest = BackupManifest(
            id=backup_id,
            created_at=taken_at,
            source=target.describe(),
            method=used,
            schema_revision=checked.schema_revision,
            table_counts=checked.table_counts,
            table_checksums=checked.table_checksums,
            raw_size_bytes=encoded.raw_size,
            stored_size_bytes=encoded.stored_size,
            stored_sha256=encoded.stored_sha256,
            compression=settings.backup_compression,
            encryption=(
                EncryptionInfo(key_id=key_id(key), chunk_bytes=CHUNK_BYTES)
                if key is not None
                else None
            ),
            stored=StoredObject(
                backend=storage.backend, key=stored_key, location=storage.location(stored_key)
            ),
            duration_s=time.perf_counter() - started,
            verified_at=verified_at,
        )
        sent = 0

        def on_upload(chunk: int) -> None:
            nonlocal sent
            sent += chunk
            report_progress("upload", sent, encoded.stored_size)

        catalogue.publish(storage, manifest, stored, signer=signer, progress=on_upload)
    _warn_unauthenticated(signer, f"backup {manifest.id}")
    log.info(
        "backup %s of %s stored at %s (%d bytes, %s%s)",
        manifest.id,
        manifest.source,
        manifest.stored.location,
        manifest.stored_size_bytes,
        manifest.compression,
        ", encrypted" if manifest.encryption else "",
    )
    return manifest


def list_backups(
    settings: Settings, *, storage: BackupStorage | None = None
) -> list[BackupManifest]:
    """The catalogue, newest first (without manifests that fail their signature check)."""
    return catalogue.list_manifests(
        storage if storage is not None else storage_for(settings),
        signer=manifest_signer(settings),
    )


def verify_backup(
    settings: Settings, backup_id: str, *, storage: BackupStorage | None = None
) -> BackupManifest:
    """Restore a stored backup into a temporary file and check it against its manifest.

    Records the outcome in the manifest (``verified_at``, or ``verification_error``) and
    returns the updated manifest; raises :class:`BackupCorrupted` if the check fails.
    """
    storage = storage if storage is not None else storage_for(settings)
    signer = manifest_signer(settings)
    manifest = catalogue.get_manifest(storage, backup_id, signer=signer)
    updated, _report, error = _check_stored(settings, storage, manifest, signer)
    if error is not None:
        raise error
    return updated


def adopt_backup(
    settings: Settings, backup_id: str, *, storage: BackupStorage | None = None
) -> BackupManifest:
    """Sign the unsigned manifest of a backup taken before manifests were signed.

    Only for a backup encrypted with the configured key: decryption authenticates every
    chunk, so its data cannot have been forged without the key. The whole restore check
    (sha256, decryption, integrity, row counts and checksums against the manifest) must
    pass before the manifest is signed and recorded as verified; nothing is saved
    otherwise. Its creation time and source are taken as stored: adopting is the
    operator's decision, made for backups they know to be theirs.
    """
    key = encryption_key(settings)
    if key is None:
        raise EncryptionKeyMissing(
            "adopting a backup signs its manifest with BACKUP_ENCRYPTION_KEY: set it"
        )
    storage = storage if storage is not None else storage_for(settings)
    signer = ManifestSigner(key)
    manifest = catalogue.get_manifest(storage, backup_id, signer=signer, accept_unsigned=True)
    if manifest.encryption is None or manifest.encryption.key_id != signer.key_id:
        raise ManifestRejected(
            f"backup {backup_id} is not encrypted with the configured key, so its data cannot "
            "be authenticated: its manifest is not adopted"
        )
    with workdir(settings.data_dir) as work:
        stored = _download(storage, manifest, work)
        _decode_and_check(manifest, stored, work / "restored.db", key)
    adopted = manifest.model_copy(
        update={"verified_at": datetime.now(UTC), "verification_error": None}
    )
    catalogue.save(storage, adopted, signer=signer)
    log.warning(
        "adopted backup %s: its data checked out with the key and its manifest is now "
        "signed; its creation time (%s) and source were taken as stored",
        backup_id,
        adopted.created_at.isoformat(),
    )
    return adopted


def restore_backup(
    settings: Settings,
    backup_id: str | None = None,
    *,
    at: datetime | None = None,
    to: Path | None = None,
    force: bool = False,
    in_use: bool = False,
    storage: BackupStorage | None = None,
) -> RestoreReport:
    """Restore a backup (by id, or the newest verified one taken at or before ``at``).

    ``to=None`` restores onto the configured (local) database: that is the live file that
    workers and the API hold open, so it needs ``force=True``, and so does any target the
    caller knows to be ``in_use``. The restored copy is verified before it replaces
    anything; the replaced file is kept beside the target as ``<name>.replaced-<time>``
    (with its ``-wal``, if it had one).
    """
    if (backup_id is None) == (at is None):
        raise ValueError("restore needs a backup id or a time (at=), not both")
    storage = storage if storage is not None else storage_for(settings)
    signer = manifest_signer(settings)
    target, live = _restore_target(settings, to)
    if (live or in_use) and not force:
        raise RestoreRefused(_refusal(target, live=live))

    if backup_id is not None:
        manifest = catalogue.get_manifest(storage, backup_id, signer=signer)
        chosen = f"backup {manifest.id}, taken at {manifest.created_at.isoformat()}"
    else:
        assert at is not None
        listing = catalogue.read_catalogue(storage, signer=signer)
        try:
            manifest = pick_backup(listing.manifests, at)
        except BackupNotFound:
            # Backups exist, but under another key: say so rather than "no backup".
            wrong_key = listing.wrong_key()
            if wrong_key is not None:
                raise wrong_key from None
            raise
        chosen = (
            f"backup {manifest.id}, taken at {manifest.created_at.isoformat()}: the newest "
            f"verified backup at or before {_utc(at).isoformat()}"
        )
    log.info("restoring %s onto %s", chosen, target)
    _warn_unauthenticated(signer, f"restoring {manifest.id}")
    key = _key_for(settings, manifest)

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.restore-{manifest.id}.partial")
    with workdir(settings.data_dir) as work:
        try:
            _remove_database_files(partial)
            stored = _download(storage, manifest, work)
            report = _decode_and_check(manifest, stored, partial, key)
            replaced = _swap_into_place(partial, target)
        finally:
            _remove_database_files(partial)
    log.info(
        "restored %s onto %s%s",
        manifest.id,
        target,
        f" (previous file kept as {replaced})" if replaced else "",
    )
    return RestoreReport(manifest, target, replaced, chosen, report)


def pick_backup(manifests: list[BackupManifest], at: datetime) -> BackupManifest:
    """The newest verified backup taken at or before ``at`` (naive times are UTC)."""
    moment = _utc(at)
    candidates = [m for m in manifests if m.verified and m.created_at <= moment]
    if not candidates:
        verified = sorted(m.created_at for m in manifests if m.verified)
        hint = f"; the oldest verified backup is from {verified[0].isoformat()}" if verified else ""
        raise BackupNotFound(
            f"no verified backup was taken at or before {moment.isoformat()}{hint}"
        )
    return max(candidates, key=lambda m: (m.created_at, m.id))


def prune_backups(
    settings: Settings, *, storage: BackupStorage | None = None
) -> tuple[list[BackupManifest], list[BackupManifest]]:
    """Apply the retention policy (``BACKUP_KEEP_*``): returns (kept, deleted), newest first."""
    storage = storage if storage is not None else storage_for(settings)
    policy = RetentionPolicy(
        daily=settings.backup_keep_daily,
        weekly=settings.backup_keep_weekly,
        monthly=settings.backup_keep_monthly,
    )
    # Only manifests that pass their signature check: forged ones cannot crowd real
    # backups out of their retention slots, and are never deleted on their word either.
    keep, delete = plan_retention(
        catalogue.list_manifests(storage, signer=manifest_signer(settings)), policy
    )
    for manifest in delete:
        catalogue.remove(storage, manifest)
        log.info("pruned backup %s (taken at %s)", manifest.id, manifest.created_at.isoformat())
    return keep, delete


def restore_drill(settings: Settings, *, storage: BackupStorage | None = None) -> DrillReport:
    """Restore the newest backup into a temporary file, verify it, compare it with its manifest.

    Returns the report whether or not the drill passed (the caller records it, then calls
    :meth:`DrillReport.raise_for_failure`); the outcome is also recorded in the manifest.
    Raises :class:`BackupNotFound` if there is no backup at all.
    """
    storage = storage if storage is not None else storage_for(settings)
    signer = manifest_signer(settings)
    listing = catalogue.read_catalogue(storage, signer=signer)
    if not listing.manifests:
        wrong_key = listing.wrong_key()
        if wrong_key is not None:
            raise wrong_key
        raise BackupNotFound(f"no backups in {storage.describe()} to drill")
    manifest = listing.manifests[0]
    _warn_unauthenticated(signer, f"drilling {manifest.id}")
    started = time.perf_counter()
    updated, report, error = _check_stored(settings, storage, manifest, signer)
    return DrillReport(
        backup_id=manifest.id,
        backup_created_at=manifest.created_at,
        ok=error is None,
        problems=[] if error is None else [error.message],
        table_counts=report.table_counts if report is not None else {},
        manifest_counts=dict(manifest.table_counts),
        checked_at=datetime.now(UTC),
        duration_s=time.perf_counter() - started,
        manifest=updated,
    )


def _check_stored(
    settings: Settings, storage: BackupStorage, manifest: BackupManifest, signer: ManifestSigner
) -> tuple[BackupManifest, DatabaseReport | None, BackupCorrupted | None]:
    """Restore into a throwaway file and compare; record the outcome in the manifest.

    A missing or mismatched key says nothing about the backup itself: it raises, and the
    manifest is left alone.
    """
    key = _key_for(settings, manifest)
    with workdir(settings.data_dir) as work:
        try:
            stored = _download(storage, manifest, work)
            report = _decode_and_check(manifest, stored, work / "restored.db", key)
        except BackupKeyMismatch:
            raise
        except BackupCorrupted as exc:
            failed = manifest.model_copy(
                update={"verified_at": None, "verification_error": exc.message}
            )
            _record(storage, failed, signer)
            log.error("backup %s failed verification: %s", manifest.id, exc.message)
            return failed, None, exc
    passed = manifest.model_copy(
        update={"verified_at": datetime.now(UTC), "verification_error": None}
    )
    _record(storage, passed, signer)
    return passed, report, None


def _record(storage: BackupStorage, manifest: BackupManifest, signer: ManifestSigner) -> None:
    """Save a verification outcome, unless a prune removed the backup meanwhile: saving
    would bring its manifest back with no data behind it."""
    if storage.exists(manifest.manifest_key):
        catalogue.save(storage, manifest, signer=signer)


def _download(storage: BackupStorage, manifest: BackupManifest, work: Path) -> Path:
    """Fetch the stored object and check it is byte for byte what was stored."""
    stored = work / manifest.stored.key
    storage.get_file(manifest.stored.key, stored)
    size = stored.stat().st_size
    digest = sha256_file(stored)
    if size != manifest.stored_size_bytes or digest != manifest.stored_sha256:
        raise BackupCorrupted(
            f"backup {manifest.id} was altered or damaged in storage: its sha256 is "
            f"{digest[:16]}... ({size} bytes), the manifest says {manifest.stored_sha256[:16]}... "
            f"({manifest.stored_size_bytes} bytes)"
        )
    return stored


def _decode_and_check(
    manifest: BackupManifest, stored: Path, raw: Path, key: bytes | None
) -> DatabaseReport:
    """Decode into ``raw`` and prove it holds exactly what the manifest recorded.

    Decoding stops as soon as it would write more than the manifest's raw size, and does
    not start unless that size fits on the file system with room to spare.
    """
    _check_free_space(manifest, raw.parent)
    decode_file(
        stored,
        raw,
        compression=manifest.compression,
        encrypted=manifest.encryption is not None,
        key=key,
        expected_raw_size=manifest.raw_size_bytes,
    )
    report = verify_database(raw)
    problems = differences(report, manifest.table_counts, manifest.table_checksums)
    if report.schema_revision != manifest.schema_revision:
        problems.append(
            f"schema revision {report.schema_revision}, expected {manifest.schema_revision}"
        )
    if problems:
        raise BackupCorrupted(
            f"backup {manifest.id} does not restore to what its manifest says: "
            + "; ".join(problems)
        )
    _drop_sidecars(raw)
    return report


def _check_free_space(manifest: BackupManifest, folder: Path) -> None:
    free = shutil.disk_usage(folder).free
    if manifest.raw_size_bytes + _FREE_SPACE_MARGIN_BYTES > free:
        raise RestoreRefused(
            f"backup {manifest.id} restores to {manifest.raw_size_bytes} bytes, but {folder} "
            f"has only {free} bytes free (and {_FREE_SPACE_MARGIN_BYTES} must stay free): "
            "free some space first"
        )


def _key_for(settings: Settings, manifest: BackupManifest) -> bytes | None:
    """The key to decrypt ``manifest``'s backup, checked before anything is downloaded."""
    if manifest.encryption is None:
        return None
    key = encryption_key(settings)
    if key is None:
        raise EncryptionKeyMissing(
            f"backup {manifest.id} is encrypted (key {manifest.encryption.key_id}); set "
            "BACKUP_ENCRYPTION_KEY to that key"
        )
    if key_id(key) != manifest.encryption.key_id:
        raise BackupKeyMismatch(
            f"backup {manifest.id} was encrypted with key {manifest.encryption.key_id}, but "
            f"the configured BACKUP_ENCRYPTION_KEY is key {key_id(key)}: wrong key"
        )
    return key


def _restore_target(settings: Settings, to: Path | None) -> tuple[Path, bool]:
    """The file to restore onto, and whether it is the live database."""
    database = settings.database
    live = database.path.resolve() if database.is_local and database.path else None
    if to is None:
        if live is None:
            raise RestoreRefused(
                f"the configured database is {database.describe()}: a restore cannot replace "
                "a remote database; restore into a file (to=PATH) and import that"
            )
        return live, True
    target = to.resolve()
    if target.is_dir():
        raise RestoreRefused(f"{target} is a directory; name the database file to write")
    return target, target == live


def _refusal(target: Path, *, live: bool) -> str:
    what = (
        "the live database: workers and the API keep connections open to it"
        if live
        else "in use by running processes"
    )
    return (
        f"refusing to restore onto {target} without force: it is {what}. Replacing the file "
        "under open connections does not move them: they keep writing to the old file "
        "(renamed aside), so every write they make after the swap is lost, and running jobs "
        "go on with the old data. Stop the workers and the API, then restore with force; the "
        "replaced file is kept beside the database."
    )


def _swap_into_place(partial: Path, target: Path) -> Path | None:
    """Atomically make ``partial`` the ``target``; keep the old file (and its WAL) beside it.

    The old file gets a second name by a hard link first, so ``target`` always names a
    complete database; its ``-wal``/``-shm``/``-journal`` move along with it, since a
    stale WAL left at ``target`` would be replayed into the restored file.
    """
    replaced: Path | None = None
    if target.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        replaced = target.with_name(f"{target.name}.replaced-{stamp}")
        try:
            os.link(target, replaced)
        except OSError:  # a file system without hard links
            shutil.copy2(target, replaced)
        for suffix in _SIDECARS:
            side = target.with_name(target.name + suffix)
            if side.exists():
                os.replace(side, replaced.with_name(replaced.name + suffix))
        shutil.copymode(target, partial)
    os.replace(partial, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself must survive a crash
    finally:
        os.close(fd)
    return replaced


def _drop_sidecars(path: Path) -> None:
    """Remove a checked copy's empty ``-wal``/``-shm``: they must not outlive its rename."""
    for suffix in _SIDECARS:
        side = path.with_name(path.name + suffix)
        if side.exists():
            if suffix == "-wal" and side.stat().st_size > 0:
                raise BackupCorrupted(f"{path.name} was changed while being verified")
            side.unlink()


def _remove_database_files(path: Path) -> None:
    for candidate in (path, *(path.with_name(path.name + s) for s in _SIDECARS)):
        candidate.unlink(missing_ok=True)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
