"""Lease renewal for a whole worker, from outside the processes that run its jobs.

A running job holds a lease in the ledger; if nobody renews it, the job counts as lost
and the sweeper hands it to another worker. Renewing from a thread inside the job's own
process failed whenever the job's code kept the GIL (a long regular expression, a C
call): the thread could not run, the lease lapsed, and a second copy of a job that was
still running started elsewhere.

So the worker's main process (the prefork parent, which runs no job code) knows which
jobs its pool processes run, from Celery's own record of active requests, and hands that
list to a small lease keeper process (:mod:`jobs.lease_keeper`), which renews all of
them in one UPDATE every third of ``JOB_LEASE_S``. When a pool process dies, its lease is
released at once, before Celery hands the message back, so the next delivery can claim
the job without waiting for the lease to lapse. The keeper, not a thread of the main
process, talks to the database: a process that loaded the libSQL SDK must not fork, and
the main process forks pool processes for as long as it lives.

The solo and threads pools run jobs in the main process itself. They work the same way:
the list is sent when a job is accepted, before its code starts, and the keeper goes on
renewing it while the job runs, whatever the job does with the GIL.

A lease owner names the worker (node name and main pid) and the process that claimed
the job: ``"<node>:<main pid>:<pid>"``. It is computed the same way in the main process
(from the pool process's pid that Celery reports) and in the pool process itself.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

from celery.worker import state as worker_state
from celery.worker.request import Request

from core.settings import Settings

log = logging.getLogger("autoforge.leases")

# How often the main process sends the full list of running jobs (it also sends it at
# once when a job starts or fails): finished jobs drop off the keeper's list this fast.
SYNC_INTERVAL_S = 1.0
KEEPER_STOP_TIMEOUT_S = 5.0
# A keeper that keeps dying is started again at most this often.
KEEPER_RESTART_INTERVAL_S = 5.0


class LeaseRenewalNotStarted(RuntimeError):
    """A job was claimed in a process whose worker never started lease renewal."""


class LeaseRenewal:
    """The worker main process's side of lease renewal; every process can name its owner.

    :meth:`start` runs in the worker's main process before the pool forks, so pool
    processes inherit the worker's id; :meth:`forget` runs in each forked pool process.
    """

    def __init__(self, settings: Settings, job_task_names: frozenset[str]) -> None:
        self._settings = settings
        #: The Celery tasks that run ledger jobs, whose leases are kept.
        self.job_task_names = job_task_names
        self.worker_id: str | None = None
        self._main_pid: int | None = None
        self._keeper: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._restart_at = 0.0

    def __repr__(self) -> str:
        return f"LeaseRenewal(worker_id={self.worker_id!r})"

    # --- every process of the worker --------------------------------------------------

    def owner(self, pid: int | None = None) -> str:
        """The lease owner of process ``pid`` (default: this process) of this worker."""
        if self.worker_id is None:
            raise LeaseRenewalNotStarted("lease renewal was not started in this worker")
        return f"{self.worker_id}:{pid if pid is not None else os.getpid()}"

    # --- the worker's main process ------------------------------------------------------

    def start(self, nodename: str) -> None:
        """Name the worker, start its lease keeper and the thread that keeps it informed."""
        self._main_pid = os.getpid()
        self.worker_id = f"{nodename}:{self._main_pid}"
        with self._lock:
            self._spawn_keeper()
        self._thread = threading.Thread(target=self._keep_informed, name="leases", daemon=True)
        self._thread.start()

    def sync(self) -> None:
        """Send the keeper the jobs running in this worker now."""
        self._send({"held": self._held_now()})

    def release(self, job_id: str, pid: int) -> None:
        """Process ``pid`` stopped running ``job_id`` without ending it: drop its lease."""
        self._send({"release": [job_id, self.owner(pid)]})

    def forget(self) -> None:
        """In a forked pool process: drop the main process's pipe to the keeper."""
        if self._main_pid is None or os.getpid() == self._main_pid:
            return  # the main process itself (the solo pool runs jobs there)
        keeper, self._keeper = self._keeper, None
        if keeper is not None and keeper.stdin is not None:
            keeper.stdin.close()

    def stop(self) -> None:
        """At worker shutdown: stop informing the keeper and let it exit."""
        if self._main_pid != os.getpid():
            return
        self._stopping.set()
        with self._lock:
            keeper, self._keeper = self._keeper, None
        if keeper is None:
            return
        if keeper.stdin is not None:
            keeper.stdin.close()  # the keeper exits when its input ends
        try:
            keeper.wait(KEEPER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            keeper.kill()
            keeper.wait()

    def _spawn_keeper(self) -> None:
        assert self.worker_id is not None
        self._keeper = subprocess.Popen(  # noqa: S603 - our own module, no shell
            [
                sys.executable,
                "-m",
                "jobs.lease_keeper",
                "--worker",
                self.worker_id,
                "--parent",
                str(os.getpid()),
            ],
            stdin=subprocess.PIPE,
        )

    def _held_now(self) -> list[list[str]]:
        held = []
        # tuple() of the set of weak references copies it without yielding the GIL,
        # while the main thread may be adding to it.
        for reference in tuple(worker_state.active_requests.data):
            request = reference()
            if request is None or request.name not in self.job_task_names:
                continue
            if request.worker_pid is None:
                continue
            held.append([request.id, self.owner(request.worker_pid)])
        return held

    def _send(self, message: dict[str, Any]) -> None:
        if self._main_pid != os.getpid():
            return  # only the main process talks to the keeper
        line = json.dumps(message).encode() + b"\n"
        with self._lock:
            if self._stopping.is_set():
                return
            if self._keeper is None or self._keeper.poll() is not None:
                self._restart_keeper()
            if self._keeper is None or self._keeper.stdin is None:
                return
            try:
                self._keeper.stdin.write(line)
                self._keeper.stdin.flush()
            except OSError:
                log.error("the lease keeper stopped reading; starting a new one", exc_info=True)
                self._restart_keeper()

    def _restart_keeper(self) -> None:
        if time.monotonic() < self._restart_at:
            return
        self._restart_at = time.monotonic() + KEEPER_RESTART_INTERVAL_S
        old = self._keeper
        if old is not None:
            log.error("the lease keeper exited (%s); starting a new one", old.poll())
            if old.stdin is not None:
                old.stdin.close()
            if old.poll() is None:
                old.kill()
            old.wait()
        self._spawn_keeper()

    def _keep_informed(self) -> None:
        while not self._stopping.wait(min(SYNC_INTERVAL_S, self._settings.job_lease_s / 3)):
            try:
                self.sync()
            except Exception:  # never let the thread die: leases depend on it
                log.exception("could not inform the lease keeper")


class JobRequest(Request):  # type: ignore[misc]
    """Celery's request of a job task, in the worker's main process: tells the lease
    keeper when a job starts running in a pool process, and when it ends in failure
    (the pool process died, hit its hard time limit, or could not record the end)."""

    def _leases(self) -> LeaseRenewal:
        leases: LeaseRenewal = self.task.app.autoforge_runtime.leases
        return leases

    def on_accepted(self, pid: int, time_accepted: float) -> None:
        super().on_accepted(pid, time_accepted)
        self._leases().sync()  # before the job's code runs (solo pool: it runs next)

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        # Release first: Celery may hand the message back right away (a lost pool
        # process), and the next delivery should find the lease ended. Only a lease
        # still held by this attempt's process, on a job still running, is released.
        self._release()
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        self._leases().sync()

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft:  # the pool process is killed: its attempt is over
            self._release()
        super().on_timeout(soft, timeout)

    def _release(self) -> None:
        leases = self._leases()
        if self.worker_pid is not None and self.name in leases.job_task_names:
            leases.release(self.id, self.worker_pid)
