"""``/v1/jobs``: enqueue, inspect, list, cancel and retry jobs.

Every declared job kind (``tasks/<kind>/kind.py``) that accepts jobs has its own
``POST /v1/jobs/{kind}``, with its arguments model as the request body, so the OpenAPI
document describes each; any other kind is a ``404`` listing the kinds. What is particular
to a kind is reached through its declaration: its admission check, its domain rows, what
cancelling it does, whether it may be retried, its progress in its own units.

Enqueue goes through the transactional outbox (:func:`jobs.outbox.enqueue`): the
ledger row is committed first, then published. A job whose publish fails is still
accepted (``202``); the outbox sweeper hands it to the broker later.
``POST /v1/jobs/{kind}:batch`` accepts many jobs of a kind in one ledger transaction
(:func:`jobs.outbox.enqueue_many`), all or none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, NoReturn, cast

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, create_model
from sqlalchemy.orm import Session

from api.auth import CallerScope
from api.errors import JobStateConflict, UnknownJobKind
from api.pagination import MAX_CURSOR_CHARS, InvalidCursor, decode_cursor, encode_cursor
from api.resources import ApiResources, Resources
from api.schemas import ErrorBody, JobOut, JobPage
from core.errors import NotFound
from db.repositories.jobs import JobCursor, JobRepository
from db.transaction import write_transaction
from domain.idempotency import client_key
from domain.jobs import Job, JobStatus
from jobs.errors import ArgumentProblem, InvalidArguments
from jobs.kind import KindSpec
from jobs.outbox import MAX_BATCH, enqueue, enqueue_many, publish_committed
from jobs.registry import KindRegistry

PREFIX = "/v1/jobs"
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
Cursor = Annotated[
    str | None,
    Query(
        min_length=1, max_length=MAX_CURSOR_CHARS, description="next_cursor of the previous page"
    ),
]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE)]

BATCH_SUFFIX = ":batch"
_BATCH_DESCRIPTION = f"""Accept up to {MAX_BATCH} jobs of this kind in one request: the body's
`items` are the jobs' arguments, each checked like the body of `POST /v1/jobs/{{kind}}`.
All or nothing: one invalid item is a `422` whose `loc` names it
(`["body", "items", <index>, <field>]`) and no job is accepted; otherwise every job is
committed to the ledger in one transaction, then published. The answer lists the jobs in
the order of the items.

With an `Idempotency-Key` the batch replays as a whole: the same key with the same items
returns the jobs it created (`200`); with other items, or another number of them, it is a
`409`. A batch's key is its own: it never matches a key sent to `POST /v1/jobs/{{kind}}`."""

_BATCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Idempotent replay: the jobs this key created."},
    409: {"model": ErrorBody, "description": "Idempotency-Key reused with other items."},
    503: {"model": ErrorBody, "description": "The database is unavailable; see Retry-After."},
}

_ENQUEUE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": JobOut, "description": "Idempotent replay: the job this key created."},
    409: {"model": ErrorBody, "description": "Idempotency-Key reused with another body."},
    503: {"model": ErrorBody, "description": "The database is unavailable; see Retry-After."},
}


def build_router(kinds: KindRegistry) -> APIRouter:
    """``/v1/jobs`` for the declared ``kinds``: one enqueue route per kind that accepts
    jobs, then the routes on the ledger, which are the same for every kind."""
    router = APIRouter(prefix=PREFIX, tags=["jobs"])
    for kind in kinds.enabled():
        router.add_api_route(
            f"/{kind.name}",
            _enqueue_route(kind),
            methods=["POST"],
            status_code=202,
            responses=_ENQUEUE_RESPONSES,
            summary=kind.summary,
            description=kind.description,
        )
    for kind in kinds.enabled():
        router.add_api_route(
            f"/{kind.name}{BATCH_SUFFIX}",
            _enqueue_batch_route(kind),
            methods=["POST"],
            status_code=202,
            responses=_BATCH_RESPONSES,
            summary=f"{kind.summary} (up to {MAX_BATCH} jobs at once)" if kind.summary else None,
            description=_BATCH_DESCRIPTION,
        )
    # Not in the OpenAPI schema: "/v1/jobs/{kind}" would be the same path as
    # "/v1/jobs/{job_id}" under another name, which OpenAPI forbids; every kind that can be
    # enqueued has its own path.
    router.add_api_route(
        "/{kind}",
        _unknown_kind_route(kinds),
        methods=["POST"],
        status_code=202,
        response_model=None,
        include_in_schema=False,
    )
    router.add_api_route("", _list_route(kinds), methods=["GET"])
    # The ledger's routes: the same for every kind.
    conflicts: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
    }
    router.add_api_route(
        "/{job_id}", get_job, methods=["GET"], responses={404: {"model": ErrorBody}}
    )
    router.add_api_route("/{job_id}/cancel", cancel_job, methods=["POST"], responses=conflicts)
    router.add_api_route(
        "/{job_id}/retry", retry_job, methods=["POST"], status_code=202, responses=conflicts
    )
    return router


