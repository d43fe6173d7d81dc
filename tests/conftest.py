"""Shared fixtures: settings and migrated libSQL databases in temporary folders.

Tests never read the developer's environment or ``.env``: each builds its own settings.
A migrated database is a copy of one migrated once per session (migrating from base
takes far longer than copying a file); tests of the migrations themselves migrate.
"""

from __future__ import annotations

import atexit
import functools
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libsql
import pytest

from core.settings import Settings
from db import migrations
from db.database import Database

# Fixtures for real services (an embedded Redis-compatible server per test session) and
# for the API in the test process.
pytest_plugins = ["tests.support.redis", "tests.support.api", "tests.support.turso_server"]

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


@functools.cache
def migrated_template_file() -> Path:
    """A libSQL file migrated to head, made once per test process (in a folder removed
    when the process exits); tests get copies of it (:func:`copy_migrated`), never the
    file itself. For the fixtures, :func:`migrated_template`; for whole pipelines of
    processes, :class:`tests.support.processes.Pipeline`."""
    folder = Path(tempfile.mkdtemp(prefix="autoforge-migrated-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "autoforge.db"
    migrations.upgrade(make_settings(path))
    # The file is in WAL mode: fold every committed page into the main file, so that the
    # main file alone is the whole database. The migration's engine is disposed by now,
    # so this is the only connection and closing it leaves no WAL behind.
    connection = libsql.connect(str(path), isolation_level=None)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    wal = path.with_name(f"{path.name}-wal")
    assert not wal.exists() or wal.stat().st_size == 0, f"{wal} still holds pages"
    return path


@pytest.fixture(scope="session")
def migrated_template() -> Path:
    """The session's migrated libSQL file (:func:`migrated_template_file`)."""
    return migrated_template_file()


def copy_migrated(template: Path, target: Path) -> Path:
    """Put a copy of the migrated ``template`` at ``target`` (a new file); returns it.

    A plain file copy: a libSQL file's vector indexes are ordinary tables in it.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)
    return target


@pytest.fixture
def migrated(settings: Settings, db_path: Path, migrated_template: Path) -> Settings:
    """Settings whose database is at head (a copy of :func:`migrated_template`)."""
    copy_migrated(migrated_template, db_path)
    return settings


@pytest.fixture
def database(migrated: Settings) -> Iterator[Database]:
    db = Database(migrated)
    yield db
    db.dispose()
