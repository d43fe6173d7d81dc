"""The catalogue: the manifests in a storage, and the order in which objects come and go.

A backup is *in the catalogue* exactly when its manifest is stored. So the data object is
stored first and the manifest last (a crash in between leaves an object that nothing
lists, never a manifest that points at nothing), and removal goes the other way round:
manifest first, then data.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from pathlib import Path

from pydantic import ValidationError

from tasks.backup.errors import BackupCorrupted, BackupNotFound
from tasks.backup.manifest import MANIFEST_SUFFIX, BackupManifest, is_backup_id, manifest_key
from tasks.backup.storage import BackupStorage, UploadProgress

log = logging.getLogger("autoforge.backup.catalogue")


def publish(
    storage: BackupStorage,
    manifest: BackupManifest,
    data_file: Path,
    *,
    progress: UploadProgress | None = None,
) -> None:
    """Store the backup's data, then its manifest: only then does it appear in the catalogue."""
    storage.put_file(manifest.stored.key, data_file, progress=progress)
    try:
        storage.put_bytes(manifest.manifest_key, manifest.to_json().encode())
    except BaseException:
        # Without its manifest the data is invisible: do not leave it behind to take space.
        with suppress(Exception):
            storage.delete(manifest.stored.key)
        raise


def save(storage: BackupStorage, manifest: BackupManifest) -> None:
    """Replace a stored manifest (e.g. with a new verification time), atomically."""
    storage.put_bytes(manifest.manifest_key, manifest.to_json().encode())


def list_manifests(storage: BackupStorage) -> list[BackupManifest]:
    """Every backup in the catalogue, newest first.

    A manifest that cannot be read is left out with a warning rather than hiding all the
    others: the listing is what an operator needs most when something is wrong.
    """
    manifests: list[BackupManifest] = []
    for key in storage.list_keys(MANIFEST_SUFFIX):
        backup_id = key.removesuffix(MANIFEST_SUFFIX)
        if not is_backup_id(backup_id):
            continue
        try:
            manifests.append(BackupManifest.from_json(storage.get_bytes(key)))
        except BackupNotFound:
            continue  # removed while we listed
        except ValidationError as exc:
            log.warning("skipping unreadable manifest %s: %s", key, exc.error_count())
    manifests.sort(key=lambda m: (m.created_at, m.id), reverse=True)
    return manifests


def get_manifest(storage: BackupStorage, backup_id: str) -> BackupManifest:
    """The manifest of one backup; :class:`BackupNotFound` if there is none."""
    if not is_backup_id(backup_id):
        raise BackupNotFound(
            f"{backup_id!r} is not a backup id (they look like 20261105T030000Z-3fa91c)"
        )
    try:
        data = storage.get_bytes(manifest_key(backup_id))
    except BackupNotFound:
        raise BackupNotFound(f"no backup {backup_id} in {storage.describe()}") from None
    try:
        return BackupManifest.from_json(data)
    except ValidationError as exc:
        raise BackupCorrupted(f"the manifest of {backup_id} is unreadable: {exc}") from exc


def remove(storage: BackupStorage, manifest: BackupManifest) -> None:
    """Take a backup out of the catalogue, then delete its data."""
    storage.delete(manifest.manifest_key)
    storage.delete(manifest.stored.key)
