"""The lease keeper: a small process that renews the leases of one worker's running jobs.

A worker's main process starts it (see :mod:`jobs.leases`) and writes to its stdin,
one JSON object a line:

- ``{"held": [[job_id, owner], ...]}``: every job running in the worker now, with the
  lease owner of the process running it. Replaces the previous list.
- ``{"release": [job_id, owner]}``: that process is gone; end its lease now so that the
  job may be claimed again at once.

Every third of ``JOB_LEASE_S`` it renews all held leases in one UPDATE. It runs apart
from the processes that run jobs, so nothing a job does (a C call that keeps the GIL, a
stuck thread) can stop the renewal; and apart from the worker's main process, which
forks pool processes and must therefore never load the libSQL SDK (a forked child of a
process that did cannot reach a remote database). It exits when its stdin closes or its
parent is gone, and only then (it ignores SIGINT and SIGTERM: a worker's warm shutdown
still needs it): the leases of a dead worker then lapse within ``JOB_LEASE_S``.

Run as ``python -m jobs.lease_keeper --worker ID --parent PID``; settings come from
the environment, as in :mod:`workers.main`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from core.logging import configure_logging
from core.settings import Settings, load_settings
from db.database import Database
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction

log = logging.getLogger("autoforge.leases")

STDIN = 0
# How often, at most, to look whether the parent is still there.
PARENT_CHECK_S = 1.0
# After a failed renewal, try again sooner than the regular period.
RETRY_AFTER_FAILURE_S = 1.0


@dataclass
class LeaseKeeper:
    """Renews the held leases on schedule and releases those of dead processes."""

    db: Database
    lease_s: float
    held: list[tuple[str, str]] = field(default_factory=list)

    @property
    def period_s(self) -> float:
        return self.lease_s / 3

    def handle(self, message: dict[str, Any]) -> None:
        if "held" in message:
            self.held = [(str(job_id), str(owner)) for job_id, owner in message["held"]]
        elif "release" in message:
            job_id, owner = (str(part) for part in message["release"])
            # Never renew it again, even before the next list arrives.
            self.held = [pair for pair in self.held if pair != (job_id, owner)]
            self.release(job_id, owner)

    def renew(self) -> bool:
        """Renew every held lease in one write; False if the database refused."""
        if not self.held:
            return True
        held = list(self.held)
        try:
            renewed = write_transaction(
                self.db, lambda s: JobRepository(s).renew_leases(held, lease_s=self.lease_s)
            )
        except Exception:  # the next renewal may work: keep going
            log.warning("could not renew the leases of %d job(s)", len(held), exc_info=True)
            return False
        log.debug("renewed %d of %d lease(s)", renewed, len(held))
        return True

    def release(self, job_id: str, owner: str) -> None:
        try:
            released = write_transaction(
                self.db, lambda s: JobRepository(s).release_lease(job_id, owner=owner)
            )
        except Exception:  # it lapses by itself within the lease
            log.warning("could not release the lease of job %s", job_id, exc_info=True)
            return
        if released:
            log.info("job %s: its process is gone; lease released", job_id)


class _Lines:
    """Complete lines from a pipe, waiting at most a given time for them."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""
        self.closed = False

    def read(self, timeout: float) -> list[bytes]:
        ready, _, _ = select.select([self._fd], [], [], max(timeout, 0.0))
        if not ready:
            return []
        chunk = os.read(self._fd, 65536)
        if not chunk:
            self.closed = True
            return []
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return [line for line in lines if line.strip()]


def run(settings: Settings, parent_pid: int) -> None:
    """Serve the worker whose main process is ``parent_pid`` until it goes away."""
    db = Database(settings)
    keeper = LeaseKeeper(db=db, lease_s=settings.job_lease_s)
    lines = _Lines(STDIN)
    next_renewal = time.monotonic() + keeper.period_s
    try:
        while os.getppid() == parent_pid:
            wait = min(next_renewal - time.monotonic(), PARENT_CHECK_S)
            for line in lines.read(wait):
                try:
                    message = json.loads(line)
                except ValueError:
                    log.error("unreadable message from the worker ignored: %r", line[:200])
                    continue
                keeper.handle(message)
            if lines.closed:
                break
            if time.monotonic() >= next_renewal:
                ok = keeper.renew()
                next_renewal = time.monotonic() + (
                    keeper.period_s if ok else min(keeper.period_s, RETRY_AFTER_FAILURE_S)
                )
    finally:
        db.dispose()


def main() -> None:
    # Ctrl-C reaches the whole process group, and a supervisor may signal it too; the
    # worker may then take a while to finish its jobs (a warm shutdown), and their leases
    # must live on meanwhile. The keeper ends when its worker does (see ``run``).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", required=True, help="the worker's id (for the log)")
    parser.add_argument("--parent", required=True, type=int, help="the worker's main pid")
    arguments = parser.parse_args()
    settings = load_settings()
    configure_logging(settings)
    log.info("lease keeper of worker %s started (pid %d)", arguments.worker, os.getpid())
    run(settings, arguments.parent)
    log.info("lease keeper of worker %s stopped", arguments.worker)


if __name__ == "__main__":
    main()
