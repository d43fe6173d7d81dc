"""SQLAlchemy dialect for the official ``libsql`` SDK.

``sqlalchemy-libsql`` drives ``libsql_experimental``; this small subclass points it at the
official SDK instead (same engine, libSQL 3.45 with vector support) and adapts the two
places where the SDK differs from ``sqlite3``: there is no ``check_same_thread`` argument
and no ``create_function``. Transactions are ours to begin (``isolation_level=None``; see
:mod:`db.engine`), because the SDK's implicit transactions cannot be ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy_libsql.libsql import SQLiteDialect_libsql

from db.errors import DatabaseUnavailable, classify


class LibSQLDialect(SQLiteDialect_libsql):  # type: ignore[misc]
    """``sqlite+libsql_sdk://``: SQLite dialect over the official libSQL SDK."""

    driver = "libsql_sdk"
    supports_statement_cache = True

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

    def create_connect_args(self, url: URL) -> tuple[list[Any], dict[str, Any]]:
        args, kwargs = super().create_connect_args(url)
        kwargs.pop("check_same_thread", None)
        kwargs["isolation_level"] = None
        return args, kwargs


dialect = LibSQLDialect
