"""Raw Celery: the smallest app that runs a no-op task, on the same Redis as the product.

``celery -A bench.baselines.raw_celery worker -c 2 --pool prefork``. Acks late and a
prefetch of one, as the product's workers; no result backend (the product keeps results
in its ledger, not in Celery's backend). The task records when it ran with one RPUSH to
:data:`DONE_KEY` (``"<mark> <start> <end>"``, Unix seconds), as the product's canary
records its run in the ledger: that is how the benchmark sees the drain and the
enqueue-to-done latency.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery

TASK_NAME = "bench.noop"
QUEUE = "bench"
DONE_KEY = "bench:done"
BROKER_VARIABLE = "BENCH_BROKER_URL"


def create_app(broker_url: str) -> Celery:
    """The raw Celery app on ``broker_url``; publishers and workers use the same one."""
    app = Celery("bench_raw", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    recorder: dict[str, Any] = {}

    def done_list() -> redis.Redis:
        # One client per process, made after the prefork pool forked.
        pid = os.getpid()
        if recorder.get("pid") != pid:
            recorder["pid"] = pid
            recorder["client"] = redis.Redis.from_url(broker_url)
        client: redis.Redis = recorder["client"]
        return client

    @app.task(name=TASK_NAME)
    def noop(mark: str) -> None:
        """Do nothing; record when."""
        started = time.time()
        done_list().rpush(DONE_KEY, f"{mark} {started} {time.time()}")

    return app


# The worker's entry point (``-A``) reads its broker from the environment the bench sets.
app = create_app(os.environ[BROKER_VARIABLE]) if BROKER_VARIABLE in os.environ else None
