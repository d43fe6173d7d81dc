"""Run Alembic migrations programmatically with the given settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from alembic import command
from core.settings import Settings
from db.engine import create_db_engine

ROOT = Path(__file__).resolve().parents[1]


def alembic_config(settings: Settings) -> Config:
    """An Alembic config whose env.py will use ``settings`` (not the environment)."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.attributes["settings"] = settings
    return config


#: Tables the models do not describe: the shadow tables of libSQL vector indexes and of
#: FTS5 full-text indexes, and FTS5 tables themselves (made by migrations in raw SQL).
UNMODELLED_TABLES = re.compile(r"libsql_vector_meta_shadow|\w+_shadow|prompts_fts(_\w+)?")


def include_name(name: str | None, type_: str, parent_names: Mapping[str, Any]) -> bool:
    """Alembic's filter for comparing the models with a database: skips
    :data:`UNMODELLED_TABLES`."""
    return not (type_ == "table" and name is not None and UNMODELLED_TABLES.fullmatch(name))


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    command.downgrade(alembic_config(settings), revision)


def current_revision(settings: Settings) -> str | None:
    engine = create_db_engine(settings)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision(settings: Settings) -> str | None:
    return ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
