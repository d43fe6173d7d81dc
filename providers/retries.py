"""One provider call, retried on transient failures.

The project's retry policy (:data:`jobs.retry.PROVIDER_RETRY_POLICY`) is the only one:
the ``openai`` SDK's own retries are off (``max_retries=0``), so that every attempt passes
the shared rate limit and a cancelled run stops waiting at once (see docs/decisions.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from jobs.retry import RetryPolicy
from providers.errors import ProviderTransientError

log = logging.getLogger("autoforge.providers")

T = TypeVar("T")


def with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    max_retries: int,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, retried up to ``max_retries`` times on :class:`ProviderTransientError`.

    Waits ``policy.delay(attempt, retry_after=...)`` between attempts, so a ``Retry-After``
    is honoured (up to the policy's cap). The last error is re-raised; any other error
    propagates at once.
    """
    attempt = 1
    while True:
        try:
            return call()
        except ProviderTransientError as exc:
            if attempt > max_retries:
                raise
            delay = policy.delay(attempt, retry_after=exc.retry_after)
            log.info("provider call failed (%s); retry %d in %.2fs", exc, attempt, delay)
            sleep(delay)
            attempt += 1
