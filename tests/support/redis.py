"""Pytest fixtures for a real Redis-compatible server: one per session, flushed per test.

As in arq, one server serves the whole session and each test starts from an empty one.
As in dramatiq, a server that cannot start fails the tests when ``CI`` is set: CI must
never turn green by skipping them. Elsewhere they are skipped, with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from core.errors import AutoforgeError
from workers.redis_server import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A running in-memory server on a free port (``.url``, ``.port``), for the session."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persistent=False)
    try:
        server.start()
    except AutoforgeError as exc:
        reason = f"embedded Redis server did not start: {exc.message}"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The session server's URL, emptied (FLUSHALL) before the test."""
    if not redis_server.running:
        # A test may kill the server on purpose; the next one gets a fresh one on the same port.
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url
