"""Alembic environment: the URL and engine come from the settings, never from alembic.ini.

SQLite cannot ALTER most things, so migrations run in batch mode (copy, drop, rename).
Dropping a table that others reference would, with ``foreign_keys=ON``, cascade-delete
their rows: foreign keys are switched off for the migration (it must be done outside a
transaction) and checked with ``PRAGMA foreign_key_check`` before the one commit.
"""

from __future__ import annotations

from sqlalchemy import Connection

from alembic import context
from core.settings import Settings, load_settings
from db.engine import create_db_engine
from db.migrations import include_name
from db.models import Base
from tasks.registry import kind_registry

config = context.config
# The job kinds' own tables (tasks/<kind>/models.py) join the metadata too.
kind_registry().load_models()
target_metadata = Base.metadata


def _settings() -> Settings:
    settings = config.attributes.get("settings")
    return settings if isinstance(settings, Settings) else load_settings()


def _configure(connection: Connection | None = None, **kwargs: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        include_name=include_name,
        # SQLite's DDL is transactional: run the whole upgrade in one transaction, so a
        # failed step (or the foreign-key check below) leaves the database untouched.
        transactional_ddl=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    _configure(url="sqlite://", literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    settings = _settings()
    engine = create_db_engine(settings)
    try:
        with engine.connect() as connection:
            dbapi = connection.connection.dbapi_connection
            dbapi.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            if settings.database.is_local:
                # A migration is a one-off process with nothing else to freeze: let SQLite
                # wait for running writers itself (engine connections never wait inside).
                dbapi.execute(f"PRAGMA busy_timeout={settings.db_busy_timeout_ms:d}")  # type: ignore[union-attr]
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left broken foreign keys: {broken[:5]}")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
