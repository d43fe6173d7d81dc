"""``autoforge up`` as a user runs it: one command, the whole system, and a clean stop.

The end-to-end tests start ``python -m cli.main up`` in an empty folder on free ports with
no ``REDIS_URL`` (so Redis is embedded), talk to it over HTTP and signal it. While it runs
they record every process descended from it (from ``/proc``, with start times, so a
recycled pid is not mistaken for a survivor) and afterwards check that none is left.

The supervisor's own behaviour (crash reports, giving up, escalation, process groups) is
tested in-process with small ``python -c`` children.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from core.settings import Settings
from devstack.redis_server import EmbeddedRedis
from devstack.supervisor import (
    ChildSpec,
    Console,
    PortInUse,
    StopSignals,
    Supervisor,
    UpOptions,
    check_ports,
    port_is_free,
)
from jobs.retry import RetryPolicy
from tests.support.logs import LogFile
from tests.support.polling import poll, wait_for, wait_until

# Generous: a loaded CI machine may be slow; none of these is a performance assertion.
START_DEADLINE_S = 90.0
JOB_DEADLINE_S = 60.0
STOP_DEADLINE_S = 60.0
GONE_DEADLINE_S = 30.0
#: A job accepted while the embedded Redis was down is done within this long of its restart.
REDIS_RECOVERY_BOUND_S = 45.0
#: The embedded Redis writes its append-only file to disk every second.
AOF_FSYNC_S = 1.5
KEPT_LIST = "test:kept-across-a-redis-kill"

# Variables that would make the command under test use something else than its defaults.
_SETTINGS_VARIABLES = (
    "APP_ENV",
    "DATA_DIR",
    "DATABASE_URL",
    "TURSO_DATABASE_URL",
    "TURSO_AUTH_TOKEN",
    "TURSO_STAGING_DATABASE_URL",
    "TURSO_STAGING_AUTH_TOKEN",
    "REDIS_URL",
    "BIND_HOST",
    "API_URL",
    "AUTOFORGE_API_KEYS",
    "AUTOFORGE_API_KEY",
    "WORKER_CONCURRENCY",
)


# --- helpers (also used by test_flower.py) --------------------------------------------------


@dataclass(frozen=True)
class Ports:
    """Free ports for one ``autoforge up``."""

    api: int
    flower: int
    redis: int

    def env(self) -> dict[str, str]:
        return {
            "API_PORT": str(self.api),
            "FLOWER_PORT": str(self.flower),
            "EMBEDDED_REDIS_PORT": str(self.redis),
        }

    def all(self) -> tuple[int, int, int]:
        return (self.api, self.flower, self.redis)


def free_ports() -> Ports:
    """Three distinct ports that were free a moment ago (held open together while chosen)."""
    sockets = [socket.socket() for _ in range(3)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        api, flower, redis_port = (int(sock.getsockname()[1]) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()
    return Ports(api=api, flower=flower, redis=redis_port)


def up_environment(ports: Ports) -> dict[str, str]:
    """Our environment without anything that configures AutoForge, plus the ports."""
    env = {
        key: value
        for key, value in os.environ.items()
        # Flower reads every FLOWER_* variable as one of its options.
        if key.upper() not in _SETTINGS_VARIABLES and not key.upper().startswith("FLOWER_")
    }
    env.update(ports.env())
    return env


@dataclass(frozen=True)
class ProcessId:
    """A pid plus its start time: together they name one process, even after pid reuse."""

    pid: int
    start_ticks: int
    name: str


def _read_stat(pid: int) -> tuple[str, str, int, int] | None:
    """``(name, state, ppid, start ticks)`` of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The name is in parentheses and may itself contain spaces or parentheses.
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return name, fields[0], int(fields[1]), int(fields[19])


