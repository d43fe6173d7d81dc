"""``autoforge up``: the whole system as supervised child processes of one command.

With no configuration, :func:`run_up` checks that its ports are free, ensures a local API
key and Flower login (printed once, when created), migrates the database, starts the
embedded Redis (unless ``REDIS_URL`` is set) and then supervises four children, each
started with this interpreter: the API (uvicorn), a worker on every queue, beat and Flower.

Logs: each child's stdout and stderr are merged, prefixed with its name (``worker | ...``)
and forwarded to our stdout, as docker compose and foreman do. One terminal shows the
whole system in order, nothing piles up on disk, and a redirect (``autoforge up > log``)
keeps it all. Known secrets are replaced by ``***`` in forwarded lines. The last lines of
each child are also kept in memory for crash reports. The embedded Redis writes to
``<data_dir>/redis/valkey.log`` (see :class:`~devstack.redis_server.EmbeddedRedis`).

Children run in their own sessions, so a Ctrl-C in the terminal reaches only us and we
stop them in order; each also asks the kernel for ``PR_SET_PDEATHSIG=SIGTERM``, so it
shuts down even if we are killed with SIGKILL.

Stopping (SIGINT, SIGTERM or SIGHUP): SIGTERM to every child at once (Celery's warm
shutdown: the worker finishes running tasks; uvicorn finishes requests; beat and Flower
exit), then wait up to ``stop_timeout_s``. A worker still busy then gets SIGQUIT
(Celery's cold shutdown: running tasks are cancelled and their messages requeued) and
``escalation_grace_s`` more; any other child still running is killed with SIGKILL, and so
is whatever is left at the end, including stray processes in a child's process group.
Redis stops last, after everyone who talks to it. A second signal during the wait skips
straight to SIGKILL.

Crashes: a child that exits on its own is reported on stderr (name, pid, exit status, its
last lines) and restarted after a backoff that doubles with each crash. A child that
crashes more than ``max_restarts`` times within ``restart_window_s`` is not restarted:
everything is stopped and :func:`run_up` returns 1.

The embedded Redis is supervised the same way: if it dies, that is reported (with the
last lines of its log) and it is started again after the same backoff, on the same port
and data directory, so its append-only file brings back the queues. The children ride
out the gap: jobs are still accepted (the ledger keeps them), workers reconnect, beat
waits, and the outbox sweeper publishes what was accepted meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Self, TextIO

from core.errors import AutoforgeError, ConfigurationError
from core.local_secrets import (
    API_KEY_FILE,
    FLOWER_AUTH_FILE,
    ensure_local_secret,
    flower_basic_auth,
    new_api_key,
    new_flower_auth,
)
from core.logging import redact
from core.settings import Settings

# Reused, not copied: one place knows how a child asks to die with its parent.
from devstack.redis_server import EmbeddedRedis, client_host, die_with_parent
from jobs.registry import KindRegistry
from jobs.retry import SUPERVISOR_RESTART_POLICY, RetryPolicy
from tasks.registry import kind_registry

#: The worker's node name; ``%h`` is Celery's placeholder for the host name.
WORKER_NODE_NAME = "autoforge@%h"

LOG_TAIL_LINES = 20
_POLL_INTERVAL_S = 0.1
# How long a crash report waits for the last lines still in the pipe.
_READER_JOIN_S = 2.0
# After this long, say whom we are still waiting for during a stop.
_PATIENCE_NOTE_S = 3.0
_READY_PROBE_TIMEOUT_S = 1.0
_SELF = "autoforge"


class PortInUse(ConfigurationError):
    """A port that ``autoforge up`` needs is already in use."""


@dataclass(frozen=True, slots=True)
class UpOptions:
    """What ``autoforge up`` starts and how it supervises. Ports and hosts are settings."""

    api: bool = True
    worker: bool = True
    beat: bool = True
    flower: bool = True
    #: Queues for the worker; empty means all of them (every kind's, and maintenance).
    queues: tuple[str, ...] = ()
    stop_timeout_s: float = 30.0
    escalation_grace_s: float = 10.0
    max_restarts: int = 5
    restart_window_s: float = 60.0


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to run one supervised child process."""

    name: str
    argv: tuple[str, ...]
    #: Added to (and overriding) the supervisor's own environment.
    env: Mapping[str, str] = field(default_factory=dict)
    #: Sent when SIGTERM did not stop the child in time, before resorting to SIGKILL.
    escalation_signal: signal.Signals | None = None


