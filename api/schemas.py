"""Request and response bodies of the API (the OpenAPI schema at ``/docs``).

Job-kind request bodies are declared with their kind (e.g. :class:`tasks.canary.kind.
CanaryArguments`); these are the API's own shapes. Timestamps are ISO 8601 in UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from domain.evaluations import Evaluation, EvaluationStatus, TestResult
from domain.idempotency import key_shown_to_clients
from domain.jobs import Job, JobStatus
from domain.jobs import ProgressDetail as JobProgressDetail
from domain.prompts import Prompt, PromptStatus
from domain.schemas import FiniteMetaValue, MetaKey, MetaValue, PromptTags
from tasks.backup.manifest import BackupManifest


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine-readable code and a human message."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorDetail


class ValidationIssue(BaseModel):
    """One problem with a request; ``loc`` says where (``["body", "test_cases", 0]``)."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ValidationErrorBody(BaseModel):
    """A ``422``: ``validation_error`` when the request does not fit its schema (``detail``
    lists each problem), ``invalid_data`` when its content cannot be used."""

    error: ErrorDetail
    detail: list[ValidationIssue] | None = None


class JobErrorOut(BaseModel):
    """Why a job (or its last attempt) failed."""

    kind: str
    message: str


class ProgressDetail(BaseModel):
    """Progress in the job's own units (an evaluation: cases done of total)."""

    done: int
    total: int
    unit: str