def _enqueue_route(kind: KindSpec) -> Callable[..., JobOut]:
    def enqueue_kind(
        arguments: BaseModel,
        response: Response,
        resources: Resources,
        idempotency_key: LedgerIdempotencyKey,
    ) -> JobOut:
        return _accept(resources, kind, arguments, idempotency_key, response)

    # The request body is the kind's arguments model (FastAPI reads the annotation).
    enqueue_kind.__annotations__["arguments"] = kind.arguments
    enqueue_kind.__name__ = f"enqueue_{kind.name.replace('-', '_')}"
    return enqueue_kind


def _accept(
    resources: ApiResources,
    kind: KindSpec,
    arguments: BaseModel,
    idempotency_key: str | None,
    response: Response,
) -> JobOut:
    try:
        if kind.admission is not None:
            kind.admission.load()(arguments, resources.settings, resources.runtime.db)
        accepted = enqueue(
            resources.runtime,
            kind.name,
            arguments.model_dump(mode="json", by_alias=True),
            idempotency_key=idempotency_key,
        )
    except InvalidArguments as exc:
        raise _invalid(exc) from None
    if accepted.created:
        resources.metrics.jobs_enqueued.labels(kind=kind.name).inc()
    else:
        response.status_code = 200
    response.headers["Location"] = _location(accepted.job.id)
    return _out(resources, accepted.job)


class JobBatchOut(BaseModel):
    """The jobs of a batch, in the order of its items."""

    items: list[JobOut]


_batch_bodies: dict[tuple[str, type[BaseModel]], type[BaseModel]] = {}


def batch_body(kind: KindSpec) -> type[BaseModel]:
    """The request body of ``POST /v1/jobs/{kind}:batch``: ``items``, each the kind's
    arguments (one model per kind, made once)."""
    key = (kind.name, kind.arguments)
    if key not in _batch_bodies:
        _batch_bodies[key] = create_model(
            f"{kind.arguments.__name__}Batch",
            __doc__=f"Up to {MAX_BATCH} jobs of kind {kind.name!r}, each item its arguments.",
            items=(list[kind.arguments], Field(min_length=1, max_length=MAX_BATCH)),  # type: ignore[name-defined]
        )
    return _batch_bodies[key]


def _enqueue_batch_route(kind: KindSpec) -> Callable[..., JobBatchOut]:
    body = batch_body(kind)

    def enqueue_kind_batch(
        batch: BaseModel,
        response: Response,
        resources: Resources,
        idempotency_key: LedgerIdempotencyKey,
    ) -> JobBatchOut:
        items: list[BaseModel] = batch.items  # type: ignore[attr-defined]
        return _accept_batch(resources, kind, items, idempotency_key, response)

    enqueue_kind_batch.__annotations__["batch"] = body
    enqueue_kind_batch.__name__ = f"enqueue_{kind.name.replace('-', '_')}_batch"
    return enqueue_kind_batch


def _accept_batch(
    resources: ApiResources,
    kind: KindSpec,
    items: list[BaseModel],
    idempotency_key: str | None,
    response: Response,
) -> JobBatchOut:
    problems: list[ArgumentProblem] = []
    if kind.admission is not None:
        admit = kind.admission.load()
        for index, arguments in enumerate(items):
            try:
                admit(arguments, resources.settings, resources.runtime.db)
            except InvalidArguments as exc:
                problems.extend(
                    ArgumentProblem(("items", index, *problem.loc), problem.message)
                    for problem in exc.problems
                )
    try:
        if problems:
            raise InvalidArguments(problems)
        accepted = enqueue_many(
            resources.runtime,
            kind.name,
            [arguments.model_dump(mode="json", by_alias=True) for arguments in items],
            idempotency_key=idempotency_key,
        )
    except InvalidArguments as exc:
        raise _invalid(exc) from None
    created = sum(1 for one in accepted if one.created)
    if created:
        resources.metrics.jobs_enqueued.labels(kind=kind.name).inc(created)
    else:
        response.status_code = 200
    return JobBatchOut(items=[_out(resources, one.job) for one in accepted])


def _invalid(exc: InvalidArguments) -> RequestValidationError:
    return RequestValidationError(
        [
            {"type": "value_error", "loc": ("body", *problem.loc), "msg": problem.message}
            for problem in exc.problems
        ]
    )