class StopSignals:
    """Turns SIGINT, SIGTERM and SIGHUP into a stop request instead of an exception.

    A ``KeyboardInterrupt`` raised at a random point (in a migration, while spawning a
    child) could leave things half-done; with a flag, the supervisor stops at a point of
    its choosing and in order. Use as a context manager in the main thread.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        #: How many stop requests arrived; a second one means "force".
        self.count = 0
        self.reason: str | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> Self:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.count > 0

    def request(self, reason: str) -> None:
        """Ask for a stop (what the signal handler does; tests may call it directly)."""
        self.count += 1
        if self.reason is None:
            self.reason = reason

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.request(signal.Signals(signum).name)


class Console:
    """Our stdout and stderr, shared by threads: each line whole, prefixed with a name."""

    def __init__(
        self, out: TextIO | None = None, err: TextIO | None = None, *, width: int = len(_SELF)
    ) -> None:
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.width = width
        self.lock = threading.Lock()

    def say(self, message: str, name: str = _SELF) -> None:
        """Print a line on stdout."""
        self._emit(self.out, name, message)

    def warn(self, message: str, name: str = _SELF) -> None:
        """Print a problem on stderr."""
        self._emit(self.err, name, message)

    def _emit(self, stream: TextIO, name: str, message: str) -> None:
        with self.lock:
            try:
                stream.write(f"{name:<{self.width}} | {message}\n")
                stream.flush()
            except (OSError, ValueError):
                # A closed terminal or pipe must not take the supervisor down with it.
                pass


class _Child:
    """The running state of one :class:`ChildSpec`."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.process: subprocess.Popen[bytes] | None = None
        self.reader: threading.Thread | None = None
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.started_at = 0.0
        self.crashes: deque[float] = deque()
        self.restart_at: float | None = None
        self.exit_code: int | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class _Server:
    """The supervision state of the embedded Redis (its process is its own business)."""

    def __init__(self, redis: EmbeddedRedis) -> None:
        self.redis = redis
        self.started_at = time.monotonic()
        self.crashes: deque[float] = deque()
        self.restart_at: float | None = None


