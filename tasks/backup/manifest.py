"""``BackupManifest``: the catalogue entry that describes one stored backup.

A manifest is stored next to its backup, as JSON, and written *after* the backup itself:
a backup exists in the catalogue exactly when its manifest does. It says what was backed
up (a description of the source without credentials, the schema revision, per-table row
counts and checksums), how it was stored (sizes, compression, encryption algorithm and
key fingerprint: never the key), where, and when it was last verified.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

Compression = Literal["zstd", "gzip", "none"]

#: ``20261105T030000Z-3fa91c``: sorts by time; the suffix tells apart two backups per second.
BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
MANIFEST_SUFFIX = ".manifest.json"


def new_backup_id(created_at: datetime) -> str:
    """A fresh id for a backup taken at ``created_at``."""
    return f"{created_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def is_backup_id(value: str) -> bool:
    """Whether ``value`` has the shape of a backup id (also keeps ids safe as file names)."""
    return BACKUP_ID.fullmatch(value) is not None


class EncryptionInfo(BaseModel):
    """How a backup is encrypted. The key itself is never recorded, only its fingerprint."""

    model_config = ConfigDict(frozen=True)

    algorithm: Literal["AES-256-GCM"] = "AES-256-GCM"
    #: The framing (see :mod:`tasks.backup.codec`), so a future format can be told apart.
    scheme: Literal["afbk-stream-v1"] = "afbk-stream-v1"
    #: Fingerprint of the key (:func:`tasks.backup.codec.key_id`), to name the key needed.
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    chunk_bytes: int = Field(gt=0)


class StoredObject(BaseModel):
    """Where the backup's bytes are."""

    model_config = ConfigDict(frozen=True)

    backend: Literal["local", "s3"]
    #: The object's name within the storage.
    key: str
    #: A human location: a path, or ``s3://bucket/prefix/key`` (never credentials).
    location: str


class BackupManifest(BaseModel):
    """One backup: what it holds, how and where it is stored, when it was verified."""

    # Unknown fields are ignored so that an older reader can still list newer manifests.
    model_config = ConfigDict(frozen=True, extra="ignore")

    format: Literal[1] = 1
    id: str = Field(pattern=BACKUP_ID.pattern)
    #: The instant the backup shows (the start of its consistent read), in UTC.
    created_at: AwareDatetime
    #: The database it came from, without credentials (``DatabaseTarget.describe()``).
    source: str
    method: Literal["snapshot", "export"]
    schema_revision: str | None
    table_counts: dict[str, int]
    table_checksums: dict[str, str]
    raw_size_bytes: int = Field(ge=0)
    stored_size_bytes: int = Field(ge=0)
    stored_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    compression: Compression
    encryption: EncryptionInfo | None
    stored: StoredObject
    duration_s: float = Field(ge=0)
    #: When a restore of it last passed verification (None: never, or the last one failed).
    verified_at: AwareDatetime | None
    #: Why the last verification failed, if it did.
    verification_error: str | None = None

    @field_validator("created_at", "verified_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    @property
    def verified(self) -> bool:
        return self.verified_at is not None

    @property
    def manifest_key(self) -> str:
        return manifest_key(self.id)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, data: str | bytes) -> BackupManifest:
        return cls.model_validate_json(data)


def manifest_key(backup_id: str) -> str:
    return f"{backup_id}{MANIFEST_SUFFIX}"


def data_key(backup_id: str, compression: Compression, encrypted: bool) -> str:
    """The stored object's name: ``<id>.db[.zst|.gz][.enc]``."""
    suffix = {"zstd": ".zst", "gzip": ".gz", "none": ""}[compression]
    return f"{backup_id}.db{suffix}{'.enc' if encrypted else ''}"
