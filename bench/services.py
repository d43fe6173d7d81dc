"""The processes a benchmark starts: Celery workers and uvicorn servers, always reaped.

Each runs in its own session (process group), with its output in a log file whose tail
an error quotes; stopping one sends SIGTERM to its group (Celery's warm shutdown), then
SIGKILL to whatever is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from bench.project import ROOT, SETTINGS_VARIABLES

STOP_TIMEOUT_S = 20.0
START_TIMEOUT_S = 60.0
LOG_TAIL_LINES = 30


class BenchError(RuntimeError):
    """A benchmark could not run as planned (a process died, a deadline passed)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def environment(variables: Mapping[str, Any]) -> dict[str, str]:
    """This process's environment without any product setting, plus ``variables``
    (names as the environment spells them; dicts as JSON)."""
    env = {key: value for key, value in os.environ.items() if key.upper() not in SETTINGS_VARIABLES}
    for name, value in variables.items():
        env[name] = json.dumps(value) if isinstance(value, dict) else str(value)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(ROOT), os.environ.get("PYTHONPATH")) if part
    )
    return env


class Process:
    """One started process, leader of its own process group."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                list(argv),
                cwd=ROOT,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return "\n".join(lines[-LOG_TAIL_LINES:]) or "(log empty)"

    def check(self) -> None:
        """Raise if the process has exited."""
        if not self.alive:
            raise BenchError(
                f"{self.name} exited with {self.process.returncode}; log {self.log_path}:\n"
                f"{self.log_tail()}"
            )

    def stop(self) -> None:
        """SIGTERM to the group, then SIGKILL to what is left after a grace period."""
        group = self.process.pid
        if self.alive:
            _signal_group(group, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT_S)
        # Pool processes or a lease keeper may outlive the leader for a moment.
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_group(group, signal.SIGKILL)
        if self.alive:
            self.process.wait()


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, sig)


def _group_alive(group: int) -> bool:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] not in ("Z", "X") and int(fields[2]) == group:
            return True
    return False


def celery_worker(
    name: str, app_module: str, queues: str, env: Mapping[str, str], log: Path
) -> Process:
    """``celery -A app_module worker -c 2 --pool prefork`` consuming ``queues``."""
    return Process(
        name,
        [
            sys.executable, "-m", "celery", "-A", app_module, "worker",
            "-Q", queues, "-c", "2", "--pool", "prefork",
            "--loglevel", "WARNING", "-n", f"{name}-{os.getpid()}@%h",
        ],
        env,
        log,
    )  # fmt: skip


class Server(Process):
    """``uvicorn --factory <factory>`` on a free port, ready once ``probe_path`` answers."""

    def __init__(
        self, name: str, factory: str, env: Mapping[str, str], log: Path, probe_path: str
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            name,
            [
                sys.executable, "-m", "uvicorn", "--factory", factory,
                "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
            ],
            env,
            log,
        )  # fmt: skip
        try:
            wait_until(
                lambda: self._answers(probe_path), what=f"{name} answering", check=self.check
            )
        except BaseException:
            self.stop()
            raise

    def _answers(self, path: str) -> bool:
        try:
            return httpx.get(self.url + path, timeout=2).status_code < 500
        except httpx.TransportError:
            return False


def wait_until(
    condition: Callable[[], bool],
    *,
    what: str,
    timeout: float = START_TIMEOUT_S,
    interval: float = 0.05,
    check: Callable[[], None] | None = None,
) -> None:
    """Poll ``condition``; raise :class:`BenchError` naming ``what`` at the deadline.
    ``check`` runs between polls (e.g. to notice a dead process early)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)
