"""Turso's sync server (``tursodb FILE --sync-server``, from the npm package ``turso``) as
the primary of replica-sync tests, and stand-in servers that fail in set ways.

``python3 dev.py test`` installs the package into ``.cache/npm`` when npm is there. Without
it the tests that need it are skipped, except with ``CI`` set, where they fail.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NPM_MODULES = ROOT / ".cache" / "npm" / "node_modules"
# The platform binary itself: the ``.bin/turso`` wrapper is a node script that would stay
# behind as a parent of it (killing the wrapper leaves the server running).
BINARY = NPM_MODULES / "@tursodatabase" / "cli-linux-x64-gnu" / "tursodb"
WRAPPER = NPM_MODULES / ".bin" / "turso"
STUB = Path(__file__).with_name("sync_stub_server.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the sync server exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the sync server did not listen on port {port} within {timeout_s} s")


class TursoPrimary:
    """A running ``tursodb --sync-server`` on a file: ``url``, ``execute(sql)``, ``stop()``."""

    def __init__(self, path: Path, port: int | None = None) -> None:
        self.path = path
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [str(BINARY if BINARY.exists() else WRAPPER), str(self.path)]
        self.process = subprocess.Popen(
            [*command, "--sync-server", f"127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_for_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def execute(self, *statements: str) -> list[dict[str, Any]]:
        """Run statements on the primary (its ``/v2/pipeline``); raises on an error."""
        body = json.dumps(
            {"requests": [{"type": "execute", "stmt": {"sql": sql}} for sql in statements]}
        ).encode()
        request = urllib.request.Request(  # noqa: S310 - our own http:// URL
            f"{self.url}/v2/pipeline", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            results: list[dict[str, Any]] = json.load(response)["results"]
        errors = [r for r in results if r.get("type") != "ok"]
        assert not errors, errors
        return results


def turso_available() -> None:
    """Skip (or, with CI set, fail) the test when the sync server is not installed."""
    if BINARY.exists() or WRAPPER.exists():
        return
    reason = (
        f"Turso's sync server is not installed in {NPM_MODULES} "
        "(python3 dev.py test installs it with npm)"
    )
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def turso_primary(tmp_path: Path) -> Iterator[TursoPrimary]:
    """A fresh primary with table ``notes(id, body)`` and one row."""
    turso_available()
    primary = TursoPrimary(tmp_path / "primary.db")
    primary.start()
    try:
        primary.execute(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
            "INSERT INTO notes (body) VALUES ('first')",
        )
        yield primary
    finally:
        primary.stop()


class StubServer:
    """A server in its own process (the libSQL SDK keeps the GIL while it waits) that
    answers every request with ``mode`` (an HTTP status) or never answers (``hang``)."""

    def __init__(self, mode: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(STUB), mode], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def stub_server() -> Iterator[Any]:
    """``stub_server(mode)`` starts a :class:`StubServer`; all are stopped afterwards."""
    started: list[StubServer] = []

    def start(mode: str) -> StubServer:
        server = StubServer(mode)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
