"""The manifest: JSON round trip, UTC times, safe ids, signatures, and the choice of ``--at``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from tasks.backup.errors import BackupKeyMismatch, BackupNotFound, ManifestRejected
from tasks.backup.manifest import (
    BackupManifest,
    EncryptionInfo,
    StoredObject,
    data_key,
    is_backup_id,
    new_backup_id,
)
from tasks.backup.service import pick_backup
from tasks.backup.signing import ManifestSigner

T0 = datetime(2026, 11, 5, 3, 0, tzinfo=UTC)


def manifest(created_at: datetime = T0, *, verified: bool = True) -> BackupManifest:
    backup_id = new_backup_id(created_at)
    return BackupManifest(
        id=backup_id,
        created_at=created_at,
        source="libSQL file /srv/autoforge.db",
        method="snapshot",
        schema_revision="0005",
        table_counts={"prompts": 3},
        table_checksums={"prompts": "ab" * 32},
        raw_size_bytes=4096,
        stored_size_bytes=1000,
        stored_sha256="cd" * 32,
        compression="zstd",
        encryption=EncryptionInfo(key_id="0123456789abcdef", chunk_bytes=1 << 20),
        stored=StoredObject(backend="local", key=data_key(backup_id, "zstd", True), location="x"),
        duration_s=1.5,
        verified_at=created_at + timedelta(seconds=2) if verified else None,
    )


def test_json_round_trip() -> None:
    original = manifest()
    assert BackupManifest.from_json(original.to_json()) == original
    assert original.stored.key == f"{original.id}.db.zst.enc"


def test_times_are_stored_in_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    stored = manifest(T0.astimezone(tokyo))
    assert stored.created_at.tzinfo == UTC
    assert stored.created_at == T0
    assert '"2026-11-05T03:00:00Z"' in stored.to_json()


def test_naive_times_and_bad_ids_are_rejected() -> None:
    data = manifest().model_dump()
    with pytest.raises(ValidationError):
        BackupManifest.model_validate({**data, "created_at": datetime(2026, 1, 1)})
    with pytest.raises(ValidationError):
        BackupManifest.model_validate({**data, "id": "../../etc/passwd"})
    assert is_backup_id(new_backup_id(T0))
    assert not is_backup_id("20261105T030000Z-3fa91c/..")


def test_newer_manifests_with_unknown_fields_still_load() -> None:
    data = manifest().model_dump(mode="json")
    assert BackupManifest.model_validate({**data, "added_later": 1}).id == data["id"]


def test_at_picks_the_newest_verified_backup_at_or_before_the_time() -> None:
    monday = manifest(T0)
    tuesday = manifest(T0 + timedelta(days=1))
    wednesday_failed = manifest(T0 + timedelta(days=2), verified=False)
    thursday = manifest(T0 + timedelta(days=3))
    catalogue = [thursday, wednesday_failed, tuesday, monday]

    assert pick_backup(catalogue, T0 + timedelta(days=2, hours=5)) == tuesday
    assert pick_backup(catalogue, T0 + timedelta(days=1)) == tuesday  # "at" is inclusive
    assert pick_backup(catalogue, T0 + timedelta(days=1) - timedelta(seconds=1)) == monday
    assert pick_backup(catalogue, T0 + timedelta(days=30)) == thursday
    # A naive time is read as UTC.
    assert pick_backup(catalogue, (T0 + timedelta(days=1)).replace(tzinfo=None)) == tuesday
    with pytest.raises(BackupNotFound, match="oldest verified backup is from 2026-11-05"):
        pick_backup(catalogue, T0 - timedelta(seconds=1))


KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def test_a_signed_manifest_reads_back_and_any_change_is_refused() -> None:
    signer = ManifestSigner(KEY_A)
    original = manifest()
    stored = signer.dump(original)
    assert signer.load(stored, original.id) == original

    document = json.loads(stored)
    changes: list[tuple[str, Any]] = [
        ("raw_size_bytes", 1 << 40),
        ("encryption", None),
        ("created_at", "2030-01-01T00:00:00Z"),
        ("added_by_a_newer_version", 1),  # members this version does not read count too
    ]
    for member, value in changes:
        altered = json.dumps({**document, member: value}).encode()
        with pytest.raises(ManifestRejected, match="was altered"):
            signer.load(altered, original.id)
    unsigned = json.dumps({k: v for k, v in document.items() if k != "signature"}).encode()
    with pytest.raises(ManifestRejected, match="not signed"):
        signer.load(unsigned, original.id)
    with pytest.raises(BackupKeyMismatch, match="wrong key"):
        ManifestSigner(KEY_B).load(stored, original.id)
    nan = stored.replace(b'"duration_s": 1.5', b'"duration_s": NaN')
    assert nan != stored
    with pytest.raises(ManifestRejected):
        signer.load(nan, original.id)


def test_without_a_key_manifests_are_unsigned_and_read_unchecked() -> None:
    original = manifest()
    stored = ManifestSigner(None).dump(original)
    assert "signature" not in json.loads(stored)
    assert ManifestSigner(None).load(stored, original.id) == original
    # One signed with a key reads too: without the key it cannot be checked.
    assert ManifestSigner(None).load(ManifestSigner(KEY_A).dump(original), original.id) == original
