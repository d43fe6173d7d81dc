"""Backups in S3-compatible object storage: a real moto server process over HTTP.

Covers multipart upload (threshold at S3's 5 MiB minimum and a larger file: the stored
object's ETag ends in ``-<parts>``), listing through the paginator, the whole
create/list/restore/prune cycle with ``BACKUP_STORAGE=s3``, and the mapping of storage
failures onto transient and permanent errors without leaking credentials.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import libsql
import pytest
from botocore.config import Config

from core.settings import Settings
from db.database import Database
from tasks.backup.errors import BackupNotFound, StorageRejected, StorageUnavailable
from tasks.backup.service import create_backup, list_backups, prune_backups, restore_backup
from tasks.backup.storage import S3Storage, storage_for
from tasks.backup.verify import inspect_database
from tests.conftest import copy_migrated, make_settings
from tests.support.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server, free_port

pytestmark = [pytest.mark.integration]

MIN_PART = 5 * 1024 * 1024  # S3's smallest multipart part


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    name = f"backups-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(name)
    return name


def s3_settings(
    db_path: Path, tmp_path: Path, server: S3Server, bucket: str, **more: Any
) -> Settings:
    return make_settings(
        db_path,
        data_dir=tmp_path / "data",
        backup_storage="s3",
        backup_s3_bucket=bucket,
        backup_s3_prefix="autoforge/backups/",
        backup_s3_endpoint_url=server.url,
        backup_s3_region=REGION,
        backup_s3_access_key_id=ACCESS_KEY_ID,
        backup_s3_secret_access_key=SECRET_ACCESS_KEY,
        backup_multipart_threshold_bytes=MIN_PART,
        backup_step_pause_ms=0,
        **more,
    )


def test_multipart_upload_listing_and_download(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    storage = S3Storage(bucket, "pre/fix", s3_server.client(), multipart_threshold=MIN_PART)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(MIN_PART + 1024 * 1024))  # 6 MiB: two parts
    sent: list[int] = []

    storage.put_file("one.db.zst", big, progress=sent.append)
    storage.put_bytes("one.manifest.json", b"{}")
    for i in range(3):
        storage.put_bytes(f"extra-{i}.manifest.json", b"{}")
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="pre/fix/nested/other.manifest.json", Body=b"")

    head = client.head_object(Bucket=bucket, Key="pre/fix/one.db.zst")
    assert head["ETag"].strip('"').endswith("-2"), head["ETag"]
    assert head["ContentLength"] == big.stat().st_size
    assert sum(sent) == big.stat().st_size
    assert storage.list_keys(".manifest.json") == [
        "extra-0.manifest.json",
        "extra-1.manifest.json",
        "extra-2.manifest.json",
        "one.manifest.json",
    ]
    storage.get_file("one.db.zst", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
    assert storage.exists("one.db.zst")
    storage.delete("one.db.zst")
    assert not storage.exists("one.db.zst")
    with pytest.raises(BackupNotFound):
        storage.get_file("one.db.zst", tmp_path / "gone.bin")
    assert storage.location("one.db.zst") == f"s3://{bucket}/pre/fix/one.db.zst"


def test_listing_pages_through_the_results(s3_server: S3Server, bucket: str) -> None:
    client = s3_server.client()
    storage = S3Storage(bucket, "p/", client, multipart_threshold=MIN_PART, list_page_size=3)
    for i in range(10):
        client.put_object(Bucket=bucket, Key=f"p/k{i:02d}.manifest.json", Body=b"")
    requests: list[str] = []
    client.meta.events.register(
        "before-call.s3.ListObjectsV2", lambda **_kwargs: requests.append("list")
    )

    assert storage.list_keys(".manifest.json") == [f"k{i:02d}.manifest.json" for i in range(10)]
    assert len(requests) == 4  # pages of 3, 3, 3 and 1


def test_backup_cycle_through_s3(
    s3_server: S3Server, bucket: str, tmp_path: Path, migrated_template: Path
) -> None:
    db_path = copy_migrated(migrated_template, tmp_path / "db" / "autoforge.db")
    connection = libsql.connect(str(db_path), isolation_level=None)
    connection.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)").fetchall()
    connection.execute("BEGIN").fetchall()
    # Random bytes do not compress: the stored object stays above the multipart threshold.
    connection.executemany("INSERT INTO blobs (data) VALUES (randomblob(?))", [(8000,)] * 800)
    connection.execute("COMMIT").fetchall()
    connection.close()
    settings = s3_settings(
        db_path,
        tmp_path,
        s3_server,
        bucket,
        backup_compression="zstd",
        backup_keep_daily=1,
        backup_keep_weekly=0,
        backup_keep_monthly=0,
    )
    db = Database(settings)
    try:
        first = create_backup(settings, db)
        second = create_backup(settings, db)
    finally:
        db.dispose()

    assert second.stored_size_bytes > MIN_PART
    assert second.stored.location == f"s3://{bucket}/autoforge/backups/{second.stored.key}"
    head = s3_server.client().head_object(
        Bucket=bucket, Key=f"autoforge/backups/{second.stored.key}"
    )
    assert head["ETag"].strip('"').endswith("-2")
    assert [m.id for m in list_backups(settings)] == [second.id, first.id]

    restore_backup(settings, first.id, to=tmp_path / "restored.db")
    assert inspect_database(tmp_path / "restored.db").table_checksums == first.table_checksums

    kept, deleted = prune_backups(settings)
    assert [m.id for m in kept] == [second.id]
    assert [m.id for m in deleted] == [first.id]
    listed = s3_server.client().list_objects_v2(Bucket=bucket)
    assert sorted(o["Key"] for o in listed.get("Contents", [])) == sorted(
        f"autoforge/backups/{k}" for k in (second.stored.key, second.manifest_key)
    )


def test_storage_failures_are_classified_without_leaking_secrets(
    s3_server: S3Server, tmp_path: Path
) -> None:
    secret = "do-not-print-this-secret"
    db_path = tmp_path / "db.db"
    settings = make_settings(
        db_path,
        backup_storage="s3",
        backup_s3_bucket="no-such-bucket",
        backup_s3_endpoint_url=s3_server.url,
        backup_s3_region=REGION,
        backup_s3_access_key_id=ACCESS_KEY_ID,
        backup_s3_secret_access_key=secret,
    )
    storage = storage_for(settings)
    with pytest.raises(StorageRejected, match="NoSuchBucket") as rejected:
        storage.put_bytes("x.manifest.json", b"{}")
    assert secret not in str(rejected.value)
    assert secret not in repr(storage)

    # Nothing listens there. One attempt: the test need not sit through retry backoff.
    closed = f"http://127.0.0.1:{free_port()}"
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=closed,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2),
    )
    unreachable = S3Storage("any-bucket", "", client, multipart_threshold=MIN_PART)
    with pytest.raises(StorageUnavailable, match="cannot reach") as down:
        unreachable.list_keys()
    assert secret not in str(down.value)
