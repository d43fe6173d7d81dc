"""Names on the broker: the housekeeping queue and tasks, message priorities, and the Redis
lists that hold a queue. Each kind's queue and task name are in its declaration
(:mod:`jobs.kind`); :attr:`jobs.registry.KindRegistry.queues` lists them all."""

from __future__ import annotations

# Housekeeping tasks (beat-scheduled) run on the maintenance queue.
SWEEP_OUTBOX_TASK = "autoforge.maintenance.sweep_outbox"
PRUNE_LEDGER_TASK = "autoforge.maintenance.prune_ledger"
ENQUEUE_SCHEDULED_TASK = "autoforge.maintenance.enqueue_scheduled"
ENQUEUE_PERIODIC_TASK = "autoforge.maintenance.enqueue_periodic"
MAINTENANCE_QUEUE = "maintenance"
HOUSEKEEPING_TASKS: tuple[str, ...] = (
    SWEEP_OUTBOX_TASK,
    PRUNE_LEDGER_TASK,
    ENQUEUE_SCHEDULED_TASK,
    ENQUEUE_PERIODIC_TASK,
)

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
