"""The local folder storage: atomic writes, flat names, and what a reader can see."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.backup.errors import BackupNotFound, StorageUnavailable
from tasks.backup.storage import LocalStorage


def test_put_get_list_delete(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "backups")
    source = tmp_path / "source"
    source.write_bytes(b"x" * 10_000)
    sent: list[int] = []

    storage.put_file("a.db.zst", source, progress=sent.append)
    storage.put_bytes("a.manifest.json", b"{}")

    assert storage.list_keys() == ["a.db.zst", "a.manifest.json"]
    assert storage.list_keys(".manifest.json") == ["a.manifest.json"]
    assert storage.exists("a.db.zst")
    assert sum(sent) == 10_000
    storage.get_file("a.db.zst", tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == source.read_bytes()
    storage.delete("a.db.zst")
    storage.delete("a.db.zst")  # deleting twice is fine
    assert not storage.exists("a.db.zst")
    with pytest.raises(BackupNotFound):
        storage.get_bytes("a.db.zst")


def test_a_failed_write_leaves_nothing_visible(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "backups")
    storage.put_bytes("keep.manifest.json", b"old")
    with pytest.raises(StorageUnavailable, match="No such file"):
        storage.put_file("keep.manifest.json", tmp_path / "missing")

    assert storage.get_bytes("keep.manifest.json") == b"old"
    assert sorted(p.name for p in storage.folder.iterdir()) == ["keep.manifest.json"]


def test_object_names_cannot_leave_the_folder(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "backups")
    for name in ("../escape", "a/b", ".hidden", "", "a..b"):
        with pytest.raises(ValueError, match="invalid object name"):
            storage.put_bytes(name, b"x")
    assert not (tmp_path / "escape").exists()
