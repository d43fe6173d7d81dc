"""The declared job kinds, and everything derived from them.

A :class:`KindRegistry` is built once per process from the kinds' declarations
(:func:`discover` finds every ``<package>.<kind>.kind`` module; ``tasks.registry`` is the
application's) and passed to what needs it: the Celery app (task registration, queues and
routes), the runtime (``enqueue`` refuses an undeclared kind), the API (one enqueue route
per kind) and the settings check (per-kind limits and their defaults).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Iterable, Iterator, Mapping
from types import ModuleType
from typing import Any

from core.errors import ConfigurationError
from core.settings import Settings
from jobs.errors import UnknownKind
from jobs.kind import KindSpec, Schedule
from jobs.queues import HOUSEKEEPING_TASKS, MAINTENANCE_QUEUE

#: The module each kind's folder declares itself in, and the name of its declaration.
DECLARATION_MODULE = "kind"
DECLARATION = "KIND"

# The per-kind settings: user overrides of the declared defaults.
_PER_KIND_SETTINGS = ("job_time_limits_s", "job_max_attempts")


class KindRegistry:
    """The declared job kinds, in name order: iterating yields declarations, ``in``
    and ``[]`` take names."""

    def __init__(self, kinds: Iterable[KindSpec]) -> None:
        ordered = sorted(kinds, key=lambda kind: kind.name)
        self._kinds: dict[str, KindSpec] = {}
        task_names: dict[str, str] = {}
        for kind in ordered:
            if kind.name in self._kinds:
                raise ValueError(f"job kind {kind.name!r} is declared twice")
            if kind.task_name in task_names or kind.task_name in HOUSEKEEPING_TASKS:
                raise ValueError(f"job kind {kind.name!r}: task name {kind.task_name!r} is taken")
            for schedule in kind.schedules:
                if schedule.cron_setting not in Settings.model_fields:
                    raise ValueError(
                        f"job kind {kind.name!r}: schedule {schedule.name!r} names no "
                        f"setting {schedule.cron_setting!r}"
                    )
            self._kinds[kind.name] = kind
            task_names[kind.task_name] = kind.name
        self._by_task = {name: self._kinds[kind] for name, kind in task_names.items()}

    def __iter__(self) -> Iterator[KindSpec]:
        return iter(self._kinds.values())

    def __len__(self) -> int:
        return len(self._kinds)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __getitem__(self, name: str) -> KindSpec:
        kind = self._kinds.get(name)
        if kind is None:
            raise UnknownKind(f"no job kind {name!r} is declared; kinds: {', '.join(self.names)}")
        return kind

    def __repr__(self) -> str:
        return f"KindRegistry({list(self._kinds)})"

    @property
    def names(self) -> tuple[str, ...]:
        """Every declared kind's name (enabled or not: the ledger may hold its jobs)."""
        return tuple(self._kinds)

    def get(self, name: str) -> KindSpec | None:
        """The kind called ``name``, if it is declared."""
        return self._kinds.get(name)

    def enabled(self) -> tuple[KindSpec, ...]:
        """The kinds that accept new jobs."""
        return tuple(kind for kind in self if kind.enabled)

    def by_task_name(self, task_name: str) -> KindSpec | None:
        """The kind whose jobs the Celery task ``task_name`` runs."""
        return self._by_task.get(task_name)

    @property
    def task_names(self) -> frozenset[str]:
        """The Celery tasks that run jobs (not the housekeeping tasks)."""
        return frozenset(self._by_task)

    @property
    def queues(self) -> tuple[str, ...]:
        """Every queue, in name order: the kinds' and the housekeeping queue."""
        return tuple(sorted({*(kind.queue for kind in self), MAINTENANCE_QUEUE}))

    def consumed_queues(self, settings: Settings) -> tuple[str, ...]:
        """The queues this machine's workers consume: :attr:`queues` and the kinds'
        host queues (``replicas.<REPLICA_HOST>`` when this machine holds replicas)."""
        extra = {q for kind in self if kind.host_queues for q in kind.host_queues.load()(settings)}
        return tuple(sorted({*self.queues, *extra}))

    def every_queue(self, settings: Settings) -> tuple[str, ...]:
        """Every queue jobs may wait in, on any host: :meth:`consumed_queues` and the
        queues the kinds' periodic jobs are routed to (each replica host's)."""
        routed = {
            self.queue_of(settings, kind, periodic.arguments)
            for kind in self
            if kind.periodic is not None
            for periodic in kind.periodic.load()(settings)
        }
        return tuple(sorted({*self.consumed_queues(settings), *routed}))

    def queue_of(
        self, settings: Settings | None, kind: KindSpec, arguments: Mapping[str, Any]
    ) -> str:
        """The queue of one job of ``kind``: the kind's route for its arguments, if it
        has one (and settings are at hand), else its queue."""
        if kind.route is None or settings is None:
            return kind.queue
        return kind.route.load()(arguments, settings)

    def time_limit_s(self, settings: Settings, name: str) -> int:
        """The hard time limit of one attempt of a ``name`` job (``JOB_TIME_LIMITS_S``
        overrides the declared one)."""
        return settings.job_time_limits_s.get(name, self[name].time_limit_s)

    def max_attempts(self, settings: Settings, name: str) -> int:
        """Attempts of a ``name`` job before it ends failed (``JOB_MAX_ATTEMPTS``
        overrides the declared number)."""
        return settings.job_max_attempts.get(name, self[name].max_attempts)

    def setting_defaults(self) -> dict[str, dict[str, int]]:
        """The declared per-kind limits, by settings field: what an unset
        ``JOB_TIME_LIMITS_S`` or ``JOB_MAX_ATTEMPTS`` means."""
        return {
            "job_time_limits_s": {kind.name: kind.time_limit_s for kind in self},
            "job_max_attempts": {kind.name: kind.max_attempts for kind in self},
        }

    def effective(self, settings: Settings) -> dict[str, dict[str, int]]:
        """The per-kind limits in force: the declared ones with ``settings``' overrides."""
        return {
            field: {**defaults, **getattr(settings, field)}
            for field, defaults in self.setting_defaults().items()
        }

    def load_models(self) -> None:
        """Import every kind's own tables, so that they join the declarative base's
        metadata (what Alembic and the schema check compare the database with)."""
        for kind in self:
            if kind.models is not None:
                importlib.import_module(kind.models)

    def schedules(self) -> list[tuple[KindSpec, Schedule]]:
        """Every declared schedule, with its kind."""
        return [(kind, schedule) for kind in self for schedule in kind.schedules]

    def schedule_of(self, kind: str, arguments: Mapping[str, Any]) -> Schedule | None:
        """The declared schedule of ``kind`` whose jobs have ``arguments``."""
        declared = self.get(kind)
        if declared is None:
            return None
        return next((s for s in declared.schedules if s.arguments == arguments), None)

    def check_settings(self, settings: Settings) -> None:
        """Refuse settings that do not fit the declared kinds, naming the variables.

        Raises:
            ConfigurationError: a per-kind setting names an undeclared kind, or
                ``CELERY_VISIBILITY_TIMEOUT_S`` would let Redis hand a running (or
                delayed) job to a second worker.
        """
        problems = []
        for field in _PER_KIND_SETTINGS:
            table: dict[str, int] = getattr(settings, field)
            unknown = sorted(set(table) - set(self.names))
            if unknown:
                problems.append(
                    f"{field.upper()} names unknown job kinds {unknown}; known: {list(self.names)}"
                )
        if not problems and len(self):
            longest = max(self.time_limit_s(settings, name) for name in self.names)
            longest_wait = max(longest, settings.job_retry_backoff_max_s)
            if settings.celery_visibility_timeout_s <= longest_wait:
                # Redis redelivers an unacknowledged task after this long: a shorter timeout
                # would run a still-running (or delayed) task twice.
                problems.append(
                    f"CELERY_VISIBILITY_TIMEOUT_S ({settings.celery_visibility_timeout_s}) "
                    f"must exceed the longest job time limit and retry delay ({longest_wait:g} s)"
                )
        if problems:
            raise ConfigurationError("invalid settings:\n  " + "\n  ".join(problems))


def discover(package: ModuleType) -> KindRegistry:
    """The kinds declared in ``package``: the ``KIND`` of each ``<package>.<name>.kind``.

    A sub-package without a ``kind`` module is not a kind (housekeeping, shared code).
    """
    kinds = []
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg:
            continue
        module_name = f"{package.__name__}.{info.name}.{DECLARATION_MODULE}"
        if importlib.util.find_spec(module_name) is None:
            continue
        declaration = getattr(importlib.import_module(module_name), DECLARATION, None)
        if not isinstance(declaration, KindSpec):
            raise TypeError(f"{module_name}.{DECLARATION} must be a jobs.kind.KindSpec")
        kinds.append(declaration)
    return KindRegistry(kinds)
