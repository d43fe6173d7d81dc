"""Copy the live database into a new local libSQL file, consistently, without stopping writers.

Two ways, by where the database lives:

:func:`snapshot_local` (a local file) copies pages through SQLite's online backup API
(the stdlib ``sqlite3`` module: the libSQL SDK has no backup API, and a page copy keeps
libSQL's vector indexes intact, where ``VACUUM INTO`` corrupts them). The copy runs in steps
of ``pages_per_step`` pages with a pause between steps, so it never monopolises the disk.
It runs in a short-lived child process (:mod:`tasks.backup.page_copy`): opening the live
file with a second SQLite library inside a process that holds libSQL connections to it
would silently drop that process's locks, and lose its later commits.

*Why the source holds one read transaction for the whole copy.* The backup API restarts
from page 1 whenever *another* connection writes to the source between two steps (a
step that finds the source changed starts over: sqlite.org/c3ref/backup_finish.html), so
under a steady stream of commits a stepped copy never finishes: we measured 2,555 steps
with 315 restarts, ending only when the writer stopped. ``sqlite3_backup_step`` opens a
read transaction for each step *unless one is already open on the source connection*; so
we open one first (``BEGIN`` + ``PRAGMA schema_version``) and keep it until the copy ends.
In WAL mode (which :mod:`db.engine` sets on every connection) a reader pins one snapshot
and blocks no writer: the copy sees exactly the database as of that instant, no restart
can happen, and the number of steps is ``ceil(pages / pages_per_step)``. The price is that
checkpoints cannot pass the pinned snapshot, so the WAL grows during the copy and is
checkpointed afterwards. A file in a rollback-journal mode would block writers for the
whole copy this way; it is copied in a single step instead, which is just as consistent
and shorter.

The read transaction starts with ``PRAGMA schema_version`` rather than a ``SELECT`` on
``sqlite_master``: it pins the snapshot without parsing the schema, which the stdlib
SQLite cannot parse for some libSQL extensions (``RANDOM ROWID`` tables).

:func:`export_remote` (a libSQL server, e.g. Turso) has no page access: it reads the
schema and then every table, in batches, inside ONE read transaction, and writes them
into a new file with the libSQL SDK. Indexes (vector indexes included), views and
triggers are created after the rows are in, so triggers do not fire on the copy and
indexes are built once.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import libsql

from core.errors import TransientError
from db.errors import classify
from tasks.backup import page_copy
from tasks.backup.errors import SnapshotBusy, SnapshotFailed
from tasks.backup.schema import (
    Connection,
    SchemaObject,
    TableInfo,
    describe_table,
    is_internal,
    iter_batches,
    quote,
    read_schema,
    table_list,
    vector_indexes,
)

log = logging.getLogger("autoforge.backup.snapshot")

#: Called after each step with (pages copied, pages in the database).
SnapshotProgress = Callable[[int, int], None]
#: Called after each table with (tables copied, tables in the database).
ExportProgress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What :func:`snapshot_local` copied, and how."""

    source: Path
    target: Path
    #: The instant the copy shows (when its read transaction began).
    taken_at: datetime
    journal_mode: str
    page_size: int
    page_count: int
    #: Backup steps taken (one progress callback each).
    steps: int
    #: Times the backup API started over; 0 unless the source changed under it.
    restarts: int
    duration_s: float
    size_bytes: int


@dataclass(frozen=True, slots=True)
class ExportInfo:
    """What :func:`export_remote` copied."""

    target: Path
    taken_at: datetime
    #: Rows copied per user table.
    rows: dict[str, int]
    duration_s: float
    size_bytes: int


