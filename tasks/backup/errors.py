"""Errors of backups and restores, in the closed tree of :mod:`core.errors`.

Each is either transient (storage or the database is briefly unreachable or busy: the job
retries) or permanent (the backup is damaged, missing, or the request is unsafe: the job
fails at once and records why).
"""

from __future__ import annotations

from core.errors import ConfigurationError, NotFound, PermanentError, TransientError


class BackupCorrupted(PermanentError):
    """The backup is damaged, was altered, or cannot be decrypted with the configured key."""


class BackupKeyMismatch(BackupCorrupted):
    """The backup was encrypted with another key than the configured BACKUP_ENCRYPTION_KEY."""


class ManifestRejected(BackupCorrupted):
    """The backup's manifest is not signed with the configured backup key: it was rewritten,
    copied under another name, or written without the key."""


class BackupNotFound(NotFound):
    """No such backup in the catalogue."""


class RestoreRefused(PermanentError):
    """The restore was refused; nothing was changed."""


class SnapshotFailed(PermanentError):
    """The database could not be copied."""


class SnapshotBusy(TransientError):
    """The database stayed locked while the copy started; try again."""


class StorageUnavailable(TransientError):
    """The backup storage cannot be reached right now."""


class StorageRejected(PermanentError):
    """The backup storage refused the request (credentials, permissions or bucket)."""


class EncryptionKeyMissing(ConfigurationError):
    """The backup is encrypted but BACKUP_ENCRYPTION_KEY is not set."""


class DrillFailed(PermanentError):
    """The restore drill found a backup that does not restore to what its manifest says."""


__all__ = [
    "BackupCorrupted",
    "BackupKeyMismatch",
    "BackupNotFound",
    "DrillFailed",
    "EncryptionKeyMissing",
    "ManifestRejected",
    "RestoreRefused",
    "SnapshotBusy",
    "SnapshotFailed",
    "StorageRejected",
    "StorageUnavailable",
]
