"""The catalogue: the manifests in a storage, and the order in which objects come and go.

A backup is *in the catalogue* exactly when its manifest is stored. So the data object is
stored first and the manifest last (a crash in between leaves an object that nothing
lists, never a manifest that points at nothing), and removal goes the other way round:
manifest first, then data.

Manifests are written and read through a :class:`~tasks.backup.signing.ManifestSigner`:
with a key configured, a manifest that is not signed with it is left out of listings and
refused by :func:`get_manifest`, like a tampered backup.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from tasks.backup.errors import BackupCorrupted, BackupKeyMismatch, BackupNotFound
from tasks.backup.manifest import MANIFEST_SUFFIX, BackupManifest, is_backup_id, manifest_key
from tasks.backup.signing import ManifestSigner
from tasks.backup.storage import BackupStorage, UploadProgress

log = logging.getLogger("autoforge.backup.catalogue")


def publish(
    storage: BackupStorage,
    manifest: BackupManifest,
    data_file: Path,
    *,
    signer: ManifestSigner,
    progress: UploadProgress | None = None,
) -> None:
    """Store the backup's data, then its manifest: only then does it appear in the catalogue."""
    storage.put_file(manifest.stored.key, data_file, progress=progress)
    try:
        storage.put_bytes(manifest.manifest_key, signer.dump(manifest))
    except BaseException:
        # Without its manifest the data is invisible: do not leave it behind to take space.
        with suppress(Exception):
            storage.delete(manifest.stored.key)
        raise


def save(storage: BackupStorage, manifest: BackupManifest, *, signer: ManifestSigner) -> None:
    """Replace a stored manifest (e.g. with a new verification time), atomically."""
    storage.put_bytes(manifest.manifest_key, signer.dump(manifest))


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The manifests that passed their checks, and why the others were left out."""

    #: Newest first.
    manifests: list[BackupManifest]
    #: (backup id, why), newest first.
    rejected: list[tuple[str, BackupCorrupted]]

    def wrong_key(self) -> BackupKeyMismatch | None:
        """Why the newest manifest signed with another key was left out, if one was."""
        for _backup_id, error in self.rejected:
            if isinstance(error, BackupKeyMismatch):
                return error
        return None


def list_manifests(storage: BackupStorage, *, signer: ManifestSigner) -> list[BackupManifest]:
    """Every backup in the catalogue, newest first (see :func:`read_catalogue`)."""
    return read_catalogue(storage, signer=signer).manifests


def read_catalogue(storage: BackupStorage, *, signer: ManifestSigner) -> Catalogue:
    """Every backup in the catalogue, newest first, and the manifests left out.

    A manifest that cannot be read, or fails its signature check, is left out with a
    warning rather than hiding all the others: the listing is what an operator needs most
    when something is wrong. Left out, it is also never chosen by a restore ``--at``, a
    drill or retention (which would otherwise trust its dates).
    """
    manifests: list[BackupManifest] = []
    rejected: list[tuple[str, BackupCorrupted]] = []
    for key in storage.list_keys(MANIFEST_SUFFIX):
        backup_id = key.removesuffix(MANIFEST_SUFFIX)
        if not is_backup_id(backup_id):
            continue
        try:
            manifests.append(signer.load(storage.get_bytes(key), backup_id))
        except BackupNotFound:
            continue  # removed while we listed
        except BackupCorrupted as exc:
            log.warning("skipping manifest %s: %s", key, exc.message)
            rejected.append((backup_id, exc))
    manifests.sort(key=lambda m: (m.created_at, m.id), reverse=True)
    rejected.sort(key=lambda item: item[0], reverse=True)  # ids sort by time
    return Catalogue(manifests, rejected)


def get_manifest(
    storage: BackupStorage,
    backup_id: str,
    *,
    signer: ManifestSigner,
    accept_unsigned: bool = False,
) -> BackupManifest:
    """The manifest of one backup; :class:`BackupNotFound` if there is none.

    ``accept_unsigned``: see :meth:`~tasks.backup.signing.ManifestSigner.load`.
    """
    if not is_backup_id(backup_id):
        raise BackupNotFound(
            f"{backup_id!r} is not a backup id (they look like 20261105T030000Z-3fa91c)"
        )
    try:
        data = storage.get_bytes(manifest_key(backup_id))
    except BackupNotFound:
        raise BackupNotFound(f"no backup {backup_id} in {storage.describe()}") from None
    return signer.load(data, backup_id, accept_unsigned=accept_unsigned)


def remove(storage: BackupStorage, manifest: BackupManifest) -> None:
    """Take a backup out of the catalogue, then delete its data."""
    storage.delete(manifest.manifest_key)
    storage.delete(manifest.stored.key)
