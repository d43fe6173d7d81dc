"""Job kinds, their Celery task names and queues: one queue per kind of work."""

from __future__ import annotations

from dataclasses import dataclass

from kombu.entity import Exchange, Queue

from domain.jobs import JobKind


@dataclass(frozen=True, slots=True)
class KindRoute:
    kind: JobKind
    task_name: str
    queue: str


ROUTES: dict[JobKind, KindRoute] = {
    route.kind: route
    for route in (
        KindRoute(JobKind.CANARY, "autoforge.canary", "canary"),
        KindRoute(JobKind.EVALUATION, "autoforge.evaluation", "evaluations"),
        KindRoute(JobKind.EMBEDDING, "autoforge.embedding", "embeddings"),
        KindRoute(JobKind.BACKUP, "autoforge.backup", "maintenance"),
        KindRoute(JobKind.REPLICA_SYNC, "autoforge.replica_sync", "replicas"),
    )
}

# Housekeeping tasks (beat-scheduled) run on the maintenance queue.
SWEEP_OUTBOX_TASK = "autoforge.maintenance.sweep_outbox"
PRUNE_LEDGER_TASK = "autoforge.maintenance.prune_ledger"
ENQUEUE_SCHEDULED_TASK = "autoforge.maintenance.enqueue_scheduled"
MAINTENANCE_QUEUE = "maintenance"

ALL_QUEUES: tuple[str, ...] = tuple(
    dict.fromkeys((*(r.queue for r in ROUTES.values()), MAINTENANCE_QUEUE))
)


def task_queues() -> list[Queue]:
    """Every queue, declared as Celery would make it on first use (a direct exchange of
    the same name): a worker started without ``-Q`` consumes all of them."""
    return [
        Queue(name, Exchange(name, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]
        for name in ALL_QUEUES
    ]


def task_routes() -> dict[str, dict[str, str]]:
    routes = {route.task_name: {"queue": route.queue} for route in ROUTES.values()}
    for name in (SWEEP_OUTBOX_TASK, PRUNE_LEDGER_TASK, ENQUEUE_SCHEDULED_TASK):
        routes[name] = {"queue": MAINTENANCE_QUEUE}
    return routes
