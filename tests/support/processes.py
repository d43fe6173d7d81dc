"""Real processes for end-to-end tests: Celery workers and beat, started and always reaped.

A :class:`Pipeline` owns a migrated libSQL file, a Redis URL, the settings that every
process shares (short timings, so that redelivery takes seconds rather than minutes), a
:class:`~jobs.runtime.Runtime` in the test process to enqueue jobs and read the
ledger, and every worker and beat it starts. Each process runs in its own session
(process group) and writes to a log file under the pipeline's folder; failure messages
quote the tails of those logs. Closing the pipeline kills every process (SIGKILL to its
whole group: no test looks at them afterwards, and a warm shutdown takes seconds) and
fails if any member of a group is left running.
:meth:`Pipeline.api_client` serves the enqueue API in the test process on the same
database and Redis.

The helpers read ``/proc``: these tests run on Linux, like the workers they test. The
waits are :mod:`tests.support.polling`'s (``wait_for`` and ``wait_until`` are re-exported
here for the tests that use this module).
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from core.settings import Settings
from db.repositories.jobs import JobRepository
from domain.jobs import Job, JobStatus
from jobs.queues import broker_lists
from jobs.runtime import Runtime
from tasks.canary.models import CanaryEffectModel
from tasks.registry import kind_registry
from tests.conftest import copy_migrated, make_settings, migrated_template_file
from tests.support.api import TestClient, client_for
from tests.support.logs import LogFile, LogSearch
from tests.support.polling import poll
from tests.support.polling import wait_for as wait_for
from tests.support.polling import wait_until as wait_until
from workers.app import create_celery

PROJECT_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "e2e-test-key"

# Short timings: a lost job comes back in seconds. The visibility timeout must exceed
# every time limit and the longest retry delay (the settings check it).
FAST_TIMINGS: Mapping[str, Any] = {
    "job_time_limits_s": dict.fromkeys(kind_registry().names, 20),
    "celery_visibility_timeout_s": 25,
    "job_retry_backoff_s": 0.2,
    "job_retry_backoff_max_s": 2,
    "celery_unacked_restore_interval_s": 1,
    "job_lease_s": 3,
    "outbox_republish_after_s": 5,
    "sweeper_interval_s": 1,
    "log_level": "INFO",
    # Beat would otherwise enqueue an embedding job every 10 minutes (local's default),
    # and the sweeper catch one up: jobs no test asked for.
    "embed_stale_cron": "off",
}

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 40
# How a worker's lease keeper process is started (``python -m jobs.lease_keeper``).
LEASE_KEEPER_MODULE = "jobs.lease_keeper"
# What RedBeat logs when this beat holds the schedule lock (and so is the one that fires).
BEAT_ACQUIRED_LOCK = "beat: Acquired lock"

# --- processes in /proc ------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of ``pid``, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[2])


def _live_processes() -> Iterator[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process that is not a zombie."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None and stat[0] not in ("Z", "X"):
            yield int(entry.name), stat[1], stat[2]


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (a prefork worker's pool processes)."""
    return sorted(child for child, parent, _ in _live_processes() if parent == pid)


