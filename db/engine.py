"""Build the SQLAlchemy engine for the configured libSQL target.

Every connection gets its PRAGMAs, every transaction is begun explicitly (``BEGIN`` or,
for write transactions, ``BEGIN IMMEDIATE``), driver errors are classified into
:mod:`db.errors`, and statements slower than a threshold are logged. Local connections
never wait for a lock inside SQLite (``busy_timeout=0``): the SDK would keep the GIL
meanwhile. Waiting happens in Python (:mod:`db.busy`).

The connection is made by a ``creator`` so the auth token is handed straight to the SDK
and never appears in an engine URL, its ``repr`` or SQLAlchemy's echo.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import libsql
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.pool import QueuePool

from core.database_url import DatabaseTarget
from core.settings import Settings
from db import dialect as _dialect  # noqa: F401  (registers sqlite+libsql_sdk)
from db.busy import SDK_BUSY_TIMEOUT_MS
from db.errors import classify

BEGIN_MODE_OPTION = "autoforge_begin"  # execution option: "DEFERRED" (default) or "IMMEDIATE"

slow_log = logging.getLogger("autoforge.db.slow")


def create_db_engine(settings: Settings, *, read_only_file: Path | None = None) -> Engine:
    """A new engine for ``settings.database`` (or, read-only, for a local replica of it:
    ``read_only_file``). Call it after fork, never at import."""
    target = settings.database
    pragmas = _pragmas(settings)
    if read_only_file is not None:
        # A replica belongs to its sync: no journal or vacuum settings, no writes.
        target = DatabaseTarget(kind="local", path=read_only_file)
        pragmas = [f"PRAGMA busy_timeout={SDK_BUSY_TIMEOUT_MS:d}", "PRAGMA query_only=ON"]
    if target.is_local:
        assert target.path is not None
        path = str(target.path)
        if read_only_file is None:
            target.path.parent.mkdir(parents=True, exist_ok=True)

        def connect() -> Any:
            return _checked(
                lambda: libsql.connect(
                    path, isolation_level=None, timeout=SDK_BUSY_TIMEOUT_MS / 1000
                ),
                pragmas,
            )

        engine = create_engine(
            f"sqlite+libsql_sdk:///{path}",
            creator=connect,
            poolclass=QueuePool,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            echo=settings.db_echo,
        )
    else:
        assert target.url is not None
        url = target.url
        token = target.auth_token.get_secret_value() if target.auth_token else ""

        def connect() -> Any:
            return _checked(
                lambda: libsql.connect(
                    url,
                    isolation_level=None,
                    auth_token=token,
                    timeout=settings.db_connect_timeout_s,
                ),
                pragmas,
            )

        # The seed's edge settings (section 1.1): a small pool, checked and recycled.
        engine = create_engine(
            "sqlite+libsql_sdk://",
            creator=connect,
            poolclass=QueuePool,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_pre_ping=True,
            pool_recycle=settings.db_pool_recycle_s,
            echo=settings.db_echo,
        )
    _install_hooks(engine, settings)
    return engine


def _pragmas(settings: Settings) -> list[str]:
    """What every connection runs first. A remote server manages its own journal."""
    if not settings.database.is_local:
        return ["PRAGMA foreign_keys=ON"]
    return [
        # Kept only by a file without tables yet, so it must come before journal_mode
        # (which writes the file's first page); elsewhere a no-op. See db/space.py.
        "PRAGMA auto_vacuum=INCREMENTAL",
        f"PRAGMA busy_timeout={SDK_BUSY_TIMEOUT_MS:d}",
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={settings.db_synchronous}",
        "PRAGMA foreign_keys=ON",
    ]


def _checked(open_connection: Callable[[], Any], pragmas: list[str]) -> Any:
    """Open a connection and run its PRAGMAs, classifying a failure like any driver error.

    SQLAlchemy's ``handle_error`` hook does not see errors raised while a new connection
    is being set up (the SDK raises ``ValueError``, not ``libsql.Error``), and the SDK only
    reaches a remote server on the first statement: so a busy file here becomes
    :class:`DatabaseBusy` and a dead server :class:`DatabaseUnavailable`, which reads and
    write units wait out (:mod:`db.busy`). A half-opened connection is closed.
    """
    connection = None
    try:
        connection = open_connection()
        for pragma in pragmas:
            connection.execute(pragma).fetchall()  # the SDK steps a statement lazily
    except Exception as exc:
        if connection is not None:
            with suppress(Exception):  # the error that matters is the first one
                connection.close()
        typed = classify(exc)
        if typed is None:
            raise
        raise typed from exc
    return connection


def _install_hooks(engine: Engine, settings: Settings) -> None:
    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(BEGIN_MODE_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    @event.listens_for(engine, "handle_error")
    def _classify(context: ExceptionContext) -> BaseException | None:
        return classify(context.original_exception)

    threshold = settings.db_slow_query_ms / 1000

    @event.listens_for(engine, "before_cursor_execute")
    def _start_timer(
        conn: Any, _cursor: Any, _stmt: str, _params: Any, _ctx: Any, _many: bool
    ) -> None:
        conn.info["query_started"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _log_slow(
        conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, _many: bool
    ) -> None:
        elapsed = time.perf_counter() - conn.info["query_started"]
        if elapsed >= threshold:
            # Parameters are left out: they hold user data.
            slow_log.warning(
                "slow query (%.1f ms): %s", elapsed * 1000, " ".join(statement.split())
            )
