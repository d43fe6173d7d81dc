"""The canary: a job that exercises the whole pipeline (ledger, retries, effects) on demand.

This file is the kind's declaration, and the worked example of adding a kind: an
arguments model (the body of ``POST /v1/jobs/canary``), then ``KIND``. The logic is in
:mod:`tasks.canary.logic`, named here by a lazy reference.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from jobs.kind import KindSpec, Ref


class CanaryArguments(BaseModel):
    """``POST /v1/jobs/canary`` body."""

    model_config = ConfigDict(extra="forbid")

    sleep_ms: int = Field(0, ge=0, le=60_000, description="How long the job works.")
    fail_times: int = Field(0, ge=0, le=10, description="Transient failures before success.")
    stall_ms: int = Field(
        0,
        ge=0,
        le=30_000,
        description="Then how long the job stalls in one C call that keeps Python's GIL "
        "(as a runaway regular expression would); its lease must survive it.",
    )

    @model_serializer(mode="wrap")
    def _omit_no_stall(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Stored arguments (and so idempotency fingerprints) of canaries that do not
        # stall stay what they were before this option existed.
        data: dict[str, Any] = handler(self)
        if not self.stall_ms:
            data.pop("stall_ms", None)
        return data


KIND = KindSpec(
    name="canary",
    queue="canary",
    task_name="autoforge.canary",
    arguments=CanaryArguments,
    example={"sleep_ms": 500, "fail_times": 1},
    summary="Enqueue a canary job",
    description="It sleeps `sleep_ms`, fails transiently `fail_times` times, then writes "
    "one effect row keyed by its id. It exercises the whole pipeline.",
    logic=Ref("tasks.canary.logic:run_canary"),
    # Its one effect per job: tasks/canary/models.py, made by revision 0004.
    models="tasks.canary.models",
    # It fails on purpose up to 10 times, then succeeds.
    max_attempts=11,
    time_limit_s=120,
)
