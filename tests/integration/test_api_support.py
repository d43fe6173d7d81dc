"""Helpers shared by the API's integration tests (this module holds no tests).

Each test builds its own app on a migrated libSQL file and the session's real Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
