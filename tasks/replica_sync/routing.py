"""Where replica syncs run: on the host that holds the replica's file.

Each host's workers consume ``replicas.<REPLICA_HOST>`` when ``REPLICAS`` declares a
replica on that host; a sync job goes to the queue of its replica's host. A per-host
queue rather than a broadcast: a sync is a ledger job, run once, retried, recorded; a
broadcast would run it on every host or on none (if no worker listens at that instant).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.settings import ReplicaConfig, Settings
from db.database import Database
from jobs.errors import ArgumentProblem, InvalidArguments
from jobs.kind import Periodic
from tasks.replica_sync.kind import ReplicaSyncArguments

QUEUE_PREFIX = "replicas."


def queue_of_host(host: str) -> str:
    """The queue that ``host``'s workers consume for its replicas."""
    return f"{QUEUE_PREFIX}{host}"


def target_host(arguments: ReplicaSyncArguments, settings: Settings) -> str:
    """The host a job's replicas are on."""
    if arguments.replica is not None:
        replica = settings.replica(arguments.replica)
        if replica is not None:
            return replica.host_or(settings.replica_host)
    return arguments.host or settings.replica_host


def replicas_of(arguments: ReplicaSyncArguments, settings: Settings) -> list[ReplicaConfig]:
    """The replicas a job syncs: the named one, or every replica of its host."""
    if arguments.replica is not None:
        replica = settings.replica(arguments.replica)
        return [] if replica is None else [replica]
    host = target_host(arguments, settings)
    return [r for r in settings.replicas if r.host_or(settings.replica_host) == host]


def route(arguments: Mapping[str, Any], settings: Settings) -> str:
    """The queue of a sync job: its replica's host's."""
    return queue_of_host(target_host(ReplicaSyncArguments.model_validate(arguments), settings))


def host_queues(settings: Settings) -> tuple[str, ...]:
    """This machine's replica queue, if it holds a replica."""
    return (queue_of_host(settings.replica_host),) if settings.local_replicas() else ()


def periodic(settings: Settings) -> list[Periodic]:
    """One beat entry per replica, every ``interval_s``."""
    return [
        Periodic(
            name=f"replica-sync-{replica.name}",
            arguments={"replica": replica.name, "all": False, "host": None},
            interval_s=replica.interval_s,
        )
        for replica in settings.replicas
    ]


def admit(arguments: ReplicaSyncArguments, settings: Settings, db: Database) -> None:
    """Refuse a replica that ``REPLICAS`` does not declare, or a host with none."""
    names = [replica.name for replica in settings.replicas]
    if arguments.replica is not None and settings.replica(arguments.replica) is None:
        message = f"no replica {arguments.replica!r} is declared in REPLICAS; replicas: {names}"
        raise InvalidArguments([ArgumentProblem(("replica",), message)])
    if arguments.all and not replicas_of(arguments, settings):
        message = f"no replica is declared on host {target_host(arguments, settings)!r}"
        raise InvalidArguments([ArgumentProblem(("all",), message)])