class JobOut(BaseModel):
    """A job as recorded in the ledger."""

    id: str
    kind: str = Field(description="The job's kind: `POST /v1/jobs/{kind}` enqueues one.")
    status: JobStatus
    arguments: dict[str, Any]
    attempts: int
    max_attempts: int
    progress: float
    progress_detail: ProgressDetail | None = None
    result: dict[str, Any] | None
    error: JobErrorOut | None
    idempotency_key: str | None = Field(
        description="The Idempotency-Key its client sent (keys are per API key); "
        "null for scheduled jobs and jobs sent without one."
    )
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_domain(cls, job: Job, progress_detail: JobProgressDetail | None = None) -> JobOut:
        """``job`` as the API shows it; ``progress_detail`` comes from its kind, if any."""
        return cls(
            id=job.id,
            kind=job.kind,
            status=job.status,
            arguments=job.arguments,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            progress=job.progress,
            progress_detail=ProgressDetail(
                done=progress_detail.done, total=progress_detail.total, unit=progress_detail.unit
            )
            if progress_detail is not None
            else None,
            result=job.result,
            error=JobErrorOut(kind=job.error.kind, message=job.error.message)
            if job.error
            else None,
            idempotency_key=key_shown_to_clients(job.idempotency_key),
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class JobPage(BaseModel):
    """One page of jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[JobOut]
    next_cursor: str | None


Title = Annotated[str, StringConstraints(min_length=1, max_length=255)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Content = Annotated[str, StringConstraints(min_length=1)]


class PromptCreate(_Request):
    """A new prompt (version 1)."""

    title: Title
    content: Content
    user_id: UserId
    system_message: str | None = None
    status: PromptStatus = PromptStatus.DRAFT
    tags: PromptTags | None = None
    meta_data: Annotated[dict[MetaKey, FiniteMetaValue], Field(max_length=100)] = Field(
        default_factory=dict
    )


class PromptVersionCreate(_Request):
    """The next version of a prompt: new content, optionally a new title."""

    content: Content
    title: Title | None = None


class PromptOut(BaseModel):
    """A prompt; ``parent_id`` is the version it was made from."""

    id: str
    title: str
    content: str
    system_message: str | None
    user_id: str
    status: PromptStatus
    tags: PromptTags | None
    meta_data: dict[str, MetaValue]
    version: int
    parent_id: str | None
    template_id: str | None
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_domain(cls, prompt: Prompt) -> PromptOut:
        return cls(
            id=prompt.id,
            title=prompt.title,
            content=prompt.content,
            system_message=prompt.system_message,
            user_id=prompt.user_id,
            status=prompt.status,
            tags=prompt.tags,
            meta_data=dict(prompt.meta_data.values),
            version=prompt.version,
            parent_id=prompt.parent_id,
            template_id=prompt.template_id,
            created_at=prompt.created_at,
            updated_at=prompt.updated_at,
        )


class PromptList(BaseModel):
    """A user's live prompts, newest first."""

    items: list[PromptOut]


class PromptSearchHit(BaseModel):
    """A prompt found by a search, with its score (higher is better): in ``vector`` mode
    the cosine similarity of its vector to the query's, in ``hybrid`` mode the
    reciprocal-rank fusion of the vector and full-text rankings."""

    prompt: PromptOut
    score: float


class PromptSearchResults(BaseModel):
    """Live prompts that match a query, best first."""

    items: list[PromptSearchHit]


class Liveness(BaseModel):
    """The process is up."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Each dependency: ``"ok"`` or why it is not reachable. The job kinds' own checks
    follow under their names, where they have something to check on this host (the
    replica sync's ``replicas``: ``"ok"`` or why one of this host's replicas is stale)."""

    model_config = ConfigDict(extra="allow")

    database: str
    redis: str


class TestResultOut(BaseModel):
    """The outcome of one test case."""

    __test__ = False  # not a pytest test class

    test_case_name: str
    score: float
    passed: bool
    input_data: dict[str, Any] | None
    expected_output: str | None
    actual_output: str | None
    details: dict[str, Any] | None
    execution_time_ms: int | None
    tokens_used: int | None

    @classmethod
    def from_domain(cls, result: TestResult) -> TestResultOut:
        return cls(
            test_case_name=result.test_case_name,
            score=result.score,
            passed=result.passed,
            input_data=result.input_data,
            expected_output=result.expected_output,
            actual_output=result.actual_output,
            details=result.details,
            execution_time_ms=result.execution_time_ms,
            tokens_used=result.tokens_used,
        )


class EvaluationOut(BaseModel):
    """An evaluation run; ``test_results`` only when read by id."""

    id: str
    prompt_id: str
    provider: str
    model: str
    status: EvaluationStatus
    overall_score: float | None
    passed: bool | None
    metrics: dict[str, Any] | None
    error_message: str | None
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    test_results: list[TestResultOut] | None = None

    @classmethod
    def from_domain(cls, evaluation: Evaluation, *, with_results: bool) -> EvaluationOut:
        metrics = evaluation.metrics
        return cls(
            id=evaluation.id,
            prompt_id=evaluation.prompt_id,
            provider=evaluation.provider,
            model=evaluation.model,
            status=evaluation.status,
            overall_score=evaluation.overall_score,
            passed=metrics.passed if metrics else None,
            metrics=metrics.model_dump(mode="json") if metrics else None,
            error_message=evaluation.error_message,
            created_at=evaluation.created_at,
            started_at=evaluation.started_at,
            completed_at=evaluation.completed_at,
            test_results=[TestResultOut.from_domain(r) for r in evaluation.results]
            if with_results
            else None,
        )


class EvaluationList(BaseModel):
    """A prompt's evaluation runs, newest first."""

    items: list[EvaluationOut]


class ScoreBucket(BaseModel):
    bucket: str
    mean_score: float | None
    runs: int


class ScoreHistory(BaseModel):
    """Mean score and number of completed runs per time bucket, oldest first."""

    prompt_id: str
    bucket: str
    points: list[ScoreBucket]


class BackupOut(BaseModel):
    """One entry of the backup catalogue."""

    id: str
    created_at: datetime
    source: str
    method: str
    schema_revision: str | None
    table_counts: dict[str, int]
    raw_size_bytes: int
    stored_size_bytes: int
    stored_sha256: str
    compression: str
    encrypted: bool
    location: str
    verified_at: datetime | None
    verification_error: str | None

    @classmethod
    def from_manifest(cls, manifest: BackupManifest) -> BackupOut:
        return cls(
            id=manifest.id,
            created_at=manifest.created_at,
            source=manifest.source,
            method=manifest.method,
            schema_revision=manifest.schema_revision,
            table_counts=manifest.table_counts,
            raw_size_bytes=manifest.raw_size_bytes,
            stored_size_bytes=manifest.stored_size_bytes,
            stored_sha256=manifest.stored_sha256,
            compression=manifest.compression,
            encrypted=manifest.encryption is not None,
            location=manifest.stored.location,
            verified_at=manifest.verified_at,
            verification_error=manifest.verification_error,
        )


class BackupList(BaseModel):
    """The backup catalogue, newest first."""

    items: list[BackupOut]
