"""The worker's broker consumer: Celery's own, reconnecting promptly after an outage.

Celery reconnects to the broker with kombu's default pauses, 2, 4, 6, ... up to 30 s
between attempts, so after a long Redis outage a worker may sleep through the first
30 s of Redis being back. An attempt costs one TCP connect; :class:`PromptConsumer`
pauses at most :data:`RECONNECT_MAX_INTERVAL_S` between them.
"""

from __future__ import annotations

import functools
from typing import Any

from celery.worker.consumer import Consumer

#: The longest pause between two attempts to reach the broker again.
RECONNECT_MAX_INTERVAL_S = 5.0


class PromptConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer with reconnection pauses capped at a few seconds."""

    def ensure_connected(self, conn: Any) -> Any:
        # Celery passes kombu no pause settings: give this connection ours.
        conn.ensure_connection = functools.partial(
            conn.ensure_connection,
            interval_start=1,
            interval_step=1,
            interval_max=RECONNECT_MAX_INTERVAL_S,
        )
        return super().ensure_connected(conn)
