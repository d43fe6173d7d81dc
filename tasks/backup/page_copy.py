"""The page copy of a live database file, run as a short-lived process of its own.

:func:`tasks.backup.snapshot.snapshot_local` starts this file as a script (``python -I
page_copy.py REQUEST``) and never opens the live file with the stdlib ``sqlite3`` module
itself. The reason is SQLite's locking: its locks are POSIX advisory locks, which belong to
a *process*, and closing any file descriptor of a file drops every lock the process holds
on it. A process that holds libSQL connections to the live file (a worker, the API) and
opens and closes the same file through a second SQLite library (the stdlib's, which the
backup API needs) loses the locks of its libSQL connections without knowing it; the next
process that opens and closes the file then believes itself the last one, checkpoints the
WAL and deletes it, and the first process's later commits go into a deleted file that no
other process ever sees (sqlite.org/howtocorrupt.html, section 2.2). In a process of its
own, the copy holds the only SQLite handle on the file, and its exit releases exactly its
own locks.

The script imports only the standard library (it runs isolated, ``-I``, without the
project on its path), so it starts fast and can hold no libSQL connection by accident.

Protocol: the request is one JSON object in ``argv[1]`` (``source``, ``target``,
``pages_per_step``, ``pause_s``, ``busy_timeout_s``). The script writes one JSON object
per line to stdout: ``started`` (journal mode, page size, the snapshot's instant), one
``progress`` per step, then ``done`` or ``error`` (``kind`` is ``busy`` or ``failed``).
It reads nothing from stdin but watches it: the parent keeps the pipe open for as long as
it wants the copy, so end of file (the parent exited, was killed, or gave up) ends the copy
at once, and no orphan keeps the live file open.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Exit status when the parent went away mid-copy.
PARENT_GONE = 3


def copy_pages(request: dict[str, Any], emit: Any) -> None:
    """Copy ``request["source"]`` into ``request["target"]`` through the backup API.

    See :mod:`tasks.backup.snapshot` for why the source holds one read transaction for the
    whole copy, and why it starts with ``PRAGMA schema_version``.
    """
    source = str(request["source"])
    target = str(request["target"])
    pages_per_step = int(request["pages_per_step"])
    pause_s = float(request["pause_s"])
    busy_timeout_s = float(request["busy_timeout_s"])
    steps = 0
    restarts = 0
    last_remaining: int | None = None
    page_count = 0

    def on_step(_status: int, remaining: int, total: int) -> None:
        nonlocal steps, restarts, last_remaining, page_count
        steps += 1
        page_count = total
        if last_remaining is not None and remaining > last_remaining:
            restarts += 1
        last_remaining = remaining
        emit({"event": "progress", "done": total - remaining, "total": total})
        if remaining > 0 and pause_s > 0:
            # The stdlib only sleeps after BUSY/LOCKED; this pause between steps is ours.
            time.sleep(pause_s)

    # mode=ro: the backup must never write to the live file.
    uri = Path(source).resolve().as_uri() + "?mode=ro"
    src = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout_s)
    try:
        dst = sqlite3.connect(target, isolation_level=None)
        try:
            # The copy is a scratch file (it is verified, encoded and fsynced as the stored
            # object later): syncing a database-sized file here only stalls writers' fsyncs.
            dst.execute("PRAGMA synchronous=OFF")
            journal_mode = str(src.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            page_size = int(src.execute("PRAGMA page_size").fetchone()[0])
            src.execute("BEGIN")
            src.execute("PRAGMA schema_version").fetchone()  # pins the snapshot
            emit(
                {
                    "event": "started",
                    "journal_mode": journal_mode,
                    "page_size": page_size,
                    "taken_at": datetime.now(UTC).isoformat(),
                }
            )
            # Outside WAL the held read lock would stall writers for every pause: one step.
            pages = pages_per_step if journal_mode == "wal" else -1
            src.backup(dst, pages=pages, progress=on_step, sleep=max(pause_s, 0.001))
        finally:
            dst.close()
    finally:
        if src.in_transaction:
            src.execute("ROLLBACK")
        src.close()
    emit({"event": "done", "steps": steps, "restarts": restarts, "page_count": page_count})


def main(argv: list[str]) -> int:
    """Run one copy as described by ``argv[1]``; report on stdout (see the module docstring)."""
    lock = threading.Lock()

    def emit(event: dict[str, Any]) -> None:
        with lock:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()

    threading.Thread(target=_exit_when_parent_goes, name="parent-watch", daemon=True).start()
    try:
        copy_pages(json.loads(argv[1]), emit)
    except sqlite3.OperationalError as exc:
        text = str(exc)
        kind = "busy" if "locked" in text or "busy" in text else "failed"
        emit({"event": "error", "kind": kind, "message": text})
        return 1
    except Exception as exc:  # reported to the parent, which raises SnapshotFailed with it
        emit({"event": "error", "kind": "failed", "message": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


def _exit_when_parent_goes() -> None:
    """End the process when stdin reaches end of file: the parent no longer wants the copy."""
    # os.read, not sys.stdin: a buffered reader's lock, held by this daemon thread, would
    # abort the interpreter's shutdown after a finished copy.
    while os.read(0, 65536):
        pass
    os._exit(PARENT_GONE)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
