"""``/v1/jobs``: enqueue, inspect, list, cancel and retry jobs.

Enqueue goes through the transactional outbox (:func:`jobs.outbox.enqueue`): the
ledger row is committed first, then published. A job whose publish fails is still
accepted (``202``); the outbox sweeper hands it to the broker later.
"""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from api.auth import CallerScope
from api.errors import JobKindNotImplemented, JobStateConflict, UnknownJobKind
from api.pagination import MAX_CURSOR_CHARS, InvalidCursor, decode_cursor, encode_cursor
from api.resources import ApiResources, Resources
from api.schemas import BackupRequest, ErrorBody, JobOut, JobPage
from core.errors import NotFound
from db.repositories.evaluations import EvaluationRepository
from db.repositories.jobs import JobCursor, JobRepository
from db.repositories.prompts import PromptRepository
from db.transaction import write_transaction
from domain.evaluations import Evaluation, EvaluationStatus
from domain.idempotency import client_key
from domain.jobs import Job, JobKind, JobStatus
from jobs.outbox import Enqueued, enqueue, publish_committed
from tasks.canary.kind import CanaryArguments
from tasks.evaluation.providers import UnknownProvider, known_providers, provider_for
from tasks.evaluation.render import TemplateError, check_cases
from tasks.evaluation.spec import EvaluationSpec

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

KINDS = tuple(str(kind) for kind in JobKind)
MAX_PAGE = 200

IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=255,
        description="Replaying a key returns the job it created (200) instead of a new one; "
        "the same key with a different body is a 409. Keys are per API key.",
    ),
]


def _ledger_key(scope: CallerScope, idempotency_key: IdempotencyKey = None) -> str | None:
    """The Idempotency-Key in the namespace of the API key that sent it."""
    return None if idempotency_key is None else client_key(scope, idempotency_key)


LedgerIdempotencyKey = Annotated[str | None, Depends(_ledger_key)]

_ENQUEUE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": JobOut, "description": "Idempotent replay: the job this key created."},
    409: {"model": ErrorBody, "description": "Idempotency-Key reused with another body."},
    503: {"model": ErrorBody, "description": "The database is unavailable; see Retry-After."},
}


def _location(job_id: str) -> str:
    return f"{router.prefix}/{job_id}"


def _accept(
    resources: ApiResources,
    kind: JobKind,
    arguments: dict[str, Any],
    idempotency_key: str | None,
    response: Response,
) -> JobOut:
    accepted = enqueue(resources.runtime, kind, arguments, idempotency_key=idempotency_key)
    return _answer(resources, kind, accepted, response)


def _answer(
    resources: ApiResources, kind: JobKind, accepted: Enqueued, response: Response
) -> JobOut:
    if accepted.created:
        resources.metrics.jobs_enqueued.labels(kind=str(kind)).inc()
    else:
        response.status_code = 200
    response.headers["Location"] = _location(accepted.job.id)
    return JobOut.from_domain(accepted.job)


@router.post("/canary", status_code=202, responses=_ENQUEUE_RESPONSES)
def enqueue_canary(
    arguments: CanaryArguments,
    response: Response,
    resources: Resources,
    idempotency_key: LedgerIdempotencyKey,
) -> JobOut:
    """Enqueue a canary job: it sleeps ``sleep_ms``, fails transiently ``fail_times``
    times, then writes one effect row keyed by its id. It exercises the whole pipeline."""
    return _accept(
        resources, JobKind.CANARY, arguments.model_dump(mode="json"), idempotency_key, response
    )


@router.post("/backup", status_code=202, responses=_ENQUEUE_RESPONSES)
def enqueue_backup(
    arguments: BackupRequest,
    response: Response,
    resources: Resources,
    idempotency_key: LedgerIdempotencyKey,
) -> JobOut:
    """Take a consistent online backup now (verified, stored, retention applied), or with
    ``{"mode": "drill"}`` restore the newest backup into a temporary file and check it.
    The catalogue is at ``/v1/backups``."""
    return _accept(
        resources, JobKind.BACKUP, arguments.model_dump(mode="json"), idempotency_key, response
    )


