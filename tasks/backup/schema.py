"""Which tables a backup holds, and how their rows are walked.

Shared by the logical export (:mod:`~tasks.backup.snapshot`) and the verification
(:mod:`~tasks.backup.verify`), so both agree on what a "table" is and in which order its
rows come:

- *user tables* are the ordinary tables of the ``main`` schema, without SQLite's own
  (``sqlite_*``), libSQL's (``libsql_*``, e.g. ``libsql_vector_meta_shadow``), the
  ``<index>_shadow`` table behind each libSQL vector index, and the shadow tables of
  virtual tables. Those internals are rebuilt by the engine from the user tables, so
  counting or copying them would compare the engine's bookkeeping, not our data;
- rows are walked in key order (the rowid, or the primary key of a ``WITHOUT ROWID``
  table) in batches, by keyset pagination (``WHERE key > last ORDER BY key LIMIT n``):
  memory stays bounded whatever the table's size, also over a remote connection whose
  driver fetches a statement's whole result at once.

Everything here talks to a DB-API-like connection (``libsql.connect(...)``, local or
remote), only through ``execute`` and ``fetchall``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tasks.backup.errors import SnapshotFailed

# The names SQLite accepts for the rowid; a table may shadow some of them with columns.
_ROWID_NAMES = ("_rowid_", "rowid", "oid")
_VECTOR_INDEX = re.compile(r"libsql_vector_idx\s*\(", re.IGNORECASE)


class Cursor(Protocol):
    """The part of a DB-API cursor we use."""

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """The part of a DB-API connection we use (``libsql.Connection`` and ``sqlite3``'s)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...


@dataclass(frozen=True, slots=True)
class SchemaObject:
    """One row of ``sqlite_master``."""

    type: str
    name: str
    tbl_name: str
    sql: str | None


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A user table: its columns and the key its rows are walked by."""

    name: str
    #: Every column a ``SELECT *`` shows, generated ones included (what a checksum covers).
    columns: tuple[str, ...]
    #: The columns an ``INSERT`` may name: the stored, non-generated ones.
    insertable: tuple[str, ...]
    without_rowid: bool
    #: The primary key columns, in key order (empty for a rowid table without one).
    primary_key: tuple[str, ...]
    #: The rowid column alias (``id INTEGER PRIMARY KEY``), if the table has one.
    rowid_alias: str | None
    #: The name that reaches the hidden rowid (None for ``WITHOUT ROWID`` tables).
    rowid_name: str | None

    @property
    def order_key(self) -> tuple[str, ...]:
        """The columns rows are ordered and paged by: unique, never NULL."""
        if self.without_rowid:
            return self.primary_key
        assert self.rowid_name is not None
        return (self.rowid_name,)

    @property
    def keeps_hidden_rowid(self) -> bool:
        """Whether a copy must carry the rowid explicitly (it is not one of the columns)."""
        return not self.without_rowid and self.rowid_alias is None


def quote(identifier: str) -> str:
    """An SQL identifier, quoted (names come from the database, never from users)."""
    return '"' + identifier.replace('"', '""') + '"'


def read_schema(connection: Connection) -> list[SchemaObject]:
    """Every object of the main schema, in creation order (``sqlite_master`` rowid order)."""
    rows = connection.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid"
    ).fetchall()
    return [
        SchemaObject(str(t), str(n), str(tn), s if s is None else str(s)) for t, n, tn, s in rows
    ]


def vector_indexes(objects: Sequence[SchemaObject]) -> set[str]:
    """Names of the libSQL vector indexes (``CREATE INDEX ... (libsql_vector_idx(col))``)."""
    return {o.name for o in objects if o.type == "index" and o.sql and _VECTOR_INDEX.search(o.sql)}


def is_internal(name: str, vector_index_names: set[str]) -> bool:
    """Whether a table (or an index's table) belongs to SQLite or libSQL, not to us."""
    lower = name.lower()
    return lower.startswith(("sqlite_", "libsql_")) or any(
        lower == f"{index}_shadow".lower() for index in vector_index_names
    )


def table_list(connection: Connection) -> dict[str, tuple[str, bool]]:
    """``PRAGMA table_list`` of the main schema: name -> (kind, without rowid).

    The kind is ``table``, ``view``, ``virtual`` or ``shadow`` (a virtual table's storage).
    """
    rows = connection.execute("PRAGMA table_list").fetchall()
    return {str(row[1]): (str(row[2]), bool(row[4])) for row in rows if row[0] == "main"}


def user_tables(connection: Connection) -> list[TableInfo]:
    """The user tables (see the module docstring), sorted by name."""
    objects = read_schema(connection)
    vectors = vector_indexes(objects)
    listed = table_list(connection)
    names = sorted(
        o.name
        for o in objects
        if o.type == "table"
        and listed.get(o.name, ("", False))[0] == "table"
        and not is_internal(o.name, vectors)
    )
    return [describe_table(connection, name, without_rowid=listed[name][1]) for name in names]


def describe_table(connection: Connection, name: str, *, without_rowid: bool) -> TableInfo:
    """Columns, primary key and rowid access of one table."""
    # table_xinfo rows: (cid, name, type, notnull, default, pk, hidden); hidden 2 and 3
    # are generated columns (virtual, stored), which an INSERT must not name.
    info = connection.execute(f"PRAGMA table_xinfo({quote(name)})").fetchall()
    columns = tuple(str(row[1]) for row in info if row[6] in (0, 2, 3))
    insertable = tuple(str(row[1]) for row in info if row[6] == 0)
    keyed = sorted((int(row[5]), str(row[1]), str(row[2] or "")) for row in info if row[5])
    primary_key = tuple(column for _, column, _ in keyed)

    rowid_alias: str | None = None
    rowid_name: str | None = None
    if not without_rowid:
        if len(keyed) == 1 and keyed[0][2].strip().upper() == "INTEGER":
            rowid_alias = keyed[0][1]
        taken = {column.lower() for column in columns}
        rowid_name = next((n for n in _ROWID_NAMES if n not in taken), rowid_alias)
        if rowid_name is None:
            raise SnapshotFailed(
                f"table {name!r} has columns named _rowid_, rowid and oid and no INTEGER "
                "PRIMARY KEY: its rows cannot be walked in a stable order"
            )
    return TableInfo(
        name=name,
        columns=columns,
        insertable=insertable,
        without_rowid=without_rowid,
        primary_key=primary_key,
        rowid_alias=rowid_alias,
        rowid_name=rowid_name,
    )


def iter_batches(
    connection: Connection, table: TableInfo, columns: Sequence[str], *, batch_rows: int
) -> Iterator[list[tuple[Any, ...]]]:
    """Rows of ``table`` in key order, ``batch_rows`` at a time.

    Each row is ``(*key values, *columns)``: the first ``len(table.order_key)`` values are
    the key. Run it inside one read transaction for a consistent view.
    """
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    keys = ", ".join(quote(k) for k in table.order_key)
    selected = ", ".join([keys, *(quote(c) for c in columns)])
    base = f"SELECT {selected} FROM {quote(table.name)}"  # noqa: S608 (quoted identifiers)
    first = f"{base} ORDER BY {keys} LIMIT ?"
    placeholders = ", ".join("?" for _ in table.order_key)
    following = f"{base} WHERE ({keys}) > ({placeholders}) ORDER BY {keys} LIMIT ?"
    width = len(table.order_key)

    rows = [tuple(r) for r in connection.execute(first, (batch_rows,)).fetchall()]
    while rows:
        yield rows
        if len(rows) < batch_rows:
            return
        last = rows[-1][:width]
        rows = [tuple(r) for r in connection.execute(following, (*last, batch_rows)).fetchall()]
