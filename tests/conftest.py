"""Shared fixtures: settings and migrated libSQL databases in temporary folders.

Tests never read the developer's environment or ``.env``: each builds its own settings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from db import migrations
from db.database import Database

# Fixtures for real services (an embedded Redis-compatible server per test session) and
# for the API in the test process.
pytest_plugins = ["tests.support.redis", "tests.support.api"]

# Keys that would otherwise leak in from the developer's shell into Settings().
_ENV_KEYS = (
    "APP_ENV",
    "DATABASE_URL",
    "TURSO_DATABASE_URL",
    "TURSO_AUTH_TOKEN",
    "TURSO_STAGING_DATABASE_URL",
    "TURSO_STAGING_AUTH_TOKEN",
)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Undo configure_logging() and echo levels a test may have set."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    engine_level = logging.getLogger("sqlalchemy.engine").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("sqlalchemy.engine").setLevel(engine_level)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in _ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    # Run each test in its own folder so ./data and .env never touch the checkout.
    monkeypatch.chdir(tmp_path)


def make_settings(db_path: Path, **overrides: Any) -> Settings:
    """Settings for a local libSQL file (no .env file is read)."""
    return Settings(_env_file=None, database_url=str(db_path), **overrides)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db" / "autoforge.db"


@pytest.fixture
def settings(db_path: Path) -> Settings:
    return make_settings(db_path)


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    """Settings whose database has been migrated to head."""
    migrations.upgrade(settings)
    return settings


@pytest.fixture
def database(migrated: Settings) -> Iterator[Database]:
    db = Database(migrated)
    yield db
    db.dispose()
