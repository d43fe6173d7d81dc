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
from db.models import UNMODELLED_TABLES, Base

ROOT = Path(__file__).resolve().parents[1]


def alembic_config(settings: Settings) -> Config:
    """An Alembic config whose env.py will use ``settings`` (not the environment)."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.attributes["settings"] = settings
    return config


#: Tables no model describes, whatever made them: libSQL's vector index tables.
VECTOR_INDEX_TABLES = re.compile(r"libsql_vector_meta_shadow|\w+_shadow")


def include_name(name: str | None, type_: str, parent_names: Mapping[str, Any]) -> bool:
    """Alembic's filter for comparing the models with a database: skips
    :data:`VECTOR_INDEX_TABLES` and the tables that models modules declared made in raw
    SQL (:func:`db.models.unmodelled_tables`)."""
    if type_ != "table" or name is None:
        return True
    patterns = (VECTOR_INDEX_TABLES.pattern, *Base.metadata.info.get(UNMODELLED_TABLES, ()))
    return not any(re.fullmatch(pattern, name) for pattern in patterns)


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
