"""What every workload of the pipeline benchmark shares: one Redis, one ledger, both apps.

:class:`Bench` starts an embedded Redis (the product's own ``EmbeddedRedis``, in memory)
and a migrated libSQL file in a scratch folder, and builds in this process the product's
Celery app and runtime and the raw Celery app on that Redis. It starts workers for
either side on demand, and knows how to run a round's sides in alternating order.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis

from bench import project
from bench.baselines import raw_celery
from bench.services import Process, celery_worker, environment

T = TypeVar("T")
API_KEY = "bench-api-key"


@dataclass
class Bench:
    workdir: Path
    redis: project.EmbeddedRedis
    settings: project.Settings
    app: Any
    runtime: project.Runtime
    raw: Any
    rounds: int

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def database(self) -> Path:
        return self.workdir / "ledger.db"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def product_env(self, database: Path | None = None, **extra: Any) -> dict[str, str]:
        """The environment of a product process (worker, API) on this bench's services."""
        return environment(
            {
                "APP_ENV": "local",
                "DATABASE_URL": str(database or self.database),
                "REDIS_URL": self.redis_url,
                "LOG_LEVEL": "WARNING",
                "AUTOFORGE_API_KEYS": API_KEY,
                **extra,
            }
        )

    def raw_env(self) -> dict[str, str]:
        return environment({raw_celery.BROKER_VARIABLE: self.redis_url})

    def flush(self) -> None:
        """Empty Redis: queues left by a round must not slow the next."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            client.flushall()
        finally:
            client.close()

    def product_worker(self, name: str) -> Process:
        return celery_worker(
            name,
            project.CELERY_APP_MODULE,
            project.CANARY_QUEUE,
            self.product_env(),
            self.logs / f"{name}.log",
        )

    def raw_worker(self, name: str) -> Process:
        return celery_worker(
            name,
            "bench.baselines.raw_celery",
            raw_celery.QUEUE,
            self.raw_env(),
            self.logs / f"{name}.log",
        )

    def raw_send(self, mark: str) -> None:
        """``delay()`` of the raw no-op task."""
        self.raw.tasks[raw_celery.TASK_NAME].delay(mark)

    def raw_done(self) -> list[tuple[str, float, float]]:
        """(mark, start, end) of every raw task that ran since the last flush."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            entries = client.lrange(raw_celery.DONE_KEY, 0, -1)
        finally:
            client.close()
        done = []
        for entry in entries:
            mark, start, end = entry.decode().split()
            done.append((mark, float(start), float(end)))
        return done

    def raw_done_count(self) -> int:
        client = redis.Redis.from_url(self.redis_url)
        try:
            return int(client.llen(raw_celery.DONE_KEY))
        finally:
            client.close()

    def alternate(self, index: int, sides: list[tuple[str, Callable[[], T]]]) -> dict[str, T]:
        """Run each side once, the order rotated by the round's ``index`` so that neither
        side always goes first (a warm cache, a cooler CPU)."""
        shift = index % len(sides)
        results: dict[str, T] = {}
        for name, run in sides[shift:] + sides[:shift]:
            self.flush()
            results[name] = run()
        return results


@contextmanager
def open_bench(workdir: Path | None, rounds: int) -> Iterator[Bench]:
    """A :class:`Bench` in a scratch folder (removed afterwards unless ``workdir`` given)."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="pipeline-bench-", dir=workdir))
    server = project.EmbeddedRedis(folder / "redis", persistent=False)
    server.start()
    try:
        settings = project.settings_for(
            folder / "ledger.db", server.url, autoforge_api_keys=API_KEY
        )
        project.migrate(settings)
        app, runtime = project.open_runtime(settings)
        raw = raw_celery.create_app(server.url)
        bench = Bench(folder, server, settings, app, runtime, raw, rounds)
        yield bench
        runtime.db.dispose()
    finally:
        server.stop()
        if workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"scratch folder kept: {folder}")
