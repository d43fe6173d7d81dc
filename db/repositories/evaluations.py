"""Persistence of the Evaluation aggregate: an evaluation and its test results."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, literal_column, select, update
from sqlalchemy.orm import Session

from core.errors import InvalidData
from db.column_types import utcnow
from db.models import EvaluationModel, TestResultModel
from domain.evaluations import ALLOWED_TRANSITIONS, Evaluation, EvaluationStatus, TestResult
from domain.schemas import EvaluationMetrics, validated_json

# strftime patterns per bucket; ISO-like labels that sort in time order.
BUCKET_FORMATS = {"hour": "%Y-%m-%dT%H:00", "day": "%Y-%m-%d", "week": "%Y-W%W", "month": "%Y-%m"}


@dataclass(frozen=True, slots=True)
class ScorePoint:
    bucket: str
    mean_score: float | None
    runs: int


class EvaluationRepository:
    """Evaluations and their results. Takes a session; the caller owns the transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, evaluation: Evaluation) -> Evaluation:
        row = EvaluationModel(
            id=evaluation.id,
            prompt_id=evaluation.prompt_id,
            status=str(evaluation.status),
            provider=evaluation.provider,
            model=evaluation.model,
            overall_score=evaluation.overall_score,
            metrics=_metrics_json(evaluation.metrics),
            error_message=evaluation.error_message,
            started_at=evaluation.started_at,
            completed_at=evaluation.completed_at,
        )
        self.session.add(row)
        self.session.flush()
        return _to_domain(row, ())

    def get(self, evaluation_id: str, *, with_results: bool = True) -> Evaluation | None:
        row = self.session.get(EvaluationModel, evaluation_id)
        if row is None:
            return None
        results: tuple[TestResult, ...] = ()
        if with_results:
            query = (
                select(TestResultModel)
                .where(TestResultModel.evaluation_id == evaluation_id)
                .order_by(TestResultModel.test_case_name)
            )
            results = tuple(_result_to_domain(r) for r in self.session.scalars(query))
        return _to_domain(row, results)

    def list_for_prompt(self, prompt_id: str, *, limit: int = 100) -> list[Evaluation]:
        """A prompt's evaluations, newest first, without their results."""
        query = (
            select(EvaluationModel)
            .where(EvaluationModel.prompt_id == prompt_id)
            .order_by(EvaluationModel.created_at.desc(), EvaluationModel.id.desc())
            .limit(limit)
        )
        return [_to_domain(row, ()) for row in self.session.scalars(query)]

    def score_history(self, prompt_id: str, *, bucket: str) -> list[ScorePoint]:
        """Mean score and number of completed runs per time bucket, oldest first.

        Aggregated in SQL over the partial index ``idx_evaluations_prompt_completed``.
        """
        # The format is a literal, not a bound parameter: SQLite then sees that SELECT,
        # GROUP BY and ORDER BY name the same expression and sorts only once.
        label = func.strftime(
            literal_column(f"'{BUCKET_FORMATS[bucket]}'"), EvaluationModel.completed_at
        )
        query = (
            select(label, func.avg(EvaluationModel.overall_score), func.count())
            .where(
                EvaluationModel.prompt_id == prompt_id,
                EvaluationModel.status == str(EvaluationStatus.COMPLETED),
            )
            .group_by(label)
            .order_by(label)
        )
        return [
            ScorePoint(bucket=str(b), mean_score=float(m) if m is not None else None, runs=int(n))
            for b, m, n in self.session.execute(query)
        ]

    def transition(
        self,
        evaluation_id: str,
        to: EvaluationStatus,
        *,
        overall_score: float | None = None,
        metrics: EvaluationMetrics | None = None,
        error_message: str | None = None,
        at: datetime | None = None,
    ) -> Evaluation:
        """Move an evaluation along pending -> running -> completed | failed | cancelled.

        Raises :class:`InvalidData` for a move the state machine does not allow.
        """
        row = self.session.get(EvaluationModel, evaluation_id)
        if row is None:
            raise InvalidData(f"evaluation {evaluation_id} does not exist")
        current = EvaluationStatus(row.status)
        if to not in ALLOWED_TRANSITIONS[current]:
            raise InvalidData(f"evaluation {evaluation_id} cannot move from {current} to {to}")
        now = at or utcnow()
        values: dict[str, object] = {"status": str(to), "updated_at": now}
        if to is EvaluationStatus.RUNNING:
            values["started_at"] = now
        if to.is_final:
            values["completed_at"] = now
        if overall_score is not None:
            values["overall_score"] = overall_score
        if metrics is not None:
            values["metrics"] = _metrics_json(metrics)
        if error_message is not None:
            values["error_message"] = error_message
        self.session.execute(
            update(EvaluationModel).where(EvaluationModel.id == evaluation_id).values(**values)
        )
        self.session.refresh(row)
        return _to_domain(row, ())

    def add_results(self, results: Iterable[TestResult]) -> int:
        """Insert test results; a case name repeated within an evaluation is a UniqueViolation."""
        rows = [
            TestResultModel(
                id=r.id,
                evaluation_id=r.evaluation_id,
                test_case_name=r.test_case_name,
                input_data=r.input_data,
                expected_output=r.expected_output,
                actual_output=r.actual_output,
                score=r.score,
                passed=int(r.passed),
                details=r.details,
                execution_time_ms=r.execution_time_ms,
                tokens_used=r.tokens_used,
            )
            for r in results
        ]
        self.session.add_all(rows)
        self.session.flush()
        return len(rows)


def _metrics_json(metrics: object) -> dict[str, object] | None:
    if metrics is None:
        return None
    return validated_json(EvaluationMetrics, metrics, column="metrics").model_dump(mode="json")


def _to_domain(row: EvaluationModel, results: tuple[TestResult, ...]) -> Evaluation:
    return Evaluation(
        id=row.id,
        prompt_id=row.prompt_id,
        provider=row.provider,
        model=row.model,
        status=EvaluationStatus(row.status),
        overall_score=row.overall_score,
        metrics=None
        if row.metrics is None
        else validated_json(EvaluationMetrics, row.metrics, column="metrics"),
        error_message=row.error_message,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        results=results,
    )


def _result_to_domain(row: TestResultModel) -> TestResult:
    return TestResult(
        id=row.id,
        evaluation_id=row.evaluation_id,
        test_case_name=row.test_case_name,
        score=row.score,
        passed=bool(row.passed),
        input_data=row.input_data,
        expected_output=row.expected_output,
        actual_output=row.actual_output,
        details=row.details,
        execution_time_ms=row.execution_time_ms,
        tokens_used=row.tokens_used,
        created_at=row.created_at,
    )
