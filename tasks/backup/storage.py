"""Where backups are kept: a local folder or S3-compatible object storage.

Both store flat, named objects (``<id>.db.zst.enc``, ``<id>.manifest.json``) and make each
write atomic, so that a reader sees an object either whole or not at all:

- :class:`LocalStorage` writes to a hidden temporary name in the same folder, syncs it and
  ``os.replace``-s it into place (a rename within one file system is atomic);
- :class:`S3Storage` relies on the object store: a single PUT, and the completion of a
  multipart upload, make an object appear whole (an unfinished multipart upload is never
  visible, and boto3 aborts it on failure). Large files go up in parts
  (``BACKUP_MULTIPART_THRESHOLD_BYTES``), so a 1 GB backup is not one 1 GB request.

Publishing order (data first, manifest last) is the catalogue's job
(:mod:`tasks.backup.catalogue`). Credentials stay inside the boto3 client: they are never
part of a location, a description, an error or a log line.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import boto3
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from core.settings import Settings
from tasks.backup.errors import BackupNotFound, StorageRejected, StorageUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Called during an upload with the number of bytes sent since the last call.
UploadProgress = Callable[[int], None]

# Object names are flat and tame: no path separators, no leading dot, no "..".
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# S3 error codes that retrying may cure.
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeTooSkewed",
    }
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_PERMANENT_HINTS = ("AccessDenied", "NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch")


class BackupStorage(Protocol):
    """A place that keeps named objects, each written atomically."""

    @property
    def backend(self) -> Literal["local", "s3"]: ...

    def describe(self) -> str:
        """Where this storage is, safe to print."""
        ...

    def location(self, key: str) -> str:
        """Where one object is, safe to print (a path or an ``s3://`` URL)."""
        ...

    def put_file(self, key: str, source: Path, *, progress: UploadProgress | None = None) -> None:
        """Store a copy of ``source`` under ``key``, atomically (whole or not at all)."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, atomically."""
        ...

    def get_file(self, key: str, target: Path) -> None:
        """Copy the object into ``target``; :class:`BackupNotFound` if there is none."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; :class:`BackupNotFound` if there is none."""
        ...

    def list_keys(self, suffix: str = "") -> list[str]:
        """The names of the stored objects that end with ``suffix``, sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing one is not an error."""
        ...

    def exists(self, key: str) -> bool: ...


def check_key(key: str) -> str:
    """``key`` if it is a plain object name; ``ValueError`` otherwise (no path tricks)."""
    if not _KEY.fullmatch(key) or ".." in key:
        raise ValueError(f"invalid object name {key!r}")
    return key


class LocalStorage:
    """Backups in a folder of the local file system (the default: ``./data/backups``)."""

    backend: Literal["local", "s3"] = "local"

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.folder)!r})"

    def describe(self) -> str:
        return f"folder {self.folder}"

    def location(self, key: str) -> str:
        return str(self.folder / check_key(key))

    def put_file(self, key: str, source: Path, *, progress: UploadProgress | None = None) -> None:
        with self._atomic(key) as partial, _local_errors(f"storing {key}"):
            shutil.copyfile(source, partial)
        if progress is not None:
            progress(source.stat().st_size)

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._atomic(key) as partial, _local_errors(f"storing {key}"):
            partial.write_bytes(data)

    def get_file(self, key: str, target: Path) -> None:
        path = self._existing(key)
        with _local_errors(f"reading {key}"):
            shutil.copyfile(path, target)

    def get_bytes(self, key: str) -> bytes:
        path = self._existing(key)
        with _local_errors(f"reading {key}"):
            return path.read_bytes()

    def list_keys(self, suffix: str = "") -> list[str]:
        if not self.folder.is_dir():
            return []
        with _local_errors(f"listing {self.folder}"):
            return sorted(
                p.name
                for p in self.folder.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.name.endswith(suffix)
            )

    def delete(self, key: str) -> None:
        with _local_errors(f"deleting {key}"):
            (self.folder / check_key(key)).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return (self.folder / check_key(key)).is_file()

    def _existing(self, key: str) -> Path:
        path = self.folder / check_key(key)
        if not path.is_file():
            raise BackupNotFound(f"{key} is not in {self.describe()}")
        return path

    @contextmanager
    def _atomic(self, key: str) -> Iterator[Path]:
        """A hidden temporary file that becomes ``key`` only if the block succeeds."""
        final = self.folder / check_key(key)
        with _local_errors(f"storing {key}"):
            self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f".{key}.{uuid.uuid4().hex}.partial"
        try:
            yield partial
            with _local_errors(f"storing {key}"):
                _fsync_file(partial)
                os.replace(partial, final)
                _fsync_dir(self.folder)
        finally:
            partial.unlink(missing_ok=True)


