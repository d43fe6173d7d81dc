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
JOB_TASK_NAMES: frozenset[str] = frozenset(route.task_name for route in ROUTES.values())

# Message priorities. kombu's Redis transport keeps one list per priority step and its
# consumers pop the lower number first: 0 is the most urgent. Jobs go out at JOB_PRIORITY;
# a job handed over again because its worker died goes out at RECOVERY_PRIORITY, ahead of
# any backlog. Beat's housekeeping messages carry no priority (kombu's default, 0): the
# sweeper is never stuck behind a backlog either.
PRIORITY_STEPS: tuple[int, ...] = (0, 3, 6, 9)  # kombu's default steps, pinned
PRIORITY_SEPARATOR = "\x06\x16"  # kombu's default, pinned: it is part of the list names
RECOVERY_PRIORITY = 0
JOB_PRIORITY = 3


def broker_lists(queue: str) -> tuple[str, ...]:
    """The Redis lists that hold a queue's waiting messages, one per priority step."""
    return tuple(f"{queue}{PRIORITY_SEPARATOR}{step}" if step else queue for step in PRIORITY_STEPS)


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
