"""Persistence of the canary's effects. Takes a session; the caller owns the transaction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from tasks.canary.models import CanaryEffectModel


class CanaryEffectRepository:
    """The ``canary_effects`` table."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, job_id: str, *, attempt: int) -> None:
        """Record the effect of job ``job_id``, written by attempt ``attempt``. A second
        effect of the same job violates the primary key: effects happen exactly once."""
        self.session.add(CanaryEffectModel(job_id=job_id, attempt=attempt))
        self.session.flush()

    def all(self) -> list[tuple[str, int]]:
        """Every effect: (job id, attempt that wrote it), by job id."""
        rows = self.session.execute(
            select(CanaryEffectModel.job_id, CanaryEffectModel.attempt).order_by(
                CanaryEffectModel.job_id
            )
        )
        return [(job_id, attempt) for job_id, attempt in rows]
