"""The API as a real server process: ``uvicorn --factory api.main:build`` on a free port.

Configured only through its environment, like in production; its output goes to a log
file whose text failure messages quote. Stopped with SIGTERM (lifespan shutdown), then
killed if it does not stop.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.polling import wait_until

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class ApiServer:
    """A running API server."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_api_server(cwd: Path, env: Mapping[str, str], log_path: Path) -> Iterator[ApiServer]:
    """Start the API in ``cwd`` with exactly ``env``; yield it once ``/healthz`` answers."""
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.main:build", "--port", str(port)],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = ApiServer(f"http://127.0.0.1:{port}", process, log_path)

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the API exited ({process.returncode}):\n{server.log_text()}")
        try:
            return httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(
            healthy,
            timeout=START_TIMEOUT_S,
            what="the API answering /healthz",
            describe=server.log_text,
        )
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
