"""Build the SQLAlchemy engine for the configured libSQL target.

Every connection gets its PRAGMAs, every transaction is begun explicitly (``BEGIN`` or,
for write transactions, ``BEGIN IMMEDIATE``), driver errors are classified into
:mod:`db.errors`, and statements slower than a threshold are logged.

The connection is made by a ``creator`` so the auth token is handed straight to the SDK
and never appears in an engine URL, its ``repr`` or SQLAlchemy's echo.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import libsql
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.pool import QueuePool

from core.settings import Settings
from db import dialect as _dialect  # noqa: F401  (registers sqlite+libsql_sdk)
from db.errors import classify

BEGIN_MODE_OPTION = "autoforge_begin"  # execution option: "DEFERRED" (default) or "IMMEDIATE"

slow_log = logging.getLogger("autoforge.db.slow")


def create_db_engine(settings: Settings) -> Engine:
    """A new engine for ``settings.database``. Call it after fork, never at import."""
    target = settings.database
    if target.is_local:
        assert target.path is not None
        path = str(target.path)
        target.path.parent.mkdir(parents=True, exist_ok=True)

        def connect() -> Any:
            return libsql.connect(
                path, isolation_level=None, timeout=settings.db_busy_timeout_ms / 1000
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
            return libsql.connect(
                url, isolation_level=None, auth_token=token, timeout=settings.db_connect_timeout_s
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


def _install_hooks(engine: Engine, settings: Settings) -> None:
    local = settings.database.is_local

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        pragmas = ["PRAGMA foreign_keys=ON"]
        if local:
            pragmas = [
                "PRAGMA journal_mode=WAL",
                f"PRAGMA busy_timeout={settings.db_busy_timeout_ms:d}",
                f"PRAGMA synchronous={settings.db_synchronous}",
                *pragmas,
            ]
        for pragma in pragmas:
            dbapi_connection.execute(pragma)

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
