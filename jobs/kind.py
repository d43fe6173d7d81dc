"""A kind of job, declared once.

Each kind's folder, ``tasks/<kind>/``, holds a ``kind.py`` whose ``KIND`` is a
:class:`KindSpec`: its name, queue and Celery task name, its arguments model (the API's
request body), its logic, its limits, and the hooks through which the shared rooms (the
API's job routes, the ledger task, the metrics, the scheduler) reach what is particular
to it. Everything kind-related is derived from these declarations
(:class:`jobs.registry.KindRegistry`): adding a kind edits no shared list.

The logic and every hook are lazy references (``"tasks.backup.job:run_backup_job"``),
imported the first time they are used: reading the declarations, as the API does to
publish a job, loads none of a kind's own dependencies (boto3 and the like).
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeAlias, TypeVar, cast

from pydantic import BaseModel

from core.settings import CRON_OFF, Settings

if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from sqlalchemy.orm import Session

    from db.database import Database
    from domain.jobs import Job, JobError, ProgressDetail
    from jobs.context import JobContext, JobOutcome

T = TypeVar("T")

_NAME = re.compile(r"[a-z][a-z0-9-]*")
_REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")

#: A kind's work: runs in a worker, returns what the job produced.
JobLogic: TypeAlias = Callable[["JobContext"], "JobOutcome"]
#: Runs in the transaction that ends a job failed: the kind's domain rows follow the job.
FailureHook: TypeAlias = Callable[["Session", "Job", "JobError"], None]
#: Runs in a transaction that changes a job (accepting it, cancelling it): the kind's
#: domain rows are written with the job's own change, or not at all.
RowsHook: TypeAlias = Callable[["Session", "Job"], None]
#: Checks what a request's body cannot say by itself (a row it names exists, a provider is
#: configured), before the job is accepted; raises :class:`jobs.errors.InvalidArguments`.
#: Gets the validated arguments model, the settings and the database.
AdmissionHook: TypeAlias = Callable[[Any, Settings, "Database"], None]
#: A job's progress in its own units (cases done of total), when the kind has them.
ProgressHook: TypeAlias = Callable[["Job"], "ProgressDetail | None"]
#: Runs once in each worker's main process when it starts (e.g. to clear scratch files).
WorkerStartHook = Callable[[Settings], None]
#: The queue of one job, for kinds whose work must run on a given machine (a replica's
#: file is on one host): gets the job's arguments and the settings.
RouteHook = Callable[[Mapping[str, Any], Settings], str]
#: The queues this machine's workers consume for the kind, besides ``queue``.
HostQueuesHook = Callable[[Settings], tuple[str, ...]]
#: Jobs beat enqueues every few seconds (not cron): built from the settings.
PeriodicHook = Callable[[Settings], "list[Periodic]"]
#: What ``/readyz`` says of the kind on this machine: ``"ok"``, why it cannot serve
#: (``"error: ..."``), or ``None`` when there is nothing to check here. Gets the settings
#: and the database; an exception means "not ready" (the route says which).
ReadinessHook = Callable[[Settings, "Database"], "str | None"]


@dataclass(frozen=True, slots=True)
class ReadinessCheck:
    """A check of the kind that ``/readyz`` runs and reports under ``name``."""

    name: str
    check: Ref[ReadinessHook]


@dataclass(frozen=True, slots=True)
class Periodic:
    """A job of the kind that beat enqueues every ``interval_s`` (no catch-up: a lost
    fire is simply the next one)."""

    #: The beat entry's name.
    name: str
    arguments: Mapping[str, Any]
    interval_s: float


class KindMetrics(Protocol):
    """A kind's own Prometheus metrics, read from the ledger at scrape time."""

    def describe(self) -> list[Metric]:
        """The metric families, empty: what a registry checks names against."""
        ...

    def collect(self, session: Session) -> list[Metric]:
        """The metric families, read in ``session`` (the scrape's read of the ledger)."""
        ...


@dataclass(frozen=True, slots=True)
class Ref(Generic[T]):
    """A lazy reference to ``module:attribute``, imported on first :meth:`load`."""

    path: str

    def __post_init__(self) -> None:
        if not _REFERENCE.fullmatch(self.path):
            raise ValueError(f"expected 'package.module:attribute', got {self.path!r}")

    def load(self) -> T:
        """The referenced object (its module is imported once, on first use)."""
        return cast(T, _resolve(self.path))


