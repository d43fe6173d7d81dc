"""What a job's logic gets to see: the job, the settings, the database, progress reports.

While the logic runs, a lease keeper renews the job's lease in the ledger; if the worker
dies, the lease lapses and the outbox sweeper hands the job to another worker.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from sqlalchemy.orm import Session

from core.settings import Settings
from db.database import Database
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import Job

log = logging.getLogger("autoforge.jobs")


def _no_effects(session: Session) -> None:
    return None


@dataclass(frozen=True)
class JobOutcome:
    """What a successful job produced: its result (JSON) and a writer of its effects.

    ``write_effects`` runs inside the same write transaction that marks the job
    succeeded, so the effects and the status commit together or not at all.
    """

    result: dict[str, Any]
    write_effects: Callable[[Session], None] = field(default=_no_effects)


@dataclass
class JobContext:
    job: Job
    settings: Settings
    db: Database
    redis: Callable[[], Any] = field(repr=False, default=lambda: None)

    @property
    def attempt(self) -> int:
        return self.job.attempts

    def report_progress(self, fraction: float) -> None:
        """Record progress (0..1) in the ledger, visible in ``GET /v1/jobs/{id}``."""
        write_transaction(
            self.db,
            lambda s: JobRepository(s).set_progress(
                self.job.id, attempt=self.attempt, progress=fraction
            ),
        )


class LeaseKeeper:
    """Renews a running job's lease every third of its length, in a daemon thread."""

    def __init__(self, db: Database, job: Job, lease_s: float) -> None:
        self._db, self._job, self._lease_s = db, job, lease_s
        self._stop = threading.Event()
        # Run in a copy of the job's context, so that its log lines carry the job's fields.
        self._thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._run,),
            name=f"lease-{job.id[:8]}",
            daemon=True,
        )

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self._lease_s)

    def _run(self) -> None:
        while not self._stop.wait(self._lease_s / 3):
            try:
                owned = write_transaction(
                    self._db,
                    lambda s: JobRepository(s).renew_lease(
                        self._job.id, attempt=self._job.attempts, lease_s=self._lease_s
                    ),
                )
            except Exception:  # a missed renewal is not fatal: the next one may work
                log.warning("could not renew the lease of job %s", self._job.id, exc_info=True)
                continue
            if not owned:
                log.info("job %s is no longer ours (cancelled or superseded)", self._job.id)
                return
