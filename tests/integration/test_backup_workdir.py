"""Scratch folders of killed backups are removed; those of running backups are not.

A backup runs in its own process (started with ``spawn``, so its entry point lives at
module level), copying slowly enough to be caught in the middle and killed with SIGKILL,
as a worker killed by its hard time limit or by ``kill -9`` would be.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import libsql
import pytest

from core.settings import Settings
from db.database import Database
from tasks.backup.service import create_backup
from tasks.backup.workdir import remove_stale_workdirs, scratch_root
from tests.conftest import copy_migrated, make_settings
from tests.support.polling import wait_for, wait_until
from tests.support.processes import children_of, is_alive

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIMEOUT_S = 60.0
AN_HOUR_AGO = time.time() - 3600


def slow_backup_settings(db_path: Path, workdir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "backup_dir": workdir / "backups",
        "data_dir": workdir / "data",
        "backup_step_pages": 1,  # a few thousand steps, 20 ms apart: a minute or more
        "backup_step_pause_ms": 20,
    }
    values.update(overrides)
    return make_settings(db_path, **values)


def run_backup(db_path: str, workdir: str) -> None:
    """Take one backup (in a process of its own)."""
    settings = slow_backup_settings(Path(db_path), Path(workdir))
    db = Database(settings)
    try:
        create_backup(settings, db)
    finally:
        db.dispose()


@pytest.fixture
def live_db(tmp_path: Path, migrated_template: Path) -> Path:
    """A migrated database with ~12 MB of filler: thousands of pages to copy."""
    path = copy_migrated(migrated_template, tmp_path / "db" / "autoforge.db")
    connection = libsql.connect(str(path), isolation_level=None)
    try:
        connection.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB)").fetchall()
        connection.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
            "INSERT INTO filler (data) SELECT randomblob(4000) FROM n"
        ).fetchall()
    finally:
        connection.close()
    return path


def folders(root: Path) -> list[Path]:
    return sorted(root.glob("backup-*")) if root.exists() else []


def start_backup(live_db: Path, tmp_path: Path) -> tuple[Any, Path]:
    """A backup in its own process, returned once its copy is under way, with its folder."""
    root = scratch_root(tmp_path / "data")
    before = set(folders(root))
    process = multiprocessing.get_context("spawn").Process(
        target=run_backup, args=(str(live_db), str(tmp_path)), daemon=True
    )
    process.start()
    folder = wait_for(
        lambda: next(
            (f for f in folders(root) if f not in before and (f / "snapshot.db").exists()), None
        ),
        timeout=TIMEOUT_S,
        what="the backup's copy to start",
    )
    return process, folder


def age(folder: Path) -> None:
    """Make the folder look an hour old (past any grace period)."""
    os.utime(folder, (AN_HOUR_AGO, AN_HOUR_AGO))


def test_a_killed_backup_leaves_nothing_behind_after_the_next_one(
    live_db: Path, tmp_path: Path
) -> None:
    killed, left = start_backup(live_db, tmp_path)
    copying = children_of(killed.pid)  # the copy process, which outlives it for a moment
    killed.kill()
    killed.join(TIMEOUT_S)
    # Orphaned, the copy ends at its next progress report (its pipe is gone); until then
    # it may still write into the folder.
    wait_until(
        lambda: not any(is_alive(pid) for pid in copying),
        timeout=TIMEOUT_S,
        what=f"the killed backup's copy process {copying} exiting",
    )
    assert left.exists(), "the killed backup's folder should still be there"
    assert (left / "snapshot.db").exists()
    age(left)

    settings = slow_backup_settings(live_db, tmp_path, backup_step_pages=8192)
    db = Database(settings)
    try:
        create_backup(settings, db)
    finally:
        db.dispose()

    assert folders(scratch_root(tmp_path / "data")) == []


def test_the_folder_of_a_running_backup_is_left_alone(live_db: Path, tmp_path: Path) -> None:
    running, folder = start_backup(live_db, tmp_path)
    try:
        age(folder)
        stale = scratch_root(tmp_path / "data") / "backup-stale"
        stale.mkdir()
        (stale / "snapshot.db").write_bytes(b"x" * 4096)
        age(stale)
        fresh = scratch_root(tmp_path / "data") / "backup-fresh"
        fresh.mkdir()  # unlocked but new: it may be about to be locked

        removed = remove_stale_workdirs(tmp_path / "data")

        assert removed == [stale]
        assert folder.exists()
        assert fresh.exists()
        assert running.is_alive()
    finally:
        running.kill()
        running.join(TIMEOUT_S)