class S3Storage:
    """Backups in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO), under a prefix."""

    backend: Literal["local", "s3"] = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: S3Client,
        *,
        multipart_threshold: int,
        endpoint_url: str | None = None,
        list_page_size: int = 1000,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.lstrip("/")
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        self.client = client
        self.endpoint_url = endpoint_url
        self.list_page_size = list_page_size
        # Parts as large as the threshold: a file just above it goes up in two parts.
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_threshold
        )

    def __repr__(self) -> str:
        return f"S3Storage({self.describe()!r})"

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._name(key)}"

    def put_file(self, key: str, source: Path, *, progress: UploadProgress | None = None) -> None:
        with _s3_errors(f"uploading {self.location(key)}"):
            self.client.upload_file(
                str(source), self.bucket, self._name(key), Config=self.transfer, Callback=progress
            )

    def put_bytes(self, key: str, data: bytes) -> None:
        with _s3_errors(f"uploading {self.location(key)}"):
            self.client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data)

    def get_file(self, key: str, target: Path) -> None:
        with _s3_errors(f"downloading {self.location(key)}"):
            self.client.download_file(
                self.bucket, self._name(key), str(target), Config=self.transfer
            )

    def get_bytes(self, key: str) -> bytes:
        with _s3_errors(f"downloading {self.location(key)}"):
            response = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
            return response["Body"].read()

    def list_keys(self, suffix: str = "") -> list[str]:
        keys: list[str] = []
        with _s3_errors(f"listing s3://{self.bucket}/{self.prefix}"):
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(
                Bucket=self.bucket,
                Prefix=self.prefix,
                PaginationConfig={"PageSize": self.list_page_size},
            )
            for page in pages:
                for item in page.get("Contents", []):
                    name = item.get("Key", "")[len(self.prefix) :]
                    # Only our flat names: nothing from "sub-folders" of the prefix.
                    if _KEY.fullmatch(name) and name.endswith(suffix):
                        keys.append(name)
        return sorted(keys)

    def delete(self, key: str) -> None:
        with _s3_errors(f"deleting {self.location(key)}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def exists(self, key: str) -> bool:
        try:
            with _s3_errors(f"checking {self.location(key)}"):
                self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except BackupNotFound:
            return False
        return True

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)


def storage_for(settings: Settings, *, client: S3Client | None = None) -> BackupStorage:
    """The storage the settings name (``BACKUP_STORAGE``)."""
    if settings.backup_storage == "local":
        return LocalStorage(settings.backup_dir)
    assert settings.backup_s3_bucket is not None  # the settings check this
    return S3Storage(
        settings.backup_s3_bucket,
        settings.backup_s3_prefix,
        client if client is not None else s3_client(settings),
        multipart_threshold=settings.backup_multipart_threshold_bytes,
        endpoint_url=settings.backup_s3_endpoint_url,
    )


def s3_client(settings: Settings) -> S3Client:
    """A boto3 S3 client for the configured endpoint and credentials.

    Without a configured key pair boto3 falls back to its own credential chain (an
    instance role, say). A custom endpoint (R2, MinIO) gets path-style addressing and
    checksums only where S3 requires them, which every S3-compatible server accepts.
    """
    secret = settings.backup_s3_secret_access_key
    custom = settings.backup_s3_endpoint_url is not None
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"} if custom else None,
        request_checksum_calculation="when_required" if custom else "when_supported",
        response_checksum_validation="when_required" if custom else "when_supported",
    )
    client: S3Client = boto3.session.Session().client(
        "s3",
        endpoint_url=settings.backup_s3_endpoint_url,
        region_name=settings.backup_s3_region,
        aws_access_key_id=settings.backup_s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
        config=config,
    )
    return client


@contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    """Turn boto3's errors into ours: retry what may pass, fail what cannot."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code == "NoSuchBucket":
            raise StorageRejected(f"{what}: the bucket does not exist (NoSuchBucket)") from exc
        if code in _NOT_FOUND_CODES or status == 404:
            raise BackupNotFound(f"{what}: no such object") from exc
        if status >= 500 or code in _TRANSIENT_CODES:
            raise StorageUnavailable(f"{what}: {code or status}, try again") from exc
        raise StorageRejected(f"{what}: the storage refused ({code or status})") from exc
    except S3UploadFailedError as exc:
        # boto3 folds the ClientError into a message; its error code is all we can read.
        text = str(exc)
        if any(hint in text for hint in _PERMANENT_HINTS):
            raise StorageRejected(f"{what}: {text}") from exc
        raise StorageUnavailable(f"{what}: {text}") from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise StorageRejected(
            f"{what}: no usable credentials (set BACKUP_S3_ACCESS_KEY_ID and "
            "BACKUP_S3_SECRET_ACCESS_KEY)"
        ) from exc
    except (BotoConnectionError, HTTPClientError, RetriesExceededError) as exc:
        raise StorageUnavailable(f"{what}: cannot reach the storage ({exc})") from exc
    except BotoCoreError as exc:
        raise StorageRejected(f"{what}: {exc}") from exc


@contextmanager
def _local_errors(what: str) -> Iterator[None]:
    try:
        yield
    except PermissionError as exc:
        raise StorageRejected(f"{what}: permission denied ({exc.filename})") from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # Pruning may free space; a later attempt can succeed.
            raise StorageUnavailable(f"{what}: no space left on the backup disk") from exc
        raise StorageUnavailable(f"{what}: {exc.strerror or exc}") from exc


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: the directory entry must reach the disk too."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
