"""Celery's queues and routes, derived from the declared job kinds."""

from __future__ import annotations

from kombu.entity import Exchange, Queue

from core.settings import Settings
from jobs.queues import HOUSEKEEPING_TASKS, MAINTENANCE_QUEUE
from jobs.registry import KindRegistry


def task_queues(kinds: KindRegistry, settings: Settings | None = None) -> list[Queue]:
    """Every queue, declared as Celery would make it on first use (a direct exchange of
    the same name): a worker started without ``-Q`` consumes all of them, this machine's
    own queues (``replicas.<REPLICA_HOST>``) included."""
    names = kinds.queues if settings is None else kinds.consumed_queues(settings)
    return [
        Queue(name, Exchange(name, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]
        for name in names
    ]


def task_routes(kinds: KindRegistry) -> dict[str, dict[str, str]]:
    """Each kind's task to its queue; the housekeeping tasks to the maintenance queue."""
    routes = {kind.task_name: {"queue": kind.queue} for kind in kinds}
    for name in HOUSEKEEPING_TASKS:
        routes[name] = {"queue": MAINTENANCE_QUEUE}
    return routes
