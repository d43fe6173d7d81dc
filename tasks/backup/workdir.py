"""Scratch folders of backups and restores under ``<DATA_DIR>/tmp``, and the removal of stale ones.

A backup writes a database-sized copy and its encoded form into a scratch folder
(``backup-XXXX``) that is removed when it ends. A process killed meanwhile (``kill -9``,
a hard time limit, a power cut) leaves its folder behind, and with it a database-sized
file; one per killed backup would fill the disk over time.

Each folder is therefore *held* by its process: the process keeps an exclusive
``flock`` on the folder for as long as it uses it, and the kernel drops that lock when
the process ends, however it ends. :func:`remove_stale_workdirs` (run when a worker
starts and before each backup) removes the folders whose lock it can take, i.e. that no
live process holds. A short grace period covers the moment between creating a folder
and locking it, and folders from versions that did not lock them.

(``flock`` locks are separate from the POSIX record locks that SQLite uses, and they
are taken on the folder, never on a database file.)
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.settings import Settings

log = logging.getLogger("autoforge.backup.workdir")

PREFIX = "backup-"
#: A folder younger than this is left alone even if unlocked (it may be about to be locked).
GRACE_S = 60.0


def scratch_root(data_dir: Path) -> Path:
    """Where scratch folders live: ``<DATA_DIR>/tmp`` (a database-sized file does not
    belong in a RAM-backed ``/tmp``)."""
    return data_dir / "tmp"


@contextmanager
def workdir(data_dir: Path) -> Iterator[Path]:
    """A new scratch folder, held by this process until the block ends, then removed."""
    root = scratch_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def remove_stale_workdirs(data_dir: Path, *, grace_s: float = GRACE_S) -> list[Path]:
    """Remove the scratch folders that no live process holds; returns those removed.

    Never raises for a folder it cannot remove: cleaning up must not stop a worker from
    starting or a backup from being taken.
    """
    root = scratch_root(data_dir)
    try:
        candidates = sorted(p for p in root.iterdir() if p.name.startswith(PREFIX))
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("cannot look for stale scratch folders in %s: %s", root, exc)
        return []
    removed: list[Path] = []
    now = time.time()
    for folder in candidates:
        try:
            if now - folder.stat().st_mtime < grace_s:
                continue
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue  # gone meanwhile, or not a folder
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live process is using it
            size = _size(folder)
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)
        if not folder.exists():
            removed.append(folder)
            log.warning(
                "removed %s (%d bytes), left behind by a backup or restore that was killed",
                folder,
                size,
            )
    return removed


def _size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:
            continue
    return total


def remove_stale_scratch(settings: Settings) -> None:
    """When a worker starts: remove the scratch folders its killed backups left behind."""
    remove_stale_workdirs(settings.data_dir)
