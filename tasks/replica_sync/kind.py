"""The replica-sync kind: pull the primary's changes into a local replica, on the host that
holds its file. The logic is :mod:`tasks.replica_sync.job`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jobs.kind import KindSpec, ReadinessCheck, Ref


class ReplicaSyncArguments(BaseModel):
    """``POST /v1/jobs/replica-sync`` body: one replica by name, or every replica of a host."""

    model_config = ConfigDict(extra="forbid", strict=True)

    replica: str | None = Field(None, description="The replica's name in REPLICAS.", max_length=63)
    all: bool = Field(False, description="Sync every replica held by one host.")
    host: str | None = Field(
        None,
        description='With "all": the host whose replicas to sync (default: the host named '
        "by the API's REPLICA_HOST).",
        max_length=253,
    )

    @model_validator(mode="after")
    def _one_target(self) -> ReplicaSyncArguments:
        if (self.replica is None) == (not self.all):
            raise ValueError('give either "replica" or "all": true')
        if self.host is not None and not self.all:
            raise ValueError('"host" goes with "all" (a named replica knows its host)')
        return self


KIND = KindSpec(
    name="replica-sync",
    queue="replicas",
    task_name="autoforge.replica_sync",
    arguments=ReplicaSyncArguments,
    example={"replica": "edge-1"},
    summary="Sync a local replica from the primary",
    description="Pull the primary's changes into a local replica declared in `REPLICAS` "
    '(`{"replica": "edge-1"}`), or into every replica of a host (`{"all": true}`). The '
    "job runs on the host that holds the file (queue `replicas.<host>`). A sync that "
    "finds another sync of the same replica running is skipped, not queued. Status: "
    "`/v1/replicas`.",
    logic=Ref("tasks.replica_sync.job:run_replica_sync_job"),
    max_attempts=4,
    time_limit_s=600,
    admission=Ref("tasks.replica_sync.routing:admit"),
    route=Ref("tasks.replica_sync.routing:route"),
    host_queues=Ref("tasks.replica_sync.routing:host_queues"),
    periodic=Ref("tasks.replica_sync.routing:periodic"),
    metrics=Ref("tasks.replica_sync.metrics:REPLICA_METRICS"),
    # /readyz reports this host's stale replicas.
    readiness=ReadinessCheck("replicas", Ref("tasks.replica_sync.status:readiness")),
    models="tasks.replica_sync.models",
)
