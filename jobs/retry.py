"""Every retry policy of the system, declared once, as data.

As procrastinate's ``RetryStrategy`` and dramatiq's ``Retries`` middleware keep backoff
in one place, the code that retries here only asks a :class:`RetryPolicy` how long to
wait; how often it may retry is the caller's count (a kind's attempts, a setting):

- :func:`job_retry_policy`: a job after a transient error. ``JOB_RETRY_BACKOFF_S``
  doubling up to ``JOB_RETRY_BACKOFF_MAX_S``, with jitter; a ``Retry-After`` the error
  carries (an HTTP 429) is honoured. Attempts: the kind's (``tasks/<kind>/kind.py``,
  ``JOB_MAX_ATTEMPTS``).
- :data:`PROVIDER_RETRY_POLICY`: one model provider request (an evaluation's chat call, a
  batch of embeddings), on a timeout, 408, 429 or 5xx: 1 s doubling up to 60 s, with
  jitter, ``Retry-After`` honoured up to 60 s. Retries: ``PROVIDER_MAX_RETRIES``. The only
  retries of such a request: the ``openai`` SDK's own are off (``providers.openai_api``).
- :data:`SUPERVISOR_RESTART_POLICY`: ``autoforge up`` restarting a crashed child process
  or its Redis: 1 s doubling up to 30 s, without jitter (a person reads the delays).
  Restarts: ``--max-restarts`` within ``--restart-window``.

Waiting for the database's write lock is not a retry policy of this kind: it is a wait
of microseconds to milliseconds, bounded by time, in :mod:`db.busy`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from core.settings import Settings


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff from ``base_s``, capped at ``max_s``, with full jitter (the
    delay is drawn from the upper half of the step) unless ``jitter`` is off.

    A transient error may carry ``retry_after`` (e.g. HTTP 429's ``Retry-After``): the
    delay is then at least that long, up to ``max_s``.
    """

    base_s: float
    max_s: float
    jitter: bool = True

    def delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Seconds to wait before the attempt after ``attempt`` (1-based)."""
        ceiling = min(self.max_s, self.base_s * 2 ** max(attempt - 1, 0))
        delay = random.uniform(ceiling / 2, ceiling) if self.jitter else ceiling
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_s))
        return delay


def job_retry_policy(settings: Settings) -> RetryPolicy:
    """The backoff between a job's attempts (and redeliveries while the ledger is busy)."""
    return RetryPolicy(settings.job_retry_backoff_s, settings.job_retry_backoff_max_s)


#: Backoff between retries of one provider call (a ``Retry-After`` counts up to ``max_s``).
PROVIDER_RETRY_POLICY = RetryPolicy(base_s=1.0, max_s=60.0)

#: Backoff before ``autoforge up`` restarts a crashed process (the n-th crash in its
#: window waits ``base_s * 2**(n-1)``, at most ``max_s``).
SUPERVISOR_RESTART_POLICY = RetryPolicy(base_s=1.0, max_s=30.0, jitter=False)
