"""Check a database file with the libSQL engine and describe its contents.

A backup counts only once this passes: the file opens in libSQL (not the stdlib SQLite,
which misreads files with vector indexes), ``PRAGMA integrity_check`` answers ``ok``, and
each user table's row count and content checksum are recorded, so a restore can prove it
brought back exactly what was saved.

The checksum of a table is a sha256 over its column names and then every row, in key
order (rowid, or primary key for ``WITHOUT ROWID`` tables), each value encoded with its
type (``1``, ``1.0``, ``'1'`` and ``x'31'`` all differ). Two files have equal checksums
only if they hold the same rows with the same values in the same key order.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libsql

from tasks.backup.errors import BackupCorrupted
from tasks.backup.schema import TableInfo, iter_batches, quote, user_tables

#: Rows read per query while checksumming.
CHECKSUM_BATCH_ROWS = 2000
#: integrity_check stops after this many problems; the first few say enough.
MAX_INTEGRITY_ERRORS = 20


@dataclass(frozen=True, slots=True)
class DatabaseReport:
    """What :func:`inspect_database` found in a file."""

    path: Path
    #: ``["ok"]``, or the problems ``PRAGMA integrity_check`` listed.
    integrity: list[str]
    table_counts: dict[str, int]
    table_checksums: dict[str, str]
    #: The Alembic revision (``alembic_version``), if the file has one.
    schema_revision: str | None

    @property
    def ok(self) -> bool:
        return self.integrity == ["ok"]


def inspect_database(path: Path) -> DatabaseReport:
    """Integrity, row counts, checksums and schema revision of the libSQL file ``path``.

    Raises :class:`BackupCorrupted` if the file is missing or is not a database at all.
    """
    with _open(path) as connection:
        try:
            integrity = [
                str(row[0])
                for row in connection.execute(
                    f"PRAGMA integrity_check({MAX_INTEGRITY_ERRORS:d})"
                ).fetchall()
            ]
            if integrity != ["ok"]:
                # Counting a damaged file may fail or mislead; the problems are the report.
                return DatabaseReport(path, integrity, {}, {}, None)
            # One read transaction: counts and checksums describe the same state.
            connection.execute("BEGIN").fetchall()
            try:
                tables = user_tables(connection)
                counts = {t.name: _count(connection, t) for t in tables}
                checksums = {t.name: table_checksum(connection, t) for t in tables}
                revision = _schema_revision(connection, tables)
            finally:
                connection.execute("ROLLBACK").fetchall()
        except ValueError as exc:  # the SDK's type for every SQL error
            raise BackupCorrupted(f"{path.name} cannot be read as a database: {exc}") from exc
    return DatabaseReport(path, integrity, counts, checksums, revision)


def verify_database(path: Path) -> DatabaseReport:
    """:func:`inspect_database`, raising :class:`BackupCorrupted` unless the integrity is ok."""
    report = inspect_database(path)
    if not report.ok:
        problems = "; ".join(report.integrity[:5])
        raise BackupCorrupted(f"{path.name} fails PRAGMA integrity_check: {problems}")
    return report


def differences(
    report: DatabaseReport, counts: Mapping[str, int], checksums: Mapping[str, str]
) -> list[str]:
    """How ``report`` differs from the expected counts and checksums (empty: identical)."""
    problems: list[str] = []
    for name in sorted(set(counts) | set(report.table_counts)):
        if name not in report.table_counts:
            problems.append(f"table {name} is missing")
        elif name not in counts:
            problems.append(f"table {name} is not in the manifest")
        elif report.table_counts[name] != counts[name]:
            problems.append(
                f"table {name} has {report.table_counts[name]} rows, expected {counts[name]}"
            )
    for name in sorted(set(checksums) & set(report.table_checksums)):
        if report.table_checksums[name] != checksums[name]:
            problems.append(f"table {name} has different contents (checksum mismatch)")
    return problems


def table_checksum(connection: Any, table: TableInfo) -> str:
    """The content checksum of one table (see the module docstring)."""
    digest = hashlib.sha256()
    for column in table.columns:
        digest.update(_encode(column))
    width = len(table.order_key)
    for batch in iter_batches(connection, table, table.columns, batch_rows=CHECKSUM_BATCH_ROWS):
        for row in batch:
            digest.update(b"R")
            for value in row[width:]:
                digest.update(_encode(value))
    return digest.hexdigest()


def _encode(value: Any) -> bytes:
    """A value with its type and length, so no two different rows encode alike."""
    if value is None:
        return b"N"
    if isinstance(value, bool):  # never from SQLite, but bool is an int subclass
        value = int(value)
    if isinstance(value, int):
        text = str(value).encode()
        return b"I" + struct.pack(">I", len(text)) + text
    if isinstance(value, float):
        return b"F" + struct.pack(">d", value)
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        return b"T" + struct.pack(">Q", len(data)) + data
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return b"B" + struct.pack(">Q", len(data)) + data
    raise TypeError(f"unexpected value type from the database: {type(value).__name__}")


def _count(connection: Any, table: TableInfo) -> int:
    sql = f"SELECT count(*) FROM {quote(table.name)}"  # noqa: S608 (a quoted identifier)
    return int(connection.execute(sql).fetchall()[0][0])


def _schema_revision(connection: Any, tables: list[TableInfo]) -> str | None:
    if not any(t.name == "alembic_version" for t in tables):
        return None
    rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    # Several heads would be several rows; name them all.
    return ",".join(sorted(str(row[0]) for row in rows)) or None


@contextmanager
def _open(path: Path) -> Iterator[Any]:
    if not path.is_file():
        raise BackupCorrupted(f"no database file at {path}")
    try:
        connection = libsql.connect(str(path), isolation_level=None)
    except ValueError as exc:
        raise BackupCorrupted(f"{path.name} cannot be opened as a database: {exc}") from exc
    try:
        yield connection
    finally:
        connection.close()