@router.post("/evaluation", status_code=202, responses=_ENQUEUE_RESPONSES)
def enqueue_evaluation(
    spec: EvaluationSpec,
    response: Response,
    resources: Resources,
    idempotency_key: LedgerIdempotencyKey,
) -> JobOut:
    """Run a prompt against test cases with an LLM provider and score the outputs.

    The evaluation (``pending``) and its job are created in one transaction; the
    evaluation has the job's id: follow progress at ``/v1/jobs/{id}``, read the results
    at ``/v1/evaluations/{id}``. Problems that can be seen now (unknown provider, a
    template variable without a value or a value without a placeholder, a scorer that is
    not available) answer ``422`` naming the field.
    """
    settings = resources.settings
    if spec.provider not in known_providers(settings):
        try:
            provider_for(spec.provider, settings).close()
        except UnknownProvider as exc:  # its message says why (unknown, or disabled here)
            _invalid(("body", "provider"), str(exc))
    for i, case in enumerate(spec.test_cases):
        for j, scorer in enumerate(case.scorers):
            if scorer.type == "similarity":
                _invalid(
                    ("body", "test_cases", i, "scorers", j),
                    f"case {case.name!r}: the 'similarity' scorer needs the embedding "
                    "provider, which is not available yet",
                )
    with resources.runtime.db.read_session() as session:
        prompt = PromptRepository(session).get(spec.prompt_id)
    if prompt is None:
        _invalid(("body", "prompt_id"), f"prompt {spec.prompt_id} does not exist")
    try:
        check_cases(prompt.content, spec.test_cases, system_message=prompt.system_message)
    except TemplateError as exc:
        index = {case.name: i for i, case in enumerate(spec.test_cases)}
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "test_cases", index[problem.case_name], "variables"),
                    "msg": problem.describe(),
                }
                for problem in exc.problems
            ]
        ) from None

    def create_evaluation(session: Session, job: Job) -> None:
        # Checked again in the enqueue transaction: the prompt may be gone by now.
        if PromptRepository(session).get(spec.prompt_id) is None:
            _invalid(("body", "prompt_id"), f"prompt {spec.prompt_id} does not exist")
        EvaluationRepository(session).add(
            Evaluation(
                id=job.id, prompt_id=spec.prompt_id, provider=spec.provider, model=spec.model
            )
        )

    arguments = spec.model_dump(mode="json", by_alias=True)
    accepted = enqueue(
        resources.runtime,
        JobKind.EVALUATION,
        arguments,
        idempotency_key=idempotency_key,
        with_domain_rows=create_evaluation,
    )
    return _answer(resources, JobKind.EVALUATION, accepted, response)


def _invalid(loc: tuple[str | int, ...], message: str) -> NoReturn:
    raise RequestValidationError([{"type": "value_error", "loc": loc, "msg": message}])


# Not in the OpenAPI schema: "/v1/jobs/{kind}" would be the same path as "/v1/jobs/{job_id}"
# under another name, which OpenAPI forbids; every kind that can be enqueued has its own path.
@router.post("/{kind}", status_code=202, response_model=None, include_in_schema=False)
def enqueue_other(kind: str) -> NoReturn:
    """Kinds whose request bodies are not defined yet answer ``501``; unknown kinds ``404``."""
    if kind not in KINDS:
        raise UnknownJobKind(
            f"Unknown job kind {kind!r}; kinds: {', '.join(KINDS)}.", extra={"kinds": list(KINDS)}
        )
    raise JobKindNotImplemented(
        f"Job kind {kind!r} cannot be enqueued yet: its request body is defined by its own "
        "issue. Available now: canary, evaluation, backup.",
        extra={"kinds": list(KINDS)},
    )


