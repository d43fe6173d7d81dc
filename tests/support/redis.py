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
from devstack.redis_server import EmbeddedRedis


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


#: The password of :func:`password_redis_url`'s server: a secret that must never be printed.
REDIS_PASSWORD = "redis-pw-SECRET-5b7e01c4"


@pytest.fixture(scope="session")
def password_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A second session server that only answers clients giving :data:`REDIS_PASSWORD`.

    The password is set over the connection (``CONFIG SET requirepass``), not on the
    command line: nothing shows it in the process list.
    """
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis-password"), persistent=False)
    try:
        server.start()
    except AutoforgeError as exc:
        reason = f"embedded Redis server did not start: {exc.message}"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    client = redis.Redis.from_url(server.url)
    try:
        client.config_set("requirepass", REDIS_PASSWORD)
    finally:
        client.close()
    yield server
    server.stop()


@pytest.fixture
def password_redis_url(password_redis_server: EmbeddedRedis) -> str:
    """``redis://:<password>@host:port/0`` of the password server, emptied before the test."""
    url = password_redis_server.url.replace("redis://", f"redis://:{REDIS_PASSWORD}@", 1)
    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()
    return url
