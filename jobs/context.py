"""What a job's logic gets to see: the job, the settings, the database, progress reports.

While the logic runs, the worker's lease keeper renews the job's lease in the ledger from
outside this process (:mod:`jobs.leases`); if the worker dies, the lease lapses and
the outbox sweeper hands the job to another worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from domain.jobs import Job

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from db.database import Database


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

    def report_progress(
        self, fraction: float, *, partial_result: dict[str, Any] | None = None
    ) -> None:
        """Record progress (0..1) in the ledger, visible in ``GET /v1/jobs/{id}``, with
        the counts so far as the job's result until it ends (``partial_result``)."""
        from db.repositories.jobs import JobRepository
        from db.transaction import write_transaction

        write_transaction(
            self.db,
            lambda s: JobRepository(s).set_progress(
                self.job.id, attempt=self.attempt, progress=fraction, partial_result=partial_result
            ),
        )