def group_members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``."""
    return sorted(pid for pid, _, group in _live_processes() if group == pgid)


def is_alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


# --- one Celery process ------------------------------------------------------------------


class CeleryProcess:
    """One ``celery -A workers.main ...`` process, leader of its own session.

    Its stdout and stderr go to ``log_path``. Everything it forks (the prefork pool)
    stays in its process group, so :meth:`kill_group` and :meth:`stop` reach all of it.
    """

    def __init__(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.log_reader = LogFile(log_path)
        self._terminated = False
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise

    def __repr__(self) -> str:
        return f"CeleryProcess({self.name!r}, pid={self.pid}, alive={self.alive})"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        """Everything the process has logged so far."""
        return self.log_reader.text()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            tail = self.log_reader.tail(lines)
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return tail or "(log empty)"

    def describe(self) -> str:
        state = "running" if self.alive else f"exited with {self.process.returncode}"
        return (
            f"--- {self.name} (pid {self.pid}, {state}), last lines of {self.log_path}:\n"
            f"{self.log_tail()}"
        )

    def wait_for_log(
        self, pattern: str, *, timeout: float = START_TIMEOUT_S, describe: Callable[[], str]
    ) -> re.Match[str]:
        """Wait until the log matches ``pattern`` (a regular expression, matching within
        one line), whether the line was written before or during the wait; fail if the
        process exits without writing it."""
        search = LogSearch(self.log_reader, pattern)

        def probe() -> re.Match[str] | None:
            # Checked before reading: a line written just before an exit is still found.
            alive = self.alive
            match = search()
            if match is None and not alive:
                pytest.fail(
                    f"{self.name} exited (code {self.process.returncode}) before its log "
                    f"showed {pattern!r}\n{describe()}",
                    pytrace=False,
                )
            return match

        return wait_for(
            probe, timeout=timeout, what=f"{self.name} logging {pattern!r}", describe=describe
        )

    def pool_processes(self) -> list[int]:
        """The worker's pool (child) processes; not its lease keeper."""
        return [pid for pid in children_of(self.pid) if LEASE_KEEPER_MODULE not in _cmdline(pid)]

    def lease_keepers(self) -> list[int]:
        """The worker's lease keeper process (one, while the worker runs)."""
        return [pid for pid in children_of(self.pid) if LEASE_KEEPER_MODULE in _cmdline(pid)]

    def kill_group(self) -> None:
        """SIGKILL the process and everything in its group (a power cut for this worker);
        returns once none of them is left."""
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_S)
        # Signals are delivered asynchronously: the pool processes may take a moment.
        wait_until(
            lambda: not group_members(self.pid),
            timeout=STOP_TIMEOUT_S,
            what=f"every process of {self.name}'s group gone after SIGKILL",
            describe=lambda: f"left: {group_members(self.pid)}",
        )

    def terminate(self) -> None:
        """Ask for a warm shutdown (SIGTERM, sent once); :meth:`stop` waits for it."""
        if self.alive and not self._terminated:
            self._terminated = True
            with suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def kill(self, timeout: float = STOP_TIMEOUT_S) -> list[int]:
        """SIGKILL the process and its group at once (a test is over; its warm shutdown
        would only take seconds). Returns the pids of group members still alive
        afterwards (none, unless something is badly wrong)."""
        try:
            with suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout)
            poll(lambda: not group_members(self.pid), timeout=timeout)
            return group_members(self.pid)
        finally:
            self._log.close()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> list[int]:
        """SIGTERM (a warm shutdown), then SIGKILL to the group. Returns the pids of group
        members still alive afterwards (none, unless something is badly wrong)."""
        try:
            self.terminate()
            if self._terminated:
                with suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout)
            # Pool processes may outlive a parent that died: end them as well.
            with suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout)
            poll(lambda: not group_members(self.pid), timeout=timeout)
            return group_members(self.pid)
        finally:
            self._log.close()


# --- the pipeline: database, Redis, settings, processes ---------------------------------


