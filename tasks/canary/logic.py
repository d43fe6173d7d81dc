"""The canary's logic: sleep, fail transiently ``fail_times`` times, then write one effect.

``stall_ms`` makes it stall inside one C call that keeps the GIL, as a runaway regular
expression or a C extension would: nothing else in its process runs meanwhile. It shows
that such a job keeps its lease (renewal runs in another process) and runs once.
"""

from __future__ import annotations

import ctypes
import time

from sqlalchemy.orm import Session

from jobs.context import JobContext, JobOutcome
from tasks.canary.errors import CanaryFailure
from tasks.canary.kind import CanaryArguments
from tasks.canary.repository import CanaryEffectRepository


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


def stall_holding_the_gil(seconds: float) -> None:
    """Wait in C without releasing the GIL: ``ctypes.PyDLL`` functions keep it."""
    libc = ctypes.PyDLL(None)
    request = _Timespec(int(seconds), int(seconds % 1 * 1_000_000_000))
    remaining = _Timespec()
    # A signal cuts nanosleep short; go on with what is left.
    while libc.nanosleep(ctypes.byref(request), ctypes.byref(remaining)) != 0:
        request = _Timespec(remaining.tv_sec, remaining.tv_nsec)


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
    if arguments.stall_ms:
        stall_holding_the_gil(arguments.stall_ms / 1000)
    if context.attempt <= arguments.fail_times:
        raise CanaryFailure(f"canary failing on purpose (attempt {context.attempt})")

    attempt = context.attempt

    def write_effect(session: Session) -> None:
        CanaryEffectRepository(session).add(context.job.id, attempt=attempt)

    return JobOutcome(
        result={"slept_ms": arguments.sleep_ms, "attempts": attempt},
        write_effects=write_effect,
    )