def snapshot_local(
    source: Path,
    target: Path,
    *,
    pages_per_step: int,
    pause_s: float,
    progress: SnapshotProgress | None = None,
    busy_timeout_s: float = 5.0,
) -> SnapshotInfo:
    """Copy the libSQL file ``source`` into the new file ``target``, online and consistently.

    Writers keep committing to ``source`` during the copy; the copy is the database as of
    :attr:`SnapshotInfo.taken_at`. ``target`` must not exist; it is removed again if the
    copy fails. Raises :class:`SnapshotBusy` if the source stays locked for
    ``busy_timeout_s`` at the start, :class:`SnapshotFailed` otherwise.

    The copy runs in a child process (:mod:`tasks.backup.page_copy` says why): this
    process never opens ``source`` with a second SQLite library. Whatever ends this call
    early (an exception from ``progress``, a time limit, a signal) kills the child before
    it returns; if this process dies, the child sees its stdin close and exits.
    """
    if pages_per_step < 1:
        raise ValueError("pages_per_step must be at least 1")
    if not source.is_file():
        raise SnapshotFailed(f"no database file at {source}")
    if target.exists():
        raise SnapshotFailed(f"refusing to overwrite {target}")

    started = time.perf_counter()
    request = {
        "source": str(source.resolve()),
        "target": str(target.resolve()),
        "pages_per_step": pages_per_step,
        "pause_s": pause_s,
        "busy_timeout_s": busy_timeout_s,
    }
    copied = False
    # -I: the script needs only the standard library; nothing from the environment or
    # the project's path can bring a libSQL connection into the child.
    child = subprocess.Popen(  # noqa: S603 (our own script, no shell)
        [sys.executable, "-I", page_copy.__file__, json.dumps(request)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        close_fds=True,
    )
    log.debug("copying %s in process %d", source, child.pid)
    try:
        assert child.stdout is not None
        began: dict[str, Any] | None = None
        finished: dict[str, Any] | None = None
        for line in child.stdout:
            event = _parse_event(line)
            kind = event.get("event")
            if kind == "progress" and progress is not None:
                progress(int(event["done"]), int(event["total"]))
            elif kind == "started":
                began = event
            elif kind == "done":
                finished = event
            elif kind == "error":
                message = str(event.get("message", ""))
                if event.get("kind") == "busy":
                    raise SnapshotBusy(f"{source} stayed locked: {message}")
                raise SnapshotFailed(f"copying {source} failed: {message}")
        code = child.wait()
        if began is None or finished is None or code != 0:
            raise SnapshotFailed(
                f"copying {source} failed: the copying process ended with status {code} "
                "before it finished"
            )
        copied = True
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()
        if not copied:  # a half copy must not be mistaken for a backup
            _remove(target)

    return SnapshotInfo(
        source=source,
        target=target,
        taken_at=datetime.fromisoformat(str(began["taken_at"])),
        journal_mode=str(began["journal_mode"]),
        page_size=int(began["page_size"]),
        page_count=int(finished["page_count"]),
        steps=int(finished["steps"]),
        restarts=int(finished["restarts"]),
        duration_s=time.perf_counter() - started,
        size_bytes=target.stat().st_size,
    )


def _parse_event(line: bytes) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        raise SnapshotFailed(f"the copying process said something unexpected: {line[:200]!r}")
    return event


def export_remote(
    connection: Connection,
    target: Path,
    *,
    batch_rows: int,
    progress: ExportProgress | None = None,
) -> ExportInfo:
    """Export the database behind ``connection`` into the new libSQL file ``target``.

    ``connection`` is a DB-API connection in autocommit mode (``libsql.connect(url,
    auth_token=..., isolation_level=None)``); it is only read, inside one read
    transaction that is rolled back at the end. ``target`` must not exist; it is removed
    again if the export fails. FTS5 tables are made anew and given their rows (the
    engine rebuilds their shadow tables); other virtual tables are refused: their
    contents live in module-specific shadow tables that a logical copy cannot rebuild
    faithfully.
    """
    if target.exists():
        raise SnapshotFailed(f"refusing to overwrite {target}")
    started = time.perf_counter()
    rows: dict[str, int] = {}
    out: Any = None
    begun = False
    try:
        connection.execute("BEGIN").fetchall()
        begun = True
        # The first read pins the snapshot that every later read sees.
        objects = read_schema(connection)
        taken_at = datetime.now(UTC)
        vectors = vector_indexes(objects)
        listed = table_list(connection)
        full_text = [
            o for o in objects if listed.get(o.name, ("", False))[0] == "virtual" and is_fts5(o.sql)
        ]
        for obj in objects:
            if listed.get(obj.name, ("", False))[0] == "virtual" and obj not in full_text:
                raise SnapshotFailed(
                    f"virtual table {obj.name!r}: a logical export cannot copy virtual tables "
                    "other than FTS5 indexes"
                )
        tables = [
            o
            for o in objects
            if o.type == "table"
            and o.sql
            and listed.get(o.name, ("", False))[0] == "table"
            and not is_internal(o.name, vectors)
        ]
        later = [
            o
            for o in objects
            if o.type in ("index", "view", "trigger")
            and o.sql  # automatic indexes (sql NULL) come back with their constraints
            and not is_internal(o.tbl_name, vectors)
        ]

        out = libsql.connect(str(target), isolation_level=None)
        page_size = int(connection.execute("PRAGMA page_size").fetchall()[0][0])
        _run(out, f"PRAGMA page_size={page_size:d}")
        # A crash mid-export leaves a temporary file that we discard anyway.
        _run(out, "PRAGMA synchronous=OFF")
        _run(out, "BEGIN")
        for obj in tables:
            assert obj.sql is not None
            _run(out, obj.sql)
        for done, obj in enumerate(tables, start=1):
            table = describe_table(connection, obj.name, without_rowid=listed[obj.name][1])
            rows[obj.name] = _copy_rows(connection, out, table, batch_rows=batch_rows)
            if progress is not None:
                progress(done, len(tables))
        # An FTS5 index is made anew and given its rows (with their rowids): the engine
        # rebuilds its shadow tables, which are not copied. Before the triggers, which
        # would index the rows a second time.
        for obj in full_text:
            assert obj.sql is not None
            _run(out, obj.sql)
            table = describe_table(connection, obj.name, without_rowid=False)
            _copy_rows(connection, out, table, batch_rows=batch_rows)
        _copy_sequences(connection, out, objects)
        for obj in later:
            assert obj.sql is not None
            _run(out, obj.sql)
        for pragma in ("user_version", "application_id"):
            value = int(connection.execute(f"PRAGMA {pragma}").fetchall()[0][0])
            _run(out, f"PRAGMA {pragma}={value:d}")
        _run(out, "COMMIT")
        out.close()
        out = None
    except BaseException as exc:
        if out is not None:
            out.close()
        _remove(target)
        if isinstance(exc, ValueError):  # the SDK's type for every SQL and network error
            typed = classify(exc)
            if isinstance(typed, TransientError):
                raise typed from exc
            raise SnapshotFailed(f"exporting the database failed: {exc}") from exc
        raise
    finally:
        try:
            if begun:
                connection.execute("ROLLBACK").fetchall()
        except Exception as exc:  # a dead connection must not hide the error that killed it
            log.warning("could not end the export's read transaction: %s", exc)

    return ExportInfo(
        target=target,
        taken_at=taken_at,
        rows=rows,
        duration_s=time.perf_counter() - started,
        size_bytes=target.stat().st_size,
    )


def is_fts5(sql: str | None) -> bool:
    """Whether ``sql`` creates an FTS5 virtual table."""
    return bool(sql) and re.search(r"\busing\s+fts5\b", str(sql), re.IGNORECASE) is not None


def _copy_rows(source: Connection, out: Any, table: TableInfo, *, batch_rows: int) -> int:
    """Copy one table's rows in key order; a hidden rowid is carried over explicitly.

    Keeping rowids keeps the copy's row order (and so its checksums) equal to the source's.
    """
    columns = list(table.insertable)
    width = len(table.order_key)
    names = columns
    if table.keeps_hidden_rowid:
        assert table.rowid_name is not None
        names = [table.rowid_name, *columns]
    insert = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "  # noqa: S608
        f"VALUES ({', '.join('?' for _ in names)})"
    )
    copied = 0
    for batch in iter_batches(source, table, columns, batch_rows=batch_rows):
        if table.keeps_hidden_rowid:
            values = [(row[0], *row[width:]) for row in batch]
        else:
            values = [row[width:] for row in batch]
        out.executemany(insert, values)
        copied += len(values)
    return copied


def _copy_sequences(source: Connection, out: Any, objects: list[SchemaObject]) -> None:
    """Carry AUTOINCREMENT counters over, so deleted ids are never handed out again."""
    if not any(o.name == "sqlite_sequence" for o in objects):
        return
    if not out.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchall():
        return  # the AUTOINCREMENT tables are gone; so is their counter
    counters = source.execute("SELECT name, seq FROM sqlite_sequence").fetchall()
    _run(out, "DELETE FROM sqlite_sequence")
    out.executemany("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", counters)


def _run(connection: Any, sql: str) -> None:
    # The SDK steps a statement lazily: fetch, so that it has surely run.
    connection.execute(sql).fetchall()


def _remove(path: Path) -> None:
    for candidate in (path, *(path.with_name(path.name + s) for s in ("-journal", "-wal", "-shm"))):
        candidate.unlink(missing_ok=True)