class Pipeline:
    """A migrated database, a Redis URL, shared settings, and the processes started."""

    def __init__(self, workdir: Path, redis_url: str, overrides: Mapping[str, Any]) -> None:
        self.workdir = workdir
        self.db_path = workdir / "db" / "autoforge.db"
        self.redis_url = redis_url
        self.overrides = {**FAST_TIMINGS, **overrides}
        self.settings: Settings = make_settings(self.db_path, redis_url=redis_url, **self.overrides)
        copy_migrated(migrated_template_file(), self.db_path)
        self.app = create_celery(self.settings)
        self.runtime: Runtime = self.app.autoforge_runtime
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.processes: list[CeleryProcess] = []

    def settings_with(self, **extra: Any) -> Settings:
        """The pipeline's settings plus ``extra`` (e.g. API keys for an in-process API)."""
        return make_settings(self.db_path, redis_url=self.redis_url, **{**self.overrides, **extra})

    @contextmanager
    def api_client(self) -> Iterator[TestClient]:
        """The enqueue API on the pipeline's database and Redis, in this process, sending
        ``Authorization: Bearer`` :data:`API_KEY` with every request."""
        settings = self.settings_with(autoforge_api_keys=API_KEY)
        with client_for(settings, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
            yield client

    # --- starting processes --------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """This process's environment, minus every settings variable, plus ours."""
        ours = {name.upper() for name in Settings.model_fields}
        env = {key: value for key, value in os.environ.items() if key.upper() not in ours}
        env["APP_ENV"] = "local"
        env["DATABASE_URL"] = str(self.db_path)
        env["REDIS_URL"] = self.redis_url
        for name, value in self.overrides.items():
            structured = isinstance(value, dict | list)
            env[name.upper()] = json.dumps(value) if structured else str(value)
        env["PYTHONPATH"] = os.pathsep.join(
            part for part in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if part
        )
        return env

    def _start(self, role: str, arguments: Sequence[str]) -> CeleryProcess:
        name = f"{role}-{len(self.processes) + 1}"
        process = CeleryProcess(
            name,
            [sys.executable, "-m", "celery", "-A", "workers.main", *arguments],
            env=self.environment(),
            cwd=self.workdir,
            log_path=self.workdir / "logs" / f"{name}.log",
        )
        self.processes.append(process)
        return process

    def start_worker(
        self,
        queues: Sequence[str] | None = ("canary", "maintenance"),
        *,
        concurrency: int = 2,
        pool: str = "prefork",
    ) -> CeleryProcess:
        """A worker on ``queues`` (None: no ``-Q``, the worker's default), returned once it
        says it is ready and its pool processes (prefork) and its lease keeper exist."""
        node = f"e2e-{uuid.uuid4().hex[:8]}"
        selection = [] if queues is None else ["-Q", ",".join(queues)]
        worker = self._start(
            "worker",
            [
                "worker",
                *selection,
                "-c", str(concurrency),
                "--pool", pool,
                "--loglevel", "INFO",
                "-n", f"{node}@%h",
            ],
        )  # fmt: skip
        worker.wait_for_log(rf"{re.escape(node)}@\S+ ready\.", describe=self.describe)
        processes = concurrency if pool == "prefork" else 0
        wait_until(
            lambda: len(worker.pool_processes()) == processes and len(worker.lease_keepers()) == 1,
            timeout=START_TIMEOUT_S,
            what=f"{processes} pool processes and a lease keeper of {worker.name}",
            describe=self.describe,
        )
        return worker

    def launch_beat(self) -> CeleryProcess:
        """A RedBeat process, returned at once (see :meth:`start_beat`)."""
        return self._start("beat", ["beat", "--loglevel", "INFO"])

    def start_beat(self, *, lock_holder: bool = True) -> CeleryProcess:
        """A RedBeat process, returned once it runs (and, if ``lock_holder``, once it holds
        the schedule lock, i.e. it is the one that fires)."""
        beat = self.launch_beat()
        self.wait_for_beat(beat, lock_holder=lock_holder)
        return beat

    def wait_for_beat(self, beat: CeleryProcess, *, lock_holder: bool) -> None:
        beat.wait_for_log(r"beat: Starting\.\.\.", describe=self.describe)
        if lock_holder:
            beat.wait_for_log(BEAT_ACQUIRED_LOCK, describe=self.describe)

    # --- reading the ledger and Redis ----------------------------------------------------

    def job(self, job_id: str) -> Job:
        with self.runtime.db.read_session() as session:
            job = JobRepository(session).get(job_id)
        assert job is not None, f"job {job_id} is not in the ledger"
        return job

    def jobs(self, job_ids: Iterable[str]) -> list[Job]:
        return [self.job(job_id) for job_id in job_ids]

    def effects(self) -> list[tuple[str, int]]:
        """Every canary effect row: (job id, attempt that wrote it)."""
        with self.runtime.db.read_session() as session:
            rows = session.execute(
                select(CanaryEffectModel.job_id, CanaryEffectModel.attempt).order_by(
                    CanaryEffectModel.job_id
                )
            )
            return [(job_id, attempt) for job_id, attempt in rows]

    def queue_length(self, queue: str) -> int:
        """Messages waiting in ``queue``, at every priority."""
        total = 0
        for name in broker_lists(queue):
            length = self.redis.llen(name)
            assert isinstance(length, int)
            total += length
        return total

    def task_outcomes(self, job_id: str) -> list[dict[str, Any]]:
        """What each finished run of the job's task returned, from the workers' logs.

        The logs, not Celery's result backend, because the ledger is where results live:
        the result backend may be turned off for job tasks.
        """
        pattern = re.compile(
            rf"Task [\w.]+\[{re.escape(job_id)}\] succeeded in [\d.e-]+s: (\{{.*\}})$",
            re.MULTILINE,
        )
        outcomes: list[dict[str, Any]] = []
        for process in self.processes:
            for match in pattern.finditer(process.log_text()):
                outcomes.append(ast.literal_eval(match.group(1)))
        return outcomes

    def wait_for_job(self, job_id: str, status: JobStatus, *, timeout: float = 30.0) -> Job:
        """Wait until the ledger shows ``status``. A job that reaches another final status
        first fails at once."""

        def probe() -> Job | None:
            job = self.job(job_id)
            if job.status == status:
                return job
            if job.status.is_final:
                pytest.fail(
                    f"job {job_id} ended {job.status}, expected {status}\n"
                    f"{self.describe([job_id])}",
                    pytrace=False,
                )
            return None

        return wait_for(
            probe,
            timeout=timeout,
            what=f"job {job_id} {status}",
            describe=lambda: self.describe([job_id]),
        )

    def wait_for_task_outcomes(
        self, job_id: str, count: int, *, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Wait until workers have finished ``count`` deliveries of the job's task message;
        returns what each returned (e.g. ``{"skipped": True}`` for a dropped redelivery)."""

        def probe() -> list[dict[str, Any]] | None:
            outcomes = self.task_outcomes(job_id)
            return outcomes if len(outcomes) >= count else None

        return wait_for(
            probe,
            timeout=timeout,
            what=f"{count} finished deliveries of job {job_id}",
            describe=lambda: self.describe([job_id]),
        )

    def describe(self, job_ids: Iterable[str] = ()) -> str:
        """What a failure message should show: ledger rows, queues, process logs."""
        parts = []
        for job_id in job_ids:
            try:
                parts.append(f"ledger: {self.job(job_id)}")
            except Exception as exc:  # describing must not hide the original failure
                parts.append(f"ledger row of {job_id} unreadable: {exc!r}")
        try:
            queues = {name: self.queue_length(name) for name in self.runtime.kinds.queues}
            parts.append(f"redis queue lengths: {queues}")
        except redis.RedisError as exc:
            parts.append(f"redis unreadable: {exc!r}")
        parts.extend(process.describe() for process in self.processes)
        return "\n".join(parts)

    # --- the end -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process; fail if one left a process behind."""
        leftovers: dict[str, list[int]] = {}
        try:
            # No warm shutdown: no test looks at the processes after it ends, and a
            # worker's warm shutdown takes seconds even when it is idle.
            for process in reversed(self.processes):
                left = process.kill()
                if left:
                    leftovers[process.name] = left
        finally:
            self.redis.close()
            self.app.close()
            self.runtime.db.dispose()
        if leftovers:
            for pids in leftovers.values():
                for pid in pids:
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            pytest.fail(f"processes left behind after SIGKILL: {leftovers}", pytrace=False)


@contextmanager
def open_pipeline(workdir: Path, redis_url: str, **overrides: Any) -> Iterator[Pipeline]:
    """A :class:`Pipeline` in ``workdir`` on ``redis_url``; settings ``overrides`` (field
    names, Python values) apply to the test process and every process it starts."""
    pipeline = Pipeline(workdir, redis_url, overrides)
    try:
        yield pipeline
    finally:
        pipeline.close()
