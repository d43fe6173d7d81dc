"""The canary's logic: sleep, fail transiently ``fail_times`` times, then write one effect."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from db.models import CanaryEffectModel
from tasks.context import JobContext, JobOutcome
from tasks.errors import CanaryFailure


class CanaryArguments(BaseModel):
    """``POST /v1/jobs/canary`` body."""

    model_config = ConfigDict(extra="forbid")

    sleep_ms: int = Field(0, ge=0, le=60_000, description="How long the job works.")
    fail_times: int = Field(0, ge=0, le=10, description="Transient failures before success.")


def run_canary(context: JobContext) -> JobOutcome:
    arguments = CanaryArguments.model_validate(context.job.arguments)
    remaining = arguments.sleep_ms / 1000
    step = 0.25
    slept = 0.0
    while remaining > 0:
        pause = min(step, remaining)
        time.sleep(pause)
        remaining -= pause
        slept += pause
        if arguments.sleep_ms >= 2000:
            context.report_progress(slept / (arguments.sleep_ms / 1000))
    if context.attempt <= arguments.fail_times:
        raise CanaryFailure(f"canary failing on purpose (attempt {context.attempt})")

    attempt = context.attempt

    def write_effect(session: Session) -> None:
        session.add(CanaryEffectModel(job_id=context.job.id, attempt=attempt))
        session.flush()

    return JobOutcome(
        result={"slept_ms": arguments.sleep_ms, "attempts": attempt},
        write_effects=write_effect,
    )
