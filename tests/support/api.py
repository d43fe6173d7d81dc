"""The API in the test process: settings, started test clients, and their fixtures.

Registered as a plugin in ``tests/conftest.py``, so every test may ask for
:func:`app_settings` (an API on the test's migrated libSQL file and the session's real
Redis, accepting :data:`KEYS`) and :func:`client` (its app started, sending :data:`AUTH`).
A test module that needs other settings overrides ``app_settings`` and keeps ``client``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
from db.database import Database
from jobs.queues import broker_lists
from tests.conftest import make_settings

KEY = "afk_test-key-one-0d7c"
OTHER_KEY = "afk_test-key-two-91ab"
KEYS = f"{KEY},{OTHER_KEY}"
AUTH = {"Authorization": f"Bearer {KEY}"}

__all__ = [
    "AUTH",
    "KEY",
    "KEYS",
    "OTHER_KEY",
    "TestClient",
    "api_settings",
    "app_settings",
    "client",
    "client_for",
    "ledger",
    "llen",
]


def api_settings(db_path: Path, redis_url: str, **overrides: Any) -> Settings:
    """Settings for an API on ``db_path`` and ``redis_url``, accepting :data:`KEYS`."""
    values: dict[str, Any] = {"redis_url": redis_url, "autoforge_api_keys": KEYS, **overrides}
    return make_settings(db_path, **values)


@contextmanager
def client_for(settings: Settings, **kwargs: Any) -> Iterator[TestClient]:
    """A test client whose app has run its start-up (and will run its shutdown)."""
    with TestClient(create_app(settings), **kwargs) as client:
        yield client


@contextmanager
def ledger(settings: Settings) -> Iterator[Database]:
    """A separate database handle, to look at (or arrange) rows behind the API's back."""
    db = Database(settings)
    try:
        yield db
    finally:
        db.dispose()


def llen(redis_url: str, queue: str) -> int:
    """Messages waiting in ``queue``, at every priority."""
    client = redis.Redis.from_url(redis_url)
    try:
        total = 0
        for name in broker_lists(queue):
            length = client.llen(name)
            assert isinstance(length, int)
            total += length
        return total
    finally:
        client.close()


@pytest.fixture
def app_settings(migrated: Settings, db_path: Path, redis_url: str) -> Settings:
    """The API's settings: the test's migrated database, the session's Redis, :data:`KEYS`."""
    return api_settings(db_path, redis_url)


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    """A client of an app started on ``app_settings``, sending :data:`AUTH`."""
    with client_for(app_settings, headers=AUTH) as client:
        yield client
