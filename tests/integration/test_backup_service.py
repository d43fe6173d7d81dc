"""Backups of the project's own migrated database, end to end through the service functions.

Each test has a real libSQL file migrated to head plus a table with a libSQL vector index,
a local backup folder, and the project's :class:`~db.database.Database`. Restores are
compared table by table with content checksums; damaged and wrongly-keyed backups must be
refused with the target left exactly as it was.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import libsql
import pytest
import zstandard

from core.settings import Settings
from db import migrations
from db.database import Database
from tasks.backup import catalogue
from tasks.backup.codec import sha256_file
from tasks.backup.errors import (
    BackupCorrupted,
    BackupKeyMismatch,
    BackupNotFound,
    DrillFailed,
    EncryptionKeyMissing,
    ManifestRejected,
    RestoreRefused,
)
from tasks.backup.manifest import BackupManifest
from tasks.backup.service import (
    adopt_backup,
    create_backup,
    list_backups,
    manifest_signer,
    prune_backups,
    restore_backup,
    restore_drill,
    verify_backup,
)
from tasks.backup.storage import LocalStorage
from tasks.backup.verify import inspect_database
from tests.conftest import copy_migrated, make_settings

pytestmark = [pytest.mark.integration]

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(1, 33))).decode()


def backup_settings(db_path: Path, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "backup_dir": tmp_path / "backups",
        "data_dir": tmp_path / "data",
        "backup_step_pages": 16,
        "backup_step_pause_ms": 0,
    }
    values.update(overrides)
    return make_settings(db_path, **values)


def execute(path: Path, *statements: str) -> None:
    connection = libsql.connect(str(path), isolation_level=None)
    try:
        for statement in statements:
            connection.execute(statement).fetchall()
    finally:
        connection.close()


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = libsql.connect(str(path))
    try:
        return [tuple(row) for row in connection.execute(sql).fetchall()]
    finally:
        connection.close()


@pytest.fixture
def live_db(tmp_path: Path, migrated_template: Path) -> Path:
    """The configured database: migrated, plus notes and a vector-indexed table."""
    path = copy_migrated(migrated_template, tmp_path / "db" / "autoforge.db")
    rows = ", ".join(f"({i}, vector32('[{i},{i % 13},{(i * 7) % 5}]'))" for i in range(1, 201))
    notes = ", ".join(f"('note {i}')" for i in range(500))
    execute(
        path,
        "CREATE TABLE embeddings (id INTEGER PRIMARY KEY, e F32_BLOB(3))",
        "CREATE INDEX embeddings_idx ON embeddings(libsql_vector_idx(e))",
        f"INSERT INTO embeddings VALUES {rows}",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
        f"INSERT INTO notes (body) VALUES {notes}",
    )
    return path


@pytest.fixture
def settings(live_db: Path, tmp_path: Path) -> Settings:
    return backup_settings(live_db, tmp_path, backup_encryption_key=KEY_A)


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    db = Database(settings)
    yield db
    db.dispose()


def nearest(path: Path, vector: str) -> int:
    rows = query(path, f"SELECT id FROM vector_top_k('embeddings_idx', vector32('{vector}'), 1)")
    return int(rows[0][0])


def stored_object(settings: Settings, manifest: BackupManifest) -> Path:
    return settings.backup_dir.resolve() / manifest.stored.key


def flip_one_byte(path: Path, position: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    where = len(data) // 2 if position is None else position
    data[where] ^= 0x01
    path.write_bytes(bytes(data))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name or "replaced" in p.name)


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
@pytest.mark.parametrize("key", [None, KEY_A], ids=["plain", "encrypted"])
def test_round_trip_restores_identical_contents(
    live_db: Path, tmp_path: Path, compression: str, key: str | None
) -> None:
    settings = backup_settings(
        live_db, tmp_path, backup_compression=compression, backup_encryption_key=key
    )
    db = Database(settings)
    try:
        manifest = create_backup(settings, db)
    finally:
        db.dispose()
    original = inspect_database(live_db)

    assert manifest.schema_revision == migrations.head_revision(settings)
    assert manifest.table_counts == original.table_counts
    assert manifest.table_counts["notes"] == 500
    assert manifest.table_counts["embeddings"] == 200
    assert "alembic_version" in manifest.table_counts
    assert not any(name.startswith(("libsql_", "sqlite_")) for name in manifest.table_counts)
    assert "embeddings_idx_shadow" not in manifest.table_counts
    assert manifest.verified
    assert manifest.method == "snapshot"
    assert manifest.compression == compression
    assert (manifest.encryption is not None) == (key is not None)
    assert manifest.source == f"libSQL file {live_db.resolve()}"
    if key is not None:
        assert key not in manifest.to_json()
    assert list_backups(settings) == [manifest]

    report = restore_backup(settings, manifest.id, to=tmp_path / "restored" / "copy.db")

    restored = inspect_database(tmp_path / "restored" / "copy.db")
    assert restored.table_checksums == original.table_checksums
    assert restored.schema_revision == manifest.schema_revision
    assert report.replaced is None
    # A query without ties: [40,1,0], [120,3,0] and [200,5,0] point the same way, and
    # the index breaks such ties differently from one connection to the next.
    assert nearest(tmp_path / "restored" / "copy.db", "[7,7,4]") == nearest(live_db, "[7,7,4]") == 7
    assert sorted(p.name for p in (tmp_path / "restored").iterdir()) == ["copy.db"]


def test_the_export_path_round_trips_too(
    settings: Settings, database: Database, live_db: Path, tmp_path: Path
) -> None:
    manifest = create_backup(settings, database, method="export")
    assert manifest.method == "export"

    restore_backup(settings, manifest.id, to=tmp_path / "restored.db")

    restored = inspect_database(tmp_path / "restored.db")
    assert restored.table_checksums == inspect_database(live_db).table_checksums
    assert nearest(tmp_path / "restored.db", "[77,12,4]") == nearest(live_db, "[77,12,4]")


def test_progress_is_reported_by_stage(settings: Settings, database: Database) -> None:
    seen: dict[str, tuple[int, int]] = {}
    create_backup(settings, database, progress=lambda s, d, t: seen.__setitem__(s, (d, t)))

    assert list(seen) == ["snapshot", "verify", "encode", "upload"]
    assert all(done == total > 0 for done, total in seen.values())


@pytest.mark.parametrize("key", [None, KEY_A], ids=["plain", "encrypted"])
def test_a_tampered_backup_is_refused_and_the_target_untouched(
    live_db: Path, tmp_path: Path, key: str | None
) -> None:
    settings = backup_settings(live_db, tmp_path, backup_encryption_key=key)
    db = Database(settings)
    try:
        manifest = create_backup(settings, db)
    finally:
        db.dispose()
    target = tmp_path / "target" / "app.db"
    target.parent.mkdir()
    target.write_bytes(b"the current database")
    flip_one_byte(stored_object(settings, manifest))

    with pytest.raises(BackupCorrupted, match="altered or damaged in storage"):
        restore_backup(settings, manifest.id, to=target)
    assert target.read_bytes() == b"the current database"
    assert leftovers(target.parent) == []

    if key is not None:
        # Even with the manifest's checksum forged to match (and signed with the key), the
        # cipher refuses the change.
        tampered = stored_object(settings, manifest)
        forged = manifest.model_copy(update={"stored_sha256": sha256_file(tampered)})
        catalogue.save(LocalStorage(settings.backup_dir), forged, signer=manifest_signer(settings))
        with pytest.raises(BackupCorrupted, match="failed authentication"):
            restore_backup(settings, manifest.id, to=target)
        assert target.read_bytes() == b"the current database"
        assert leftovers(target.parent) == []


def test_a_wrong_or_missing_key_is_refused_and_the_target_untouched(
    settings: Settings, database: Database, live_db: Path, tmp_path: Path
) -> None:
    manifest = create_backup(settings, database)
    target = tmp_path / "target.db"
    target.write_bytes(b"keep me")
    wrong = backup_settings(live_db, tmp_path, backup_encryption_key=KEY_B)
    missing = backup_settings(live_db, tmp_path)

    with pytest.raises(BackupKeyMismatch, match="wrong key"):
        restore_backup(wrong, manifest.id, to=target)
    with pytest.raises(EncryptionKeyMissing, match="BACKUP_ENCRYPTION_KEY"):
        restore_backup(missing, manifest.id, to=target)
    with pytest.raises(BackupCorrupted):
        verify_backup(wrong, manifest.id)

    assert target.read_bytes() == b"keep me"
    # A key problem says nothing about the backup: it stays verified.
    assert list_backups(settings)[0].verified


def test_at_restores_the_newest_verified_backup_taken_before(
    settings: Settings, database: Database, live_db: Path, tmp_path: Path
) -> None:
    first = create_backup(settings, database)
    execute(live_db, "INSERT INTO notes (body) VALUES ('after the first backup')")
    second = create_backup(settings, database)
    between = first.created_at + (second.created_at - first.created_at) / 2

    report = restore_backup(settings, at=between, to=tmp_path / "then.db")

    assert report.backup.id == first.id
    assert first.id in report.chosen
    assert "newest verified backup at or before" in report.chosen
    assert inspect_database(tmp_path / "then.db").table_counts["notes"] == 500
    report = restore_backup(settings, at=second.created_at, to=tmp_path / "now.db")
    assert report.backup.id == second.id
    with pytest.raises(BackupNotFound, match="no verified backup"):
        restore_backup(settings, at=first.created_at - timedelta(seconds=1), to=tmp_path / "x.db")


def test_restoring_onto_the_live_database_needs_force(
    settings: Settings, database: Database, live_db: Path, tmp_path: Path
) -> None:
    manifest = create_backup(settings, database)
    database.dispose()
    # A process that died holding the database leaves committed rows in its -wal file.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import libsql, os, sys; c = libsql.connect(sys.argv[1], isolation_level=None); "
            "c.execute(\"INSERT INTO notes (body) VALUES ('after the backup')\").fetchall(); "
            "os._exit(0)",
            str(live_db),
        ],
        check=True,
    )
    assert live_db.with_name("autoforge.db-wal").stat().st_size > 0
    before = live_db.read_bytes()

    with pytest.raises(RestoreRefused, match=r"live database.*workers.*force"):
        restore_backup(settings, manifest.id)
    assert live_db.read_bytes() == before

    report = restore_backup(settings, manifest.id, force=True)

    assert report.target == live_db.resolve()
    assert report.replaced is not None
    assert report.replaced.name.startswith("autoforge.db.replaced-")
    # The old WAL went with the old file: the restored file does not replay it...
    assert not live_db.with_name("autoforge.db-wal").exists()
    assert query(live_db, "SELECT count(*) FROM notes") == [(500,)]
    # ...and the kept file, read with its WAL, still has the row written after the backup.
    assert query(report.replaced, "SELECT count(*) FROM notes") == [(501,)]
    assert inspect_database(live_db).table_checksums == manifest.table_checksums


def test_other_unsafe_targets_are_refused(
    settings: Settings, database: Database, live_db: Path, tmp_path: Path
) -> None:
    manifest = create_backup(settings, database)
    busy = tmp_path / "busy.db"
    busy.write_bytes(b"busy")
    with pytest.raises(RestoreRefused, match="in use"):
        restore_backup(settings, manifest.id, to=busy, in_use=True)
    assert busy.read_bytes() == b"busy"
    with pytest.raises(ValueError, match="not both"):
        restore_backup(settings, manifest.id, at=manifest.created_at, to=busy)

    remote = Settings(
        _env_file=None, database_url="libsql://example.turso.io", backup_dir=settings.backup_dir
    )
    with pytest.raises(RestoreRefused, match="remote database"):
        restore_backup(remote, manifest.id, force=True)


def test_verify_records_success_and_failure(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    older = create_backup(settings, database)
    newer = create_backup(settings, database)

    verified = verify_backup(settings, newer.id)
    assert verified.verified_at is not None
    assert newer.verified_at is not None
    assert verified.verified_at > newer.verified_at
    assert list_backups(settings)[0] == verified

    flip_one_byte(stored_object(settings, newer))
    with pytest.raises(BackupCorrupted):
        verify_backup(settings, newer.id)

    failed = list_backups(settings)[0]
    assert failed.id == newer.id
    assert not failed.verified
    assert failed.verification_error is not None
    assert "altered" in failed.verification_error
    # --at now passes over the failed backup.
    chosen = restore_backup(settings, at=newer.created_at, to=tmp_path / "restored.db")
    assert chosen.backup.id == older.id


def test_prune_applies_the_policy_and_deletes_the_objects(live_db: Path, tmp_path: Path) -> None:
    settings = backup_settings(
        live_db, tmp_path, backup_keep_daily=1, backup_keep_weekly=0, backup_keep_monthly=0
    )
    db = Database(settings)
    try:
        made = [create_backup(settings, db) for _ in range(3)]
    finally:
        db.dispose()

    kept, deleted = prune_backups(settings)

    assert [m.id for m in kept] == [made[-1].id]
    assert {m.id for m in deleted} == {m.id for m in made[:-1]}
    assert sorted(p.name for p in settings.backup_dir.iterdir()) == sorted(
        [made[-1].stored.key, made[-1].manifest_key]
    )


def test_restore_drill_passes_then_catches_damage(settings: Settings, database: Database) -> None:
    with pytest.raises(BackupNotFound):
        restore_drill(settings)
    manifest = create_backup(settings, database)

    report = restore_drill(settings)
    assert report.ok
    assert report.problems == []
    assert report.backup_id == manifest.id
    assert report.table_counts == manifest.table_counts == report.manifest_counts
    report.raise_for_failure()

    flip_one_byte(stored_object(settings, manifest))
    report = restore_drill(settings)
    assert not report.ok
    assert "altered or damaged" in report.problems[0]
    with pytest.raises(DrillFailed, match=manifest.id):
        report.raise_for_failure()
    assert not list_backups(settings)[0].verified


def test_no_temporary_files_are_left_behind(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    manifest = create_backup(settings, database)
    restore_backup(settings, manifest.id, to=tmp_path / "restored.db")
    restore_drill(settings)

    assert list((settings.data_dir / "tmp").iterdir()) == []
    assert not any(p.name.startswith(".") for p in settings.backup_dir.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["restored.db"]


# --- signed manifests and bounded decoding ------------------------------------------------


def manifest_path(settings: Settings, manifest: BackupManifest) -> Path:
    return settings.backup_dir.resolve() / manifest.manifest_key


def rewrite_manifest(settings: Settings, manifest: BackupManifest, **changes: Any) -> None:
    """Change members of the stored manifest in place, as someone with write access to the
    storage (but not the key) would; its signature, if any, stays as it was."""
    path = manifest_path(settings, manifest)
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document, indent=2))


def plant_zstd_bomb(settings: Settings, manifest: BackupManifest) -> dict[str, Any]:
    """Replace the stored object with a few kB of zstd that inflate to 64 MiB of zeros;
    returns the manifest members that describe it."""
    bomb = zstandard.ZstdCompressor().compress(bytes(64 << 20))
    assert len(bomb) < 64 << 10
    key = f"{manifest.id}.db.zst"
    (settings.backup_dir.resolve() / key).write_bytes(bomb)
    stored = manifest.stored.model_copy(update={"key": key})
    return {
        "stored": stored.model_dump(mode="json"),
        "stored_sha256": hashlib.sha256(bomb).hexdigest(),
        "stored_size_bytes": len(bomb),
        "compression": "zstd",
        "encryption": None,
    }


def test_a_rewritten_manifest_is_refused_like_a_tampered_backup(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    """With a key, someone who can write to the storage but has no key swaps the encrypted
    object for an unencrypted bomb and rewrites the manifest to match: refused unread."""
    older = create_backup(settings, database)
    newest = create_backup(settings, database)
    rewrite_manifest(settings, newest, **plant_zstd_bomb(settings, newest))
    target = tmp_path / "target.db"
    target.write_bytes(b"keep me")

    with pytest.raises(ManifestRejected, match=f"manifest of {newest.id} was altered"):
        restore_backup(settings, newest.id, to=target)
    with pytest.raises(ManifestRejected, match="altered"):
        verify_backup(settings, newest.id)
    assert target.read_bytes() == b"keep me"
    # Left out of the catalogue: never chosen by --at, a drill or retention.
    assert [m.id for m in list_backups(settings)] == [older.id]
    assert restore_drill(settings).backup_id == older.id
    assert restore_backup(settings, at=newest.created_at, to=tmp_path / "at.db").backup.id == (
        older.id
    )
    _, deleted = prune_backups(settings)
    assert deleted == []
    assert manifest_path(settings, newest).exists()


def test_an_unsigned_manifest_is_refused_when_a_key_is_set(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    """A manifest as versions before signing wrote it (or one whose signature was cut
    off): with a key configured, it is refused with a message that says why."""
    manifest = create_backup(settings, database)
    manifest_path(settings, manifest).write_text(manifest.to_json())

    with pytest.raises(ManifestRejected, match="not signed, but BACKUP_ENCRYPTION_KEY is set"):
        restore_backup(settings, manifest.id, to=tmp_path / "restored.db")
    assert list_backups(settings) == []
    assert not (tmp_path / "restored.db").exists()


def test_a_manifest_copied_under_another_name_is_refused(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    first = create_backup(settings, database)
    second = create_backup(settings, database)
    manifest_path(settings, second).write_bytes(manifest_path(settings, first).read_bytes())

    with pytest.raises(ManifestRejected, match=f"stored as {second.id} describes backup"):
        restore_backup(settings, second.id, to=tmp_path / "restored.db")
    assert [m.id for m in list_backups(settings)] == [first.id]


def test_without_a_key_manifests_are_unsigned_and_trusted_with_a_warning(
    live_db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plain = backup_settings(live_db, tmp_path)
    db = Database(plain)
    try:
        with caplog.at_level(logging.WARNING, logger="autoforge.backup"):
            manifest = create_backup(plain, db)
    finally:
        db.dispose()
    assert "signature" not in json.loads(manifest_path(plain, manifest).read_text())
    # A manifest as versions before signing wrote it reads the same.
    manifest_path(plain, manifest).write_text(manifest.to_json())
    with caplog.at_level(logging.WARNING, logger="autoforge.backup"):
        restore_backup(plain, manifest.id, to=tmp_path / "restored.db")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("neither encrypted nor authenticated" in w for w in warnings)


def test_a_bomb_stops_at_the_manifest_size_in_a_drill(live_db: Path, tmp_path: Path) -> None:
    """Without a key nothing is authenticated, but decoding still stops at the raw size the
    manifest records."""
    plain = backup_settings(live_db, tmp_path)
    db = Database(plain)
    try:
        manifest = create_backup(plain, db)
    finally:
        db.dispose()
    rewrite_manifest(plain, manifest, **plant_zstd_bomb(plain, manifest))

    report = restore_drill(plain)

    assert not report.ok
    assert report.problems == [
        f"{manifest.id}.db.zst decodes to more than the {manifest.raw_size_bytes} bytes its "
        "manifest records: stopped writing"
    ]


def test_a_restore_that_cannot_fit_is_refused_before_writing(live_db: Path, tmp_path: Path) -> None:
    plain = backup_settings(live_db, tmp_path)
    db = Database(plain)
    try:
        manifest = create_backup(plain, db)
    finally:
        db.dispose()
    rewrite_manifest(plain, manifest, raw_size_bytes=1 << 60)

    with pytest.raises(RestoreRefused, match="free some space first"):
        restore_backup(plain, manifest.id, to=tmp_path / "restored.db")
    assert not (tmp_path / "restored.db").exists()


def test_a_backup_from_before_signing_is_adopted_once_its_data_checks_out(
    settings: Settings, database: Database, live_db: Path, tmp_path: Path
) -> None:
    legacy = create_backup(settings, database)
    manifest_path(settings, legacy).write_text(legacy.to_json())  # as versions before wrote it
    with pytest.raises(ManifestRejected, match=f"autoforge backup adopt {legacy.id}"):
        restore_backup(settings, legacy.id, to=tmp_path / "before.db")

    adopted = adopt_backup(settings, legacy.id)

    assert adopted.id == legacy.id
    assert adopted.verified_at is not None
    assert "signature" in json.loads(manifest_path(settings, legacy).read_text())
    assert [m.id for m in list_backups(settings)] == [legacy.id]
    restore_backup(settings, legacy.id, to=tmp_path / "after.db")
    assert inspect_database(tmp_path / "after.db").table_counts["notes"] == 500


def test_only_genuine_encrypted_backups_are_adopted(
    settings: Settings, database: Database, live_db: Path, tmp_path: Path
) -> None:
    # Its data was changed: the cipher says so, and the manifest stays unsigned.
    damaged = create_backup(settings, database)
    manifest_path(settings, damaged).write_text(damaged.to_json())
    flip_one_byte(stored_object(settings, damaged))
    rewrite_manifest(settings, damaged, stored_sha256=sha256_file(stored_object(settings, damaged)))
    with pytest.raises(BackupCorrupted, match="failed authentication"):
        adopt_backup(settings, damaged.id)
    assert "signature" not in json.loads(manifest_path(settings, damaged).read_text())

    # Not encrypted: nothing authenticates its data.
    plain = backup_settings(live_db, tmp_path)
    db = Database(plain)
    try:
        unencrypted = create_backup(plain, db)
    finally:
        db.dispose()
    with pytest.raises(ManifestRejected, match="not encrypted with the configured key"):
        adopt_backup(settings, unencrypted.id)

    # A manifest that carries a signature is checked as ever.
    signed = create_backup(settings, database)
    rewrite_manifest(settings, signed, raw_size_bytes=1)
    with pytest.raises(ManifestRejected, match="was altered"):
        adopt_backup(settings, signed.id)
