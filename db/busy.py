"""Waiting out a busy database in Python, never inside the SDK.

The libSQL SDK keeps the GIL for the whole of a statement, SQLite's busy handler
included: with ``busy_timeout`` set, a statement waiting for another process's write
lock freezes every thread of its process (an API's event loop, a worker's lease
renewal) for as long as the lock is held. So connections run with ``busy_timeout=0``:
a statement that meets a lock fails at once with :class:`db.errors.DatabaseBusy`, and
the caller waits here, in ``time.sleep``, which releases the GIL.

The waiting policy is declared once, here; :func:`db.transaction.write_transaction` and
:meth:`db.database.Database.read_session` use it with their own budgets.
"""

from __future__ import annotations

import random
import time

from core.settings import Settings

#: SQLite's own busy timeout on every local connection: never wait inside the SDK.
SDK_BUSY_TIMEOUT_MS = 0


class BusyWait:
    """One bounded wait: jittered, exponentially growing pauses until a deadline.

    :meth:`pause` sleeps before the next try and says whether there is one. Pauses start
    at ``initial_s`` and double up to ``max_s``; each is between half and all of that
    ceiling, so that waiters in different processes do not retry in step. The last pause
    ends at the deadline, so the last try happens when the budget is spent.
    """

    __slots__ = ("_ceiling", "_deadline", "_max_s", "started", "tries")

    def __init__(self, budget_s: float, initial_s: float, max_s: float) -> None:
        self.started = time.monotonic()
        self.tries = 1
        self._deadline = self.started + budget_s
        self._ceiling = initial_s
        self._max_s = max(initial_s, max_s)

    @classmethod
    def for_writes(cls, settings: Settings) -> BusyWait:
        """A write unit's wait: ``DB_WRITE_MAX_SECONDS`` in all."""
        return cls(
            settings.db_write_max_seconds,
            settings.db_write_backoff_initial_s,
            settings.db_write_backoff_max_s,
        )

    @classmethod
    def for_reads(cls, settings: Settings) -> BusyWait:
        """A read's wait for its connection: ``DB_BUSY_TIMEOUT_MS`` in all."""
        return cls(
            settings.db_busy_timeout_ms / 1000,
            settings.db_write_backoff_initial_s,
            settings.db_write_backoff_max_s,
        )

    def remaining(self) -> float:
        """Seconds left before the deadline (0 once it has passed)."""
        return max(0.0, self._deadline - time.monotonic())

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def pause(self) -> bool:
        """Sleep before the next try; ``False`` (at once) when the budget is spent."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            return False
        delay = self._ceiling * (0.5 + 0.5 * random.random())
        self._ceiling = min(self._ceiling * 2, self._max_s)
        time.sleep(min(delay, remaining))
        self.tries += 1
        return True