def _cursor(cursor: str | None) -> JobCursor | None:
    if cursor is None:
        return None
    try:
        return decode_cursor(cursor)
    except InvalidCursor as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "cursor"), "msg": str(exc), "input": cursor}]
        ) from None


@router.get("")
def list_jobs(
    resources: Resources,
    kind: JobKind | None = None,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_CURSOR_CHARS,
            description="next_cursor of the previous page",
        ),
    ] = None,
) -> JobPage:
    """Jobs newest first, optionally of one kind and status, a page at a time."""
    after = _cursor(cursor)
    with resources.runtime.db.read_session() as session:
        jobs = JobRepository(session).list_recent(
            kind=kind, status=status, limit=limit + 1, after=after
        )
    page, more = jobs[:limit], len(jobs) > limit
    return JobPage(
        items=[JobOut.from_domain(job) for job in page],
        next_cursor=encode_cursor(page[-1]) if more else None,
    )


@router.get("/{job_id}", responses={404: {"model": ErrorBody}})
def get_job(job_id: str, resources: Resources) -> JobOut:
    """One job, as the ledger records it."""
    with resources.runtime.db.read_session() as session:
        job = JobRepository(session).get(job_id)
    if job is None:
        raise NotFound(f"Job {job_id} does not exist.")
    return JobOut.from_domain(job)


@router.post("/{job_id}/cancel", responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
def cancel_job(job_id: str, resources: Resources) -> JobOut:
    """Cancel a queued or running job and ask the workers to drop (or stop) it.

    A job that already finished answers ``409``.
    """

    def unit(session: Session) -> tuple[Job, bool]:
        jobs = JobRepository(session)
        job = _existing(jobs, job_id)
        if job.status.is_final:
            raise JobStateConflict(f"Job {job_id} is already {job.status}.")
        jobs.cancel(job_id)
        if job.kind is JobKind.EVALUATION:
            _cancel_evaluation(session, job_id)
        return _existing(jobs, job_id), job.status is JobStatus.RUNNING

    cancelled, was_running = write_transaction(resources.runtime.db, unit)
    # After the commit: the ledger already says cancelled, which workers check before
    # running; the revoke only saves them the trip (and stops a running one).
    resources.runtime.publisher.revoke(job_id, terminate=was_running)
    return JobOut.from_domain(cancelled)


@router.post(
    "/{job_id}/retry",
    status_code=202,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
def retry_job(job_id: str, response: Response, resources: Resources) -> JobOut:
    """Queue a failed job again with the kind's number of attempts on top of those it
    used (attempt numbers keep growing). Other jobs answer ``409``."""

    def unit(session: Session) -> Job:
        jobs = JobRepository(session)
        job = _existing(jobs, job_id)
        if job.status is not JobStatus.FAILED:
            raise JobStateConflict(
                f"Only failed jobs can be retried; job {job_id} is {job.status}."
            )
        if job.kind is JobKind.EVALUATION:
            # An evaluation's status only moves forward (pending -> running -> final).
            raise JobStateConflict(
                "A failed evaluation is final; enqueue a new evaluation run instead."
            )
        more = resources.runtime.kinds.max_attempts(resources.settings, str(job.kind))
        jobs.requeue_failed(job_id, more_attempts=more)
        return _existing(jobs, job_id)

    requeued = write_transaction(resources.runtime.db, unit)
    publish_committed(resources.runtime, [requeued])
    response.headers["Location"] = _location(job_id)
    return JobOut.from_domain(requeued)


def _cancel_evaluation(session: Session, evaluation_id: str) -> None:
    """The evaluation of a cancelled job is cancelled in the same transaction."""
    evaluations = EvaluationRepository(session)
    evaluation = evaluations.get(evaluation_id, with_results=False)
    if evaluation is not None and not evaluation.status.is_final:
        evaluations.transition(evaluation_id, EvaluationStatus.CANCELLED)


def _existing(jobs: JobRepository, job_id: str) -> Job:
    job = jobs.get(job_id)
    if job is None:
        raise NotFound(f"Job {job_id} does not exist.")
    return job
