"""The Evaluation aggregate: one run of a prompt against test cases, with its results."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.prompts import new_id
from domain.schemas import EvaluationMetrics


class EvaluationStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (
            EvaluationStatus.COMPLETED,
            EvaluationStatus.FAILED,
            EvaluationStatus.CANCELLED,
        )


# pending -> running -> completed | failed | cancelled; a pending run may also be cancelled
# or fail before it starts.
ALLOWED_TRANSITIONS: dict[EvaluationStatus, frozenset[EvaluationStatus]] = {
    EvaluationStatus.PENDING: frozenset(
        {EvaluationStatus.RUNNING, EvaluationStatus.CANCELLED, EvaluationStatus.FAILED}
    ),
    EvaluationStatus.RUNNING: frozenset(
        {EvaluationStatus.COMPLETED, EvaluationStatus.FAILED, EvaluationStatus.CANCELLED}
    ),
    EvaluationStatus.COMPLETED: frozenset(),
    EvaluationStatus.FAILED: frozenset(),
    EvaluationStatus.CANCELLED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class TestResult:
    """The outcome of one test case of an evaluation."""

    __test__ = False  # not a pytest test class

    evaluation_id: str
    test_case_name: str
    score: float
    passed: bool
    input_data: dict[str, Any] | None = None
    expected_output: str | None = None
    actual_output: str | None = None
    details: dict[str, Any] | None = None
    execution_time_ms: int | None = None
    tokens_used: int | None = None
    id: str = field(default_factory=new_id)
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """An evaluation run. It refers to its prompt by id only (another aggregate)."""

    prompt_id: str
    provider: str
    model: str
    status: EvaluationStatus = EvaluationStatus.PENDING
    overall_score: float | None = None
    metrics: EvaluationMetrics | None = None
    error_message: str | None = None
    id: str = field(default_factory=new_id)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    results: tuple[TestResult, ...] = ()
