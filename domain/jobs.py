"""Jobs: the durable ledger's entity. The ledger, not Redis, is the truth about a job."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.prompts import new_id


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def request_fingerprint(kind: str, arguments: dict[str, Any]) -> str:
    """A stable hash of what was asked, to tell an idempotent replay from a conflict."""
    canonical = json.dumps({"kind": kind, "arguments": arguments}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class JobError:
    """Why a job (or its last attempt) failed: the error type and its message."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class ProgressDetail:
    """A job's progress in its own units (an evaluation: cases done of total)."""

    done: int
    total: int
    unit: str


@dataclass(frozen=True, slots=True)
class Job:
    """One accepted unit of background work and its state."""

    #: The name of a declared job kind (``tasks/<kind>/kind.py``).
    kind: str
    arguments: dict[str, Any]
    status: JobStatus = JobStatus.QUEUED
    idempotency_key: str | None = None
    request_hash: str | None = None
    attempts: int = 0
    max_attempts: int = 1
    progress: float = 0.0
    result: dict[str, Any] | None = None
    error: JobError | None = None
    lease_expires_at: datetime | None = None
    lease_owner: str | None = None
    available_at: datetime | None = None
    published_at: datetime | None = None
    id: str = field(default_factory=new_id)
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