@functools.cache
def _resolve(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A job of the kind that beat enqueues on a cron schedule, once per period.

    Its period's job carries an idempotency key naming the kind, ``key`` and the period
    (:func:`domain.idempotency.schedule_key`), so a repeated fire or the sweeper's
    catch-up of a lost one finds the period's job instead of making a second.
    """

    #: The beat entry's name.
    name: str
    #: Names this schedule in its jobs' idempotency keys (stable: stored in the ledger).
    key: str
    #: The job's arguments.
    arguments: Mapping[str, Any]
    #: The settings field holding the cron expression (e.g. ``backup_cron``); ``off``
    #: turns the schedule off.
    cron_setting: str
    #: strftime pattern of the fire time (UTC) naming the period (``%Y-%m-%d``: a day).
    period: str

    def cron(self, settings: Settings) -> str:
        """The schedule's cron expression in ``settings``."""
        return str(getattr(settings, self.cron_setting))

    def is_off(self, settings: Settings) -> bool:
        """Whether ``settings`` turn the schedule off (its cron setting is ``off``)."""
        return self.cron(settings) == CRON_OFF

    @property
    def variable(self) -> str:
        """The environment variable of the cron expression, for error messages."""
        return self.cron_setting.upper()


@dataclass(frozen=True, slots=True, kw_only=True)
class KindSpec:
    """One kind of job, declared once in ``tasks/<kind>/kind.py`` as ``KIND``."""

    #: The kind's name in the ledger and in ``POST /v1/jobs/{name}``.
    name: str
    #: The Celery queue its jobs go to.
    queue: str
    #: The Celery task that runs its jobs.
    task_name: str
    #: The arguments model: the API validates request bodies with it.
    arguments: type[BaseModel]
    #: An example body (shown in the OpenAPI document; it must validate).
    example: Mapping[str, Any]
    #: The enqueue operation's summary and description in the OpenAPI document.
    summary: str
    description: str
    #: The job's work.
    logic: Ref[JobLogic]
    #: Attempts before a job ends failed, and the hard time limit of one attempt (the
    #: soft limit is 90% of it); ``JOB_MAX_ATTEMPTS`` / ``JOB_TIME_LIMITS_S`` override them.
    max_attempts: int
    time_limit_s: int
    #: A disabled kind is not accepted (``enqueue`` refuses it, the API has no route for
    #: it), but its jobs already in the ledger still run.
    enabled: bool = True
    on_failure: Ref[FailureHook] | None = None
    admission: Ref[AdmissionHook] | None = None
    #: Writes the kind's domain rows in the transaction that accepts the job.
    domain_rows: Ref[RowsHook] | None = None
    #: Runs in the transaction that cancels a job of the kind.
    on_cancel: Ref[RowsHook] | None = None
    #: Why ``POST /v1/jobs/{id}/retry`` refuses a failed job of the kind (``None``: it
    #: does not).
    retry_refused: str | None = None
    progress_detail: Ref[ProgressHook] | None = None
    metrics: Ref[KindMetrics] | None = None
    schedules: tuple[Schedule, ...] = ()
    on_worker_start: Ref[WorkerStartHook] | None = None
    #: Per-job routing (``None``: every job goes to ``queue``).
    route: Ref[RouteHook] | None = None
    host_queues: Ref[HostQueuesHook] | None = None
    periodic: Ref[PeriodicHook] | None = None
    readiness: ReadinessCheck | None = None
    #: The module of the kind's own tables (``tasks.<kind>.models``), on the application's
    #: declarative base; made by the kind's migration.
    models: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"job kind name {self.name!r}: lower-case letters, digits and '-'")
        if self.max_attempts < 1 or self.time_limit_s < 1:
            raise ValueError(f"job kind {self.name!r}: attempts and time limit must be >= 1")
        names = [schedule.name for schedule in self.schedules]
        if len(set(names)) != len(names):
            raise ValueError(f"job kind {self.name!r}: schedule names must be unique: {names}")