class Supervisor:
    """Starts child processes, forwards their output, restarts crashed ones, stops them.

    Must run in the main thread: signal handlers live there, and ``PR_SET_PDEATHSIG``
    fires when the *thread* that started a child ends.
    """

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        stop_timeout_s: float = 30.0,
        escalation_grace_s: float = 10.0,
        max_restarts: int = 5,
        restart_window_s: float = 60.0,
        restart_policy: RetryPolicy = SUPERVISOR_RESTART_POLICY,
        secrets: Sequence[str] = (),
        ready_probe: tuple[str, Callable[[], bool]] | None = None,
        console: Console | None = None,
        redis: EmbeddedRedis | None = None,
    ) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique: {names}")
        self._children = [_Child(spec) for spec in specs]
        self._stop_timeout_s = stop_timeout_s
        self._escalation_grace_s = escalation_grace_s
        self._max_restarts = max_restarts
        self._restart_window_s = restart_window_s
        self._restart_policy = restart_policy
        self._secrets = [s for s in secrets if s]
        self._ready_probe = ready_probe
        self._console = console if console is not None else Console()
        self._started_at = 0.0
        self._ready = ready_probe is None
        self._redis = _Server(redis) if redis is not None else None

    # --- the public surface -------------------------------------------------------------

    def run(self, stop: StopSignals) -> int:
        """Supervise until a stop is requested (returns 0) or a child keeps crashing (1)."""
        self._started_at = time.monotonic()
        code = 1
        try:
            code = self._supervise(stop)
        finally:
            # Also on an unexpected exception: never leave children behind.
            self._stop_all(stop)
        return code

    def say(self, message: str) -> None:
        """Print one of our own lines, prefixed like the children's."""
        self._console.say(message)

    def warn(self, message: str) -> None:
        """Print a problem on stderr, prefixed like the children's lines."""
        self._console.warn(message)

    # --- supervision --------------------------------------------------------------------

    def _supervise(self, stop: StopSignals) -> int:
        for child in self._children:
            if stop.requested:
                break
            self._start(child)
        while not stop.requested:
            if not self._check_redis() or not self._check_children():
                return 1
            if not self._ready:
                self._ready = self._probe_ready()
            time.sleep(_POLL_INTERVAL_S)
        self.say(f"{stop.reason}: stopping (send it again to stop at once)")
        return 0

    def _start(self, child: _Child) -> None:
        spec = child.spec
        # The children inherit our environment plus their own settings.
        env = {**os.environ, **spec.env}
        tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        process = subprocess.Popen(  # noqa: S603 - our own interpreter, a list, no shell
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            # Its own session and process group: the terminal's Ctrl-C is ours to handle,
            # and killpg() reaches its own children (the worker's pool) too.
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        assert process.stdout is not None
        child.process = process
        child.tail = tail
        child.started_at = time.monotonic()
        child.restart_at = None
        child.exit_code = None
        child.reader = threading.Thread(
            target=self._forward,
            args=(spec.name, process.stdout, tail),
            name=f"forward-{spec.name}",
            daemon=True,
        )
        child.reader.start()
        self.say(f"started {spec.name} (pid {process.pid})")

    def _check_children(self) -> bool:
        """Handle exits and due restarts; False when a child has crashed too often."""
        now = time.monotonic()
        for child in self._children:
            if child.process is not None:
                if child.process.poll() is None:
                    continue
                if not self._on_crash(child, now):
                    return False
            elif child.restart_at is not None and now >= child.restart_at:
                self._start(child)
        return True

    def _on_crash(self, child: _Child, now: float) -> bool:
        """Report a child that exited on its own; schedule its restart if allowed."""
        process = child.process
        assert process is not None
        child.process = None
        child.exit_code = process.returncode
        _kill_group(process.pid)
        self._join_reader(child)
        name = child.spec.name
        uptime = now - child.started_at
        lines = [
            f"!!! {name} (pid {process.pid}) exited unexpectedly: "
            f"{describe_exit(process.returncode)}, after {uptime:.1f} s",
        ]
        tail = self._tail(child)
        if tail:
            lines.append(f"!!! its last {len(tail)} lines:")
            lines.extend(f"!!!   {line}" for line in tail)
        else:
            lines.append("!!! it printed nothing")
        for line in lines:
            self.warn(line)

        child.restart_at = self._restart_time(name, child.crashes, now)
        return child.restart_at is not None

    def _restart_time(self, name: str, crashes: deque[float], now: float) -> float | None:
        """Count a crash; when to restart (the backoff doubles each time), or None (and
        say so) if it crashed more than ``max_restarts`` times within the window."""
        crashes.append(now)
        while crashes and crashes[0] < now - self._restart_window_s:
            crashes.popleft()
        count = len(crashes)
        if count > self._max_restarts:
            self.warn(
                f"!!! {name} crashed {count} times within {self._restart_window_s:g} s: "
                "giving up and stopping everything"
            )
            return None
        delay = self._restart_policy.delay(count)
        self.warn(
            f"restarting {name} in {delay:.1f} s "
            f"(restart {count} of at most {self._max_restarts} within "
            f"{self._restart_window_s:g} s)"
        )
        return now + delay

    def _check_redis(self) -> bool:
        """Restart the embedded Redis if it died; False when it keeps dying."""
        server = self._redis
        if server is None:
            return True
        now = time.monotonic()
        if server.restart_at is None:
            code = server.redis.reap()
            if code is None:
                return True
            self._report_redis_exit(server, code, now)
        elif now < server.restart_at:
            return True
        else:
            try:
                server.redis.start()
            except AutoforgeError as exc:
                self.warn(f"!!! Redis did not start again: {exc}")
            else:
                self._redis_restarted(server, now)
                return True
        server.restart_at = self._restart_time("Redis", server.crashes, now)
        return server.restart_at is not None

    def _report_redis_exit(self, server: _Server, code: int, now: float) -> None:
        redis = server.redis
        self.warn(
            f"!!! Redis (valkey-server on port {redis.port}) exited unexpectedly: "
            f"{describe_exit(code)}, after {now - server.started_at:.1f} s; its last lines "
            f"({redis.log_path}):"
        )
        for line in redis.log_tail().splitlines():
            self.warn(f"!!!   {line}")
        self.warn(
            "until it is back, jobs are still accepted (the ledger keeps them) but none "
            "runs; workers and beat wait for it"
        )

    def _redis_restarted(self, server: _Server, now: float) -> None:
        redis = server.redis
        server.restart_at = None
        server.started_at = now
        try:
            keys = f"{redis.key_count()} keys"
        except Exception as exc:  # only for the message; the server answered PING
            keys = f"keys unknown: {exc}"
        self.say(
            f"restarted Redis: {redis.url} (pid {redis.pid}; log {redis.log_path}), with "
            f"its append-only file from {redis.data_dir} ({keys}); jobs accepted while it "
            "was down are published by the outbox sweeper"
        )
        # Say again when the API answers (its /readyz needs Redis).
        self._ready = self._ready_probe is None

    def _probe_ready(self) -> bool:
        assert self._ready_probe is not None
        what, probe = self._ready_probe
        if not probe():
            return False
        if self._redis is not None and self._redis.crashes:
            self.say(f"ready again: {what}")
        else:
            self.say(f"ready: {what} after {time.monotonic() - self._started_at:.1f} s")
        return True

    # --- stopping -----------------------------------------------------------------------

    def _stop_all(self, stop: StopSignals) -> None:
        for child in self._children:
            child.restart_at = None
        # Any signal from here on (the first one, if we are giving up) means "force".
        baseline = stop.count
        running = [child for child in self._children if child.alive]
        if running:
            self.say(
                f"stopping {', '.join(c.spec.name for c in running)} "
                f"(SIGTERM; waiting up to {self._stop_timeout_s:g} s)"
            )
            for child in running:
                _signal(child, signal.SIGTERM)
            running = self._wait(running, self._stop_timeout_s, stop, baseline)
        if running and stop.count == baseline:
            escalating = [c for c in running if c.spec.escalation_signal is not None]
            for child in running:
                if child not in escalating:
                    self._kill(child, f"did not stop within {self._stop_timeout_s:g} s")
            for child in escalating:
                sig = child.spec.escalation_signal
                assert sig is not None
                self.warn(
                    f"{child.spec.name} did not stop within {self._stop_timeout_s:g} s: "
                    f"sending {sig.name}"
                )
                _signal(child, sig)
            running = self._wait(escalating, self._escalation_grace_s, stop, baseline)
        for child in running:
            self._kill(child, "still running")
        summary = []
        for child in self._children:
            process = child.process
            if process is None:
                continue
            child.exit_code = process.wait()
            # Stray members of its group (say, pool processes) must not outlive it.
            _kill_group(process.pid)
            self._join_reader(child)
            # uvicorn re-raises the SIGTERM it handled: that is a clean stop, not a kill.
            how = (
                "stopped by SIGTERM"
                if child.exit_code == -signal.SIGTERM
                else describe_exit(child.exit_code)
            )
            summary.append(f"{child.spec.name} ({how})")
        if summary:
            self.say("stopped " + ", ".join(summary))

    def _kill(self, child: _Child, why: str) -> None:
        self.warn(f"{child.spec.name} {why}: killing it (SIGKILL)")
        _kill_group(_pid(child))

    def _wait(
        self, running: list[_Child], timeout: float, stop: StopSignals, baseline: int
    ) -> list[_Child]:
        """Wait until ``running`` have exited, the timeout passes or a new signal comes."""
        started = time.monotonic()
        deadline = started + timeout
        noted = False
        while running and time.monotonic() < deadline and stop.count == baseline:
            time.sleep(_POLL_INTERVAL_S)
            running = [child for child in running if child.alive]
            if running and not noted and time.monotonic() - started >= _PATIENCE_NOTE_S:
                noted = True
                self.say(
                    f"waiting for {', '.join(c.spec.name for c in running)} "
                    "(a worker first finishes its running tasks; signal again to stop at once)"
                )
        if running and stop.count != baseline:
            self.warn(f"{stop.reason} again: stopping at once")
        return running

    # --- output -------------------------------------------------------------------------

    def _forward(self, name: str, pipe: IO[bytes], tail: deque[str]) -> None:
        """Copy a child's output, line by line, prefixed with its name (a reader thread)."""
        with pipe:
            for raw in iter(pipe.readline, b""):
                line = redact(raw.decode(errors="replace").rstrip("\r\n"), self._secrets)
                with self._console.lock:
                    tail.append(line)
                self._console.say(line, name)

    def _join_reader(self, child: _Child) -> None:
        if child.reader is not None:
            child.reader.join(_READER_JOIN_S)
            child.reader = None

    def _tail(self, child: _Child) -> list[str]:
        with self._console.lock:
            return list(child.tail)


def _pid(child: _Child) -> int:
    assert child.process is not None
    return child.process.pid


def _signal(child: _Child, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
        os.kill(_pid(child), sig)


def _kill_group(pgid: int) -> None:
    """SIGKILL every process left in a child's process group (the child leads it)."""
    # ProcessLookupError: the group is empty. PermissionError: only zombies are left
    # (some kernels answer so).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def describe_exit(code: int | None) -> str:
    """``exit code 1`` or ``killed by SIGKILL``, from a ``Popen.returncode``."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# --- ``autoforge up`` -----------------------------------------------------------------------


def worker_queues(settings: Settings, options: UpOptions, kinds: KindRegistry) -> tuple[str, ...]:
    """The queues of ``up``'s worker: the chosen ones, or every queue this host consumes
    (its replica queue, ``replicas.<REPLICA_HOST>``, included when it holds a replica)."""
    return resolve_queues(options, kinds.consumed_queues(settings))


def resolve_queues(options: UpOptions, known: Sequence[str]) -> tuple[str, ...]:
    """The worker's queues: the chosen ones (checked against ``known``) or all of them."""
    if not options.queues:
        return tuple(known)
    unknown = [queue for queue in options.queues if queue not in known]
    if unknown:
        raise ConfigurationError(
            f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    return tuple(dict.fromkeys(options.queues))


def check_ports(settings: Settings, options: UpOptions) -> None:
    """Fail, naming the variables, if a port we are about to listen on is taken."""
    wanted: list[tuple[str, str, int]] = []
    if options.api:
        wanted.append(("API_PORT", settings.bind_host, settings.api_port))
    if options.flower:
        wanted.append(("FLOWER_PORT", settings.bind_host, settings.flower_port))
    if settings.redis_url is None:
        wanted.append(("EMBEDDED_REDIS_PORT", "127.0.0.1", settings.embedded_redis_port))
    owners: dict[int, str] = {}
    for variable, _, port in wanted:
        if port in owners:
            raise ConfigurationError(f"{owners[port]} and {variable} are both {port}")
        owners[port] = variable
    busy = [
        f"{variable}={port} (on {host})"
        for variable, host, port in wanted
        if not port_is_free(host, port, variable=variable)
    ]
    if busy:
        raise PortInUse(
            f"port already in use: {', '.join(busy)}. Is another `autoforge up` running? "
            "Stop it, or choose free ports (the variables above, or --api-port, "
            "--flower-port, --redis-port)."
        )


def port_is_free(host: str, port: int, *, variable: str = "port") -> bool:
    """Whether a server could listen on ``host:port`` now."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigurationError(f"BIND_HOST {host!r} ({variable}): {exc.strerror}") from None
    with socket.socket(family, kind, proto) as probe:
        # As the servers do, so that connections lingering in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise ConfigurationError(
                f"cannot listen on {host}:{port} ({variable}): {exc.strerror}"
            ) from None
    return True


@dataclass(frozen=True, slots=True)
class _Credentials:
    api_key: str | None
    flower_auth: str | None


def _ensure_credentials(
    settings: Settings, options: UpOptions, say: Callable[[str], None]
) -> _Credentials:
    """The API key and Flower login; in ``local``, generated on first start, shown once."""
    api_key: str | None = None
    if options.api and not settings.api_keys():
        if settings.app_env != "local":
            raise ConfigurationError(f"APP_ENV={settings.app_env} requires AUTOFORGE_API_KEYS")
        api_key, created = ensure_local_secret(settings, API_KEY_FILE, new_api_key())
        where = settings.data_dir / API_KEY_FILE
        if created:
            say(f"new API key (shown once; kept in {where}): {api_key}")
        else:
            say(f"API key: the one kept in {where}")
    flower_auth: str | None = None
    if options.flower:
        flower_auth = flower_basic_auth(settings)
        if flower_auth is None:
            if settings.app_env != "local":
                raise ConfigurationError(
                    f"APP_ENV={settings.app_env} requires FLOWER_BASIC_AUTH (user:password)"
                )
            flower_auth, created = ensure_local_secret(
                settings, FLOWER_AUTH_FILE, new_flower_auth()
            )
            if created:
                where = settings.data_dir / FLOWER_AUTH_FILE
                say(f"new Flower login (shown once; kept in {where}): {flower_auth}")
        if any(":" not in entry for entry in flower_auth.split(",")):
            raise ConfigurationError("FLOWER_BASIC_AUTH must be user:password[,user:password]")
    return _Credentials(api_key=api_key, flower_auth=flower_auth)


def child_specs(
    settings: Settings, options: UpOptions, queues: Sequence[str], *, flower_auth: str | None
) -> list[ChildSpec]:
    """The processes ``autoforge up`` supervises, each started with this interpreter."""
    python = sys.executable
    celery = (python, "-m", "celery", "-A", "workers.main")
    # The children build their own settings from the environment: hand down the values
    # that the command line may have overridden, so everyone agrees on them.
    env = {
        "PYTHONUNBUFFERED": "1",
        "BIND_HOST": settings.bind_host,
        "API_PORT": str(settings.api_port),
        "FLOWER_PORT": str(settings.flower_port),
        "EMBEDDED_REDIS_PORT": str(settings.embedded_redis_port),
        "WORKER_CONCURRENCY": str(settings.worker_concurrency),
    }
    level = settings.log_level
    specs: list[ChildSpec] = []
    if options.api:
        graceful = max(1, int(min(10.0, options.stop_timeout_s)))
        specs.append(
            ChildSpec(
                "api",
                (
                    python, "-m", "uvicorn", "--factory", "api.main:build",
                    "--host", settings.bind_host, "--port", str(settings.api_port),
                    "--log-level", level.lower(),
                    "--timeout-graceful-shutdown", str(graceful),
                ),
                env,
            )
        )  # fmt: skip
    if options.worker:
        specs.append(
            ChildSpec(
                "worker",
                (
                    *celery, "worker",
                    "-Q", ",".join(queues),
                    "-c", str(settings.worker_concurrency),
                    "--hostname", WORKER_NODE_NAME,
                    "--loglevel", level,
                ),
                env,
                # Cold shutdown: running tasks are cancelled and requeued, not lost.
                escalation_signal=signal.SIGQUIT,
            )
        )  # fmt: skip
    if options.beat:
        specs.append(ChildSpec("beat", (*celery, "beat", "--loglevel", level), env))
    if options.flower:
        assert flower_auth is not None
        specs.append(
            ChildSpec(
                "flower",
                (
                    *celery, "flower",
                    f"--address={settings.bind_host}", f"--port={settings.flower_port}",
                ),
                # Flower reads FLOWER_* options from its environment: the password stays
                # out of argv, where `ps` would show it to every user of the machine.
                {**env, "FLOWER_BASIC_AUTH": flower_auth},
            )
        )  # fmt: skip
    return specs


def _http_base(host: str, port: int) -> str:
    client = client_host(host)
    if ":" in client:
        client = f"[{client}]"
    return f"http://{client}:{port}"


def _readyz_probe(host: str, port: int) -> Callable[[], bool]:
    """Whether the API's ``/readyz`` answers 200 (database and Redis reachable)."""

    def probe() -> bool:
        # Plain http.client: an HTTP library would log every poll at INFO.
        connection = http.client.HTTPConnection(
            client_host(host), port, timeout=_READY_PROBE_TIMEOUT_S
        )
        try:
            connection.request("GET", "/readyz")
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    return probe


def run_up(
    settings: Settings,
    options: UpOptions,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Start and supervise the whole system until a stop signal; the process exit code.

    Raises:
        ConfigurationError: the settings do not fit the job kinds, a port is taken
            (:class:`PortInUse`), a queue is unknown, a required secret is missing
            outside ``local``, or Redis cannot start.
    """
    if not (options.api or options.worker or options.beat or options.flower):
        raise ConfigurationError("nothing to start: every process was switched off")
    kinds = kind_registry()
    # Each child would refuse these settings at start: say so once, before anything starts.
    kinds.check_settings(settings)
    queues = worker_queues(settings, options, kinds)  # fail on a typo before anything starts
    check_ports(settings, options)
    # Imported late: loading Alembic logs its plugins, noise before a refusal above.
    from db import migrations

    printer = Console(out, err)
    credentials = _ensure_credentials(settings, options, printer.say)
    secrets = [*settings.secrets()]
    if credentials.api_key:
        secrets.append(credentials.api_key)
    if credentials.flower_auth:
        secrets.append(credentials.flower_auth)
        secrets.extend(entry.partition(":")[2] for entry in credentials.flower_auth.split(","))

    with StopSignals() as stop:
        migrations.upgrade(settings)
        printer.say(f"database: {settings.database.describe()}")
        printer.say(f"schema revision: {migrations.current_revision(settings)} (head)")
        redis: EmbeddedRedis | None = None
        try:
            redis_line = settings.redis_display()
            if settings.redis_url is None and not stop.requested:
                redis = EmbeddedRedis(
                    Path(settings.data_dir) / "redis",
                    port=settings.embedded_redis_port,
                    persistent=True,
                )
                redis.start()
                redis_line += f": {redis.url} (pid {redis.pid}; log {redis.log_path})"
            if stop.requested:
                return 0
            api = _http_base(settings.bind_host, settings.api_port)
            printer.say(f"redis: {redis_line}")
            if options.api:
                printer.say(f"API: {api}  docs: {api}/docs")
            if options.flower and credentials.flower_auth:
                user = credentials.flower_auth.split(",")[0].partition(":")[0]
                flower = _http_base(settings.bind_host, settings.flower_port)
                printer.say(f"Flower: {flower}  (basic auth, user {user})")
            if options.worker:
                printer.say(f"worker queues: {', '.join(queues)}")
            printer.say("Ctrl-C stops everything")
            supervisor = Supervisor(
                child_specs(settings, options, queues, flower_auth=credentials.flower_auth),
                stop_timeout_s=options.stop_timeout_s,
                escalation_grace_s=options.escalation_grace_s,
                max_restarts=options.max_restarts,
                restart_window_s=options.restart_window_s,
                secrets=secrets,
                ready_probe=(
                    f"{api}/readyz answers 200",
                    _readyz_probe(settings.bind_host, settings.api_port),
                )
                if options.api
                else None,
                console=printer,
                redis=redis,
            )
            return supervisor.run(stop)
        finally:
            if redis is not None:
                redis.stop()
                printer.say("stopped Redis")