def descendants(root: int) -> set[ProcessId]:
    """Every live process whose parent chain includes ``root``."""
    parents: dict[int, tuple[int, ProcessId]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read_stat(int(entry.name))
        if stat is not None:
            name, _, ppid, start = stat
            parents[int(entry.name)] = (ppid, ProcessId(int(entry.name), start, name))
    found: set[ProcessId] = set()
    for pid, (ppid, identity) in parents.items():
        while ppid in parents and ppid != root:
            ppid = parents[ppid][0]
        if ppid == root and pid != root:
            found.add(identity)
    return found


def still_running(processes: set[ProcessId]) -> set[ProcessId]:
    """Those of ``processes`` that still run (a zombie has finished: it counts as gone)."""
    alive = set()
    for process in processes:
        stat = _read_stat(process.pid)
        if stat is not None and stat[3] == process.start_ticks and stat[1] not in ("Z", "X"):
            alive.add(process)
    return alive


@dataclass
class UpRun:
    """One running ``autoforge up`` and what it printed."""

    process: subprocess.Popen[bytes]
    cwd: Path
    ports: Ports
    stdout_path: Path
    stderr_path: Path
    seen: set[ProcessId] = field(default_factory=set)
    # Polled for minutes: read from where the last read stopped.
    _stdout: LogFile = field(init=False, repr=False)
    _stderr: LogFile = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._stdout = LogFile(self.stdout_path)
        self._stderr = LogFile(self.stderr_path)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    @property
    def flower(self) -> str:
        return f"http://127.0.0.1:{self.ports.flower}"

    def stdout(self) -> str:
        return self._stdout.text()

    def stderr(self) -> str:
        return self._stderr.text()

    def report(self) -> str:
        """The output so far, for failure messages (only the end: it can be long)."""
        return (
            f"exit code: {self.process.poll()}\n--- stdout (end) ---\n{self.stdout()[-6000:]}"
            f"\n--- stderr (end) ---\n{self.stderr()[-4000:]}"
        )

    def record_descendants(self) -> set[ProcessId]:
        """Remember every process now descended from the supervisor."""
        current = descendants(self.process.pid)
        self.seen |= current
        return current

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self) -> set[ProcessId]:
        """Wait until ``/readyz`` answers 200 and the worker is ready; the processes then.

        (The API may be ready before the worker has forked its pool.)
        """

        def ready() -> bool:
            if not self.alive():
                pytest.fail(f"autoforge up exited early\n{self.report()}", pytrace=False)
            try:
                return httpx.get(f"{self.api}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=START_DEADLINE_S, what="/readyz answers 200", describe=self.report)
        wait_for(
            lambda: re.search(r"worker +\| .*autoforge@\S+ ready\.", self.stdout()),
            timeout=START_DEADLINE_S,
            what="the worker is ready",
            describe=self.report,
        )
        return self.record_descendants()

    def pid_of(self, name: str, after: int = -1) -> int:
        """The pid the supervisor last printed for child ``name`` (other than ``after``)."""
        pids = [int(p) for p in re.findall(rf"started {name} \(pid (\d+)\)", self.stdout())]
        assert pids, f"no {name} started\n{self.report()}"
        assert pids[-1] != after
        return pids[-1]


@contextmanager
def autoforge_up(
    cwd: Path, *args: str, ports: Ports | None = None, env: Mapping[str, str] | None = None
) -> Iterator[UpRun]:
    """Run ``python -m cli.main up ARGS`` in ``cwd`` (with ``env`` added to its environment);
    always killed and reaped at the end."""
    ports = ports or free_ports()
    cwd.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = cwd / "up.stdout", cwd / "up.stderr"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", *args],
            cwd=cwd,
            env={**up_environment(ports), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            # Our signals only: a Ctrl-C of pytest must not double as the test's.
            start_new_session=True,
        )
    run = UpRun(process, cwd, ports, stdout_path, stderr_path)
    try:
        yield run
    finally:
        # A failed test must not leave a system running behind.
        if run.alive():
            run.record_descendants()
            process.kill()
        process.wait()
        for leftover in still_running(run.seen):
            with suppress(ProcessLookupError):
                os.kill(leftover.pid, signal.SIGKILL)


def _busy_ports(run: UpRun) -> list[int]:
    return [port for port in run.ports.all() if not port_is_free("127.0.0.1", port)]


def _assert_all_gone(run: UpRun) -> None:
    def gone() -> bool:
        return not still_running(run.seen)

    wait_for(
        gone,
        timeout=GONE_DEADLINE_S,
        what="every process started under autoforge up has exited",
        describe=lambda: (
            f"still running: {sorted(still_running(run.seen), key=lambda p: p.pid)}\n"
            + run.report()
        ),
    )
    # A child that up restarted after the processes were recorded (one that crashed on a
    # loaded machine) is not in ``seen``, but it got the same signal: its port is freed
    # once it has exited too.
    wait_until(
        lambda: not _busy_ports(run),
        timeout=GONE_DEADLINE_S,
        what="every port free after the stop",
        describe=lambda: f"ports still in use: {_busy_ports(run)}\n{run.report()}",
    )


def _enqueue_canary(run: UpRun, api_key: str) -> str:
    job_id = _post_canary(run, api_key)
    _wait_until_succeeded(run, api_key, job_id)
    return job_id


def _post_canary(run: UpRun, api_key: str) -> str:
    response = httpx.post(
        f"{run.api}/v1/jobs/canary",
        json={"sleep_ms": 100, "fail_times": 0},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _wait_until_succeeded(run: UpRun, api_key: str, job_id: str) -> None:
    def finished() -> str | None:
        job = httpx.get(
            f"{run.api}/v1/jobs/{job_id}",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=10,
        ).json()
        status = str(job["status"])
        return status if status in ("succeeded", "failed", "cancelled") else None

    status = wait_for(
        finished, timeout=JOB_DEADLINE_S, what=f"canary job {job_id} finishes", describe=run.report
    )
    assert status == "succeeded", run.report()


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_up_runs_a_job_survives_a_crash_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with autoforge_up(tmp_path / "first") as run:
        started = run.wait_ready()
        names = {process.name for process in started}
        assert "valkey-server" in names, started
        # api, worker (+ its 2 pool processes), beat, flower and Redis.
        assert len(started) >= 7, started

        # The key is printed once, when created, and is the one kept under ./data/.
        printed = re.findall(r"new API key \(shown once; kept in [^)]*\): (\S+)", run.stdout())
        stored = (run.cwd / "data" / "api-key").read_text().strip()
        assert printed == [stored]
        flower_login = (run.cwd / "data" / "flower-auth").read_text().strip()
        assert run.stdout().count(flower_login) == 1

        _enqueue_canary(run, stored)
        run.record_descendants()

        # A second `up` on the same ports fails at once and names every busy port.
        second = subprocess.run(
            [sys.executable, "-m", "cli.main", "up"],
            cwd=tmp_path,
            env=up_environment(run.ports),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=STOP_DEADLINE_S,
        )
        assert second.returncode == 2, second
        for variable, port in zip(
            ("API_PORT", "FLOWER_PORT", "EMBEDDED_REDIS_PORT"), run.ports.all(), strict=True
        ):
            assert f"{variable}={port}" in second.stderr
        assert "already in use" in second.stderr
        assert not (tmp_path / "data").exists(), "the refused run must not have started"

        # A child that dies is reported with its last lines, restarted, and the system
        # keeps working.
        beat = run.pid_of("beat")
        os.kill(beat, signal.SIGKILL)
        wait_for(
            lambda: f"beat (pid {beat}) exited unexpectedly: killed by SIGKILL" in run.stderr(),
            timeout=JOB_DEADLINE_S,
            what="the crash is reported",
            describe=run.report,
        )
        assert "its last" in run.stderr()
        wait_for(
            lambda: len(re.findall(r"started beat \(pid", run.stdout())) == 2,
            timeout=JOB_DEADLINE_S,
            what="beat is restarted",
            describe=run.report,
        )
        run.pid_of("beat", after=beat)
        run.record_descendants()
        _enqueue_canary(run, stored)
        run.record_descendants()

        run.process.send_signal(signal.SIGTERM)
        try:
            code = run.process.wait(STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit within {STOP_DEADLINE_S:g} s\n{run.report()}", pytrace=False)
        assert code == 0, run.report()
        assert "worker: Warm shutdown" in run.stdout()
        assert "stopped Redis" in run.stdout()
        _assert_all_gone(run)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.chaos
def test_up_restarts_its_redis_and_runs_the_jobs_accepted_meanwhile(tmp_path: Path) -> None:
    with autoforge_up(tmp_path) as run:
        started = run.wait_ready()
        api_key = (run.cwd / "data" / "api-key").read_text().strip()
        valkey = {process for process in started if process.name == "valkey-server"}
        assert len(valkey) == 1, started
        # Something Redis holds: the append-only file must bring it back after the kill.
        redis = Redis.from_url(f"redis://127.0.0.1:{run.ports.redis}/0", decode_responses=True)
        try:
            redis.rpush(KEPT_LIST, "kept")
            time.sleep(AOF_FSYNC_S)
        finally:
            redis.close()

        # Freeze the supervisor while Redis is killed, so that the job below is surely
        # accepted while Redis is down (its children, in their own sessions, run on).
        run.process.send_signal(signal.SIGSTOP)
        try:
            os.kill(next(iter(valkey)).pid, signal.SIGKILL)
            wait_for(
                lambda: not still_running(valkey),
                timeout=GONE_DEADLINE_S,
                what="Redis is gone",
                describe=run.report,
            )
            job_id = _post_canary(run, api_key)
        finally:
            run.process.send_signal(signal.SIGCONT)

        wait_for(
            lambda: "restarted Redis" in run.stdout(),
            timeout=JOB_DEADLINE_S,
            what="Redis restarted",
            describe=run.report,
        )
        back_at = time.monotonic()
        assert re.search(
            r"Redis \(valkey-server .*\) exited unexpectedly: killed by SIGKILL", run.stderr()
        )
        wait_for(
            lambda: httpx.get(f"{run.api}/readyz", timeout=2).status_code == 200,
            timeout=JOB_DEADLINE_S,
            what="/readyz answers 200 again",
            describe=run.report,
        )
        _wait_until_succeeded(run, api_key, job_id)
        recovered_in = time.monotonic() - back_at
        print(f"\nthe job accepted while Redis was down was done {recovered_in:.1f} s after it")
        assert recovered_in <= REDIS_RECOVERY_BOUND_S, run.report()
        _enqueue_canary(run, api_key)
        redis = Redis.from_url(f"redis://127.0.0.1:{run.ports.redis}/0", decode_responses=True)
        try:
            assert redis.lrange(KEPT_LIST, 0, -1) == ["kept"]
        finally:
            redis.close()
        # Only Redis died: nothing else was restarted meanwhile (beat and the worker
        # waited for it).
        assert run.stderr().count("exited unexpectedly") == 1, run.report()
        for name in ("api", "worker", "beat", "flower"):
            assert len(re.findall(rf"started {name} \(pid", run.stdout())) == 1, run.report()
        restarted = {p for p in run.record_descendants() if p.name == "valkey-server"}
        assert len(restarted) == 1
        assert restarted != valkey

        run.process.send_signal(signal.SIGINT)
        try:
            code = run.process.wait(STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit within {STOP_DEADLINE_S:g} s\n{run.report()}", pytrace=False)
        assert code == 0, run.report()
        # Everyone stopped when asked: nothing had to be forced.
        assert "did not stop within" not in run.stderr(), run.report()
        assert "stopped Redis" in run.stdout()
        _assert_all_gone(run)


@pytest.mark.integration
@pytest.mark.slow
def test_sigkill_of_up_takes_every_child_with_it(tmp_path: Path) -> None:
    with autoforge_up(tmp_path) as run:
        started = run.wait_ready()
        assert "valkey-server" in {process.name for process in started}
        assert len(started) >= 7, started

        run.record_descendants()  # and any child restarted since it was ready
        run.process.kill()
        run.process.wait()
        # PR_SET_PDEATHSIG: each child got SIGTERM from the kernel, and shuts down.
        _assert_all_gone(run)


# --- the supervisor with small children ------------------------------------------------------


def _python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def _supervise(
    specs: list[ChildSpec], *, stop_when: Callable[[str], bool] | None = None, **kwargs: Any
) -> tuple[int, str, str]:
    """Run a :class:`Supervisor` here; returns (exit code, stdout, stderr).

    With ``stop_when``, a stop is requested as soon as the supervisor's output so far
    satisfies it (the children are where the test wants them), or at the start deadline.
    """
    out, err = io.StringIO(), io.StringIO()
    supervisor = Supervisor(
        specs,
        console=Console(out, err),
        restart_policy=RetryPolicy(base_s=0.05, max_s=0.2, jitter=False),
        **kwargs,
    )
    with StopSignals() as stop:
        ended = threading.Event()

        def request_stop(ready: Callable[[str], bool]) -> None:
            poll(lambda: ended.is_set() or ready(out.getvalue()), timeout=START_DEADLINE_S)
            if not ended.is_set():
                stop.request("test stop")

        watcher = None
        if stop_when is not None:
            watcher = threading.Thread(target=request_stop, args=(stop_when,), daemon=True)
            watcher.start()
        try:
            code = supervisor.run(stop)
        finally:
            ended.set()
            if watcher is not None:
                watcher.join()
    return code, out.getvalue(), err.getvalue()


@pytest.mark.integration
def test_a_child_that_keeps_crashing_is_reported_and_ends_the_run() -> None:
    code, out, err = _supervise(
        [
            ChildSpec("crasher", _python("print('boom: no config'); raise SystemExit(3)")),
            ChildSpec("sleeper", _python("import time; time.sleep(60)")),
        ],
        max_restarts=2,
        restart_window_s=60,
    )
    assert code == 1
    assert err.count("exited unexpectedly: exit code 3") == 3
    assert "crasher   | boom: no config" in out
    assert "autoforge | !!!   boom: no config" in err
    assert "restarting crasher in" in err
    assert "crasher crashed 3 times within 60 s: giving up" in err
    assert out.count("started crasher") == 3
    # The healthy child is stopped, not orphaned.
    assert "sleeper (stopped by SIGTERM)" in out


@pytest.mark.integration
def test_stop_escalates_and_kills_the_whole_process_group(tmp_path: Path) -> None:
    grandchild_file = tmp_path / "grandchild.pid"
    stubborn = f"""
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open({str(grandchild_file)!r}, "w").write(str(grandchild.pid))
print("ignoring SIGTERM", flush=True)
time.sleep(120)
"""
    polite = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGQUIT, lambda *_: sys.exit(7))
print("waiting for SIGQUIT", flush=True)
time.sleep(120)
"""
    code, out, err = _supervise(
        [
            ChildSpec("stubborn", _python(stubborn)),
            ChildSpec("polite", _python(polite), escalation_signal=signal.SIGQUIT),
        ],
        # Both children are set up: one ignores SIGTERM, the other waits for SIGQUIT.
        stop_when=lambda out: "| ignoring SIGTERM" in out and "| waiting for SIGQUIT" in out,
        stop_timeout_s=0.5,
        escalation_grace_s=5,
    )
    assert code == 0, err
    assert "stubborn  | ignoring SIGTERM" in out
    assert "polite did not stop within 0.5 s: sending SIGQUIT" in err
    assert "stubborn did not stop within 0.5 s: killing it (SIGKILL)" in err
    assert "polite did not stop" in err
    assert "polite still running" not in err
    assert "stubborn (killed by SIGKILL), polite (exit code 7)" in out
    grandchild = int(grandchild_file.read_text())
    stat = _read_stat(grandchild)
    # (Read after the stop: it may already be gone, which is what we want.)
    identity = set() if stat is None else {ProcessId(grandchild, stat[3], stat[0])}
    # SIGKILL is delivered asynchronously: the process may take a moment to finish dying
    # (and may linger as a zombie of init, which has finished all the same).
    wait_for(
        lambda: not still_running(identity),
        timeout=GONE_DEADLINE_S,
        what="the child's own child is killed with its process group",
        describe=lambda: str(_read_stat(grandchild)),
    )


@pytest.mark.integration
def test_a_redis_that_keeps_failing_to_restart_ends_the_run(tmp_path: Path) -> None:
    port = free_ports().redis
    redis = EmbeddedRedis(tmp_path / "redis", port=port, persistent=True)
    redis.start()
    try:
        pid = redis.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not redis.running, timeout=GONE_DEADLINE_S, what="Redis is gone")
        # Someone else takes its port: every restart fails.
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            code, out, err = _supervise(
                [ChildSpec("sleeper", _python("import time; time.sleep(60)"))],
                redis=redis,
                max_restarts=2,
                restart_window_s=60,
            )
    finally:
        redis.stop()
    assert code == 1
    assert f"Redis (valkey-server on port {port}) exited unexpectedly: killed by SIGKILL" in err
    assert "restarting Redis in" in err
    assert err.count("Redis did not start again") == 2
    assert "Address already in use" in err
    assert "Redis crashed 3 times within 60 s: giving up" in err
    assert "restarted Redis" not in out
    assert "sleeper (stopped by SIGTERM)" in out


_TALKER = "import time; print('token=s3cr3t-value', flush=True); time.sleep(60)"


@pytest.mark.integration
def test_forwarded_lines_hide_secrets() -> None:
    code, out, _ = _supervise(
        [
            ChildSpec(
                "talker",
                _python("import time; print('token=s3cr3t-value', flush=True); time.sleep(60)"),
            )
        ],
        stop_when=lambda out: "talker    | token=" in out,
        secrets=("s3cr3t-value",),
    )
    assert code == 0
    assert "talker    | token=***" in out
    assert "s3cr3t-value" not in out


def test_busy_ports_are_named_by_their_variables(tmp_path: Path) -> None:
    ports = free_ports()
    listeners = []
    try:
        for port in ports.all():
            listener = socket.socket()
            listener.bind(("127.0.0.1", port))
            listener.listen()
            listeners.append(listener)
        settings = Settings(
            _env_file=None,
            database_url=str(tmp_path / "db.sqlite"),
            api_port=ports.api,
            flower_port=ports.flower,
            embedded_redis_port=ports.redis,
        )
        with pytest.raises(PortInUse) as caught:
            check_ports(settings, UpOptions())
        message = caught.value.message
        assert f"API_PORT={ports.api}" in message
        assert f"FLOWER_PORT={ports.flower}" in message
        assert f"EMBEDDED_REDIS_PORT={ports.redis}" in message
        # Switched-off processes need no port.
        with pytest.raises(PortInUse) as caught:
            check_ports(settings, UpOptions(flower=False))
        assert "FLOWER_PORT" not in caught.value.message
    finally:
        for listener in listeners:
            listener.close()
