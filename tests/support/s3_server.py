"""A real S3-compatible server for tests: moto's server mode, in its own process, over HTTP.

A separate process rather than moto's in-process ``ThreadedMotoServer``: the libSQL SDK
can hold the GIL for a whole statement, which would stall a server thread in the test's
own process. The server runs in its own session (process group) and is always stopped
with its whole group; its output goes to a log file quoted when it fails to start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from tests.support.polling import poll

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
ACCESS_KEY_ID = "testing-key-id"
SECRET_ACCESS_KEY = "testing-secret-access-key"  # moto accepts any pair
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class S3Server:
    """``python -m moto.server`` on a free loopback port; :attr:`url` is its endpoint."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "moto.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Server:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = self._process

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"moto server exited at start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):  # noqa: S310
                    return True
            except (urllib.error.URLError, OSError):
                return False

        if poll(answers, timeout=START_TIMEOUT_S):
            return self
        self.stop()
        raise RuntimeError(
            f"moto server did not answer in {START_TIMEOUT_S:g} s:\n{self.log_tail()}"
        )

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def client(self) -> S3Client:
        """A boto3 client for this server."""
        client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(s3={"addressing_style": "path"}),
        )
        return client

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)
