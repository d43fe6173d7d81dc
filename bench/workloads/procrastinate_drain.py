"""procrastinate's drain of the same no-op jobs, on the local PostgreSQL.

Optional: it needs the ``bench`` extra (procrastinate, psycopg) and a reachable
PostgreSQL; :func:`unavailable` says why it cannot run, and the workload is skipped.
Its tables live in a schema of their own, dropped at the end.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench.services import BenchError, Process, environment, wait_until

SCHEMA = "bench_procrastinate"
# As in bench/baselines/procrastinate_app.py (not imported here: an optional extra).
DSN_VARIABLE = "BENCH_PROCRASTINATE_DSN"
SCHEMA_VARIABLE = "BENCH_PROCRASTINATE_SCHEMA"
QUEUE = "bench"
INSTALL = ".venv/bin/pip install -e '.[bench]'"


def unavailable(dsn: str) -> str | None:
    """Why procrastinate cannot run here, or None if it can."""
    if (
        importlib.util.find_spec("procrastinate") is None
        or importlib.util.find_spec("psycopg") is None
    ):
        return f"procrastinate is not installed (`{INSTALL}`)"
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable at {_safe(dsn)}: {str(exc).strip().splitlines()[0]}"
    return None


def _safe(dsn: str) -> str:
    # A DSN may carry a password: show where it points, not who logs in.
    return dsn.rsplit("@", 1)[-1]


class ProcrastinateDrain:
    """Creates procrastinate's schema, defers jobs, runs a one-shot worker, reads events."""

    def __init__(self, dsn: str, logs: Path) -> None:
        self.dsn = dsn
        self.logs = logs
        # Imported here: procrastinate is an optional extra of the bench.
        from bench.baselines import procrastinate_app

        self.app: Any = procrastinate_app.create_app(dsn, SCHEMA)

    def __enter__(self) -> Self:
        self._sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
        with self.app.open():
            self.app.schema_manager.apply_schema()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")

    def _sql(self, statement: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as connection:
            cursor = connection.execute(statement)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def drain(self, jobs: int, round_name: str, timeout: float) -> float:
        """Jobs per second from the first start to the last end of ``jobs`` no-op jobs."""
        self._sql(f"TRUNCATE {SCHEMA}.procrastinate_events, {SCHEMA}.procrastinate_jobs CASCADE")
        with self.app.open():
            self.app.tasks["bench.noop"].batch_defer(*({} for _ in range(jobs)))
        env = environment(
            {
                DSN_VARIABLE: self.dsn,
                SCHEMA_VARIABLE: SCHEMA,
            }
        )
        worker = Process(
            round_name,
            [
                sys.executable, "-m", "procrastinate",
                "--app", "bench.baselines.procrastinate_app.app",
                "worker", "-q", QUEUE, "-c", "2", "--one-shot",
            ],
            env,
            self.logs / f"{round_name}.log",
        )  # fmt: skip
        with worker:
            wait_until(lambda: not worker.alive, what=f"{round_name} finishing", timeout=timeout)
            if worker.process.returncode != 0:
                raise BenchError(f"{round_name} failed:\n{worker.log_tail()}")
        ((first, last, done),) = self._sql(
            f"SELECT min(at) FILTER (WHERE type = 'started'), "
            f"max(at) FILTER (WHERE type = 'succeeded'), "
            f"count(*) FILTER (WHERE type = 'succeeded') FROM {SCHEMA}.procrastinate_events"
        )
        if done != jobs:
            raise BenchError(f"{round_name}: {done} of {jobs} jobs succeeded")
        return float(jobs / (last - first).total_seconds())
