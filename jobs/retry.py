"""The retry policy, declared once: exponential backoff with full jitter, capped.

A transient error may carry ``retry_after`` (e.g. HTTP 429's ``Retry-After``): the delay
is then at least that long.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float
    max_s: float

    def delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Seconds to wait before the attempt after ``attempt`` (1-based)."""
        ceiling = min(self.max_s, self.base_s * 2 ** max(attempt - 1, 0))
        delay = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_s))
        return delay
