"""SQLAlchemy dialect for the official ``libsql`` SDK.

``sqlalchemy-libsql`` drives ``libsql_experimental``; this small subclass points it at the
official SDK instead (same engine, libSQL 3.45 with vector support) and adapts the two
places where the SDK differs from ``sqlite3``: there is no ``check_same_thread`` argument
and no ``create_function``. Transactions are ours to begin (``isolation_level=None``; see
:mod:`db.engine`), because the SDK's implicit transactions cannot be ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import re
import warnings
from types import ModuleType
from typing import Any, ClassVar

from sqlalchemy.engine import URL
from sqlalchemy_libsql.libsql import SQLiteDialect_libsql

from db.column_types import F32Blob
from db.errors import DatabaseUnavailable, classify

_SKIPPED_INDEX = re.compile(r"expression-based index (\S+)")


class LibSQLDialect(SQLiteDialect_libsql):  # type: ignore[misc]
    """``sqlite+libsql_sdk://``: SQLite dialect over the official libSQL SDK."""

    driver = "libsql_sdk"
    supports_statement_cache = True
    # Reflection names libSQL's vector column type (else NullType: batch recreates and
    # schema comparison would fail on it).
    ischema_names: ClassVar[dict[str, Any]] = {
        **SQLiteDialect_libsql.ischema_names,
        "F32_BLOB": F32Blob,
    }

    @classmethod
    def import_dbapi(cls) -> ModuleType:
        import libsql

        module: ModuleType = libsql
        return module

    def on_connect(self) -> None:
        # sqlite3's on_connect registers a REGEXP function: libSQL has no create_function.
        return None

    def do_ping(self, dbapi_connection: Any) -> bool:
        """The pool's pre-ping (remote databases). SQLAlchemy only recognises
        ``libsql.Error`` here, and the SDK raises ``ValueError``: classify it, so an
        unreachable server makes the pool reconnect (and the caller wait it out,
        :mod:`db.busy`) instead of escaping as a bare ``ValueError``."""
        try:
            return bool(super().do_ping(dbapi_connection))
        except Exception as exc:
            typed = classify(exc)
            if typed is None:
                raise
            if isinstance(typed, DatabaseUnavailable):
                return False  # a dead connection: the pool opens a new one
            raise typed from exc

    def get_indexes(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> list[Any]:
        """Indexes as SQLAlchemy reflects them; libSQL vector indexes are skipped quietly.

        A vector index (``libsql_vector_idx(column)``) is an expression index, which
        SQLAlchemy cannot reflect and warns about; it is made and checked by the migration
        that owns it, not compared with the models.
        """
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            indexes: list[Any] = super().get_indexes(connection, table_name, schema=schema, **kw)
        vector_indexes = {
            str(name)
            for (name,) in connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql LIKE '%libsql_vector_idx%'",
                (table_name,),
            )
        }
        for warning in caught:
            skipped = _SKIPPED_INDEX.search(str(warning.message))
            if skipped and skipped.group(1) in vector_indexes:
                continue
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        return indexes

    def create_connect_args(self, url: URL) -> tuple[list[Any], dict[str, Any]]:
        args, kwargs = super().create_connect_args(url)
        kwargs.pop("check_same_thread", None)
        kwargs["isolation_level"] = None
        return args, kwargs


dialect = LibSQLDialect