def _unknown_kind_route(kinds: KindRegistry) -> Callable[[str], NoReturn]:
    names = [kind.name for kind in kinds.enabled()]

    def enqueue_unknown(kind: str) -> NoReturn:
        """A kind that is not declared (or does not accept jobs) answers ``404``."""
        kind = kind.removesuffix(BATCH_SUFFIX)
        raise UnknownJobKind(
            f"Unknown job kind {kind!r}; kinds: {', '.join(names)}.", extra={"kinds": names}
        )

    return enqueue_unknown


def _list_route(kinds: KindRegistry) -> Callable[..., JobPage]:
    def list_jobs(
        resources: Resources,
        kind: str | None = None,
        status: JobStatus | None = None,
        limit: PageSize = 50,
        cursor: Cursor = None,
    ) -> JobPage:
        """Jobs newest first, optionally of one kind and status, a page at a time."""
        after = _cursor(cursor)
        with resources.runtime.db.read_session() as session:
            jobs = JobRepository(session).list_recent(
                kind=kind, status=status, limit=limit + 1, after=after
            )
        page, more = jobs[:limit], len(jobs) > limit
        return JobPage(
            items=[_out(resources, job) for job in page],
            next_cursor=encode_cursor(page[-1]) if more else None,
        )

    # Any declared kind's name (the ledger may hold jobs of a disabled one); another is 422.
    list_jobs.__annotations__["kind"] = cast(Any, Literal)[kinds.names] | None
    return list_jobs


# --- the ledger: the same for every kind ---------------------------------------------------


def get_job(job_id: str, resources: Resources) -> JobOut:
    """One job, as the ledger records it."""
    with resources.runtime.db.read_session() as session:
        job = JobRepository(session).get(job_id)
    if job is None:
        raise NotFound(f"Job {job_id} does not exist.")
    return _out(resources, job)


def cancel_job(job_id: str, resources: Resources) -> JobOut:
    """Cancel a queued or running job and ask the workers to drop (or stop) it.

    A job that already finished answers ``409``.
    """
    kinds = resources.runtime.kinds

    def unit(session: Session) -> tuple[Job, bool]:
        jobs = JobRepository(session)
        job = _existing(jobs, job_id)
        if job.status.is_final:
            raise JobStateConflict(f"Job {job_id} is already {job.status}.")
        jobs.cancel(job_id)
        kind = kinds.get(job.kind)
        if kind is not None and kind.on_cancel is not None:
            kind.on_cancel.load()(session, job)  # the kind's rows follow, in this transaction
        return _existing(jobs, job_id), job.status is JobStatus.RUNNING

    cancelled, was_running = write_transaction(resources.runtime.db, unit)
    # After the commit: the ledger already says cancelled, which workers check before
    # running; the revoke only saves them the trip (and stops a running one).
    resources.runtime.publisher.revoke(job_id, terminate=was_running)
    return _out(resources, cancelled)


def retry_job(job_id: str, response: Response, resources: Resources) -> JobOut:
    """Queue a failed job again with the kind's number of attempts on top of those it
    used (attempt numbers keep growing). Other jobs, and jobs of a kind that refuses it
    (a failed evaluation is final), answer ``409``."""
    kinds = resources.runtime.kinds

    def unit(session: Session) -> Job:
        jobs = JobRepository(session)
        job = _existing(jobs, job_id)
        if job.status is not JobStatus.FAILED:
            raise JobStateConflict(
                f"Only failed jobs can be retried; job {job_id} is {job.status}."
            )
        kind = kinds.get(job.kind)
        if kind is None:
            raise JobStateConflict(f"Job {job_id} is of kind {job.kind!r}, which is not declared.")
        if kind.retry_refused is not None:
            raise JobStateConflict(kind.retry_refused)
        more = kinds.max_attempts(resources.settings, kind.name)
        jobs.requeue_failed(job_id, more_attempts=more)
        return _existing(jobs, job_id)

    requeued = write_transaction(resources.runtime.db, unit)
    publish_committed(resources.runtime, [requeued])
    response.headers["Location"] = _location(job_id)
    return _out(resources, requeued)


def _out(resources: ApiResources, job: Job) -> JobOut:
    """``job`` as the API shows it, with its progress in its kind's own units, if any."""
    kind = resources.runtime.kinds.get(job.kind)
    if kind is None or kind.progress_detail is None:
        return JobOut.from_domain(job)
    return JobOut.from_domain(job, kind.progress_detail.load()(job))


def _location(job_id: str) -> str:
    return f"{PREFIX}/{job_id}"


def _cursor(cursor: str | None) -> JobCursor | None:
    if cursor is None:
        return None
    try:
        return decode_cursor(cursor)
    except InvalidCursor as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "cursor"), "msg": str(exc), "input": cursor}]
        ) from None


def _existing(jobs: JobRepository, job_id: str) -> Job:
    job = jobs.get(job_id)
    if job is None:
        raise NotFound(f"Job {job_id} does not exist.")
    return job
