"""procrastinate on PostgreSQL: the same no-op job, for the drain.

``procrastinate --app bench.baselines.procrastinate_app.app worker -c 2 --one-shot``.
Its tables live in their own PostgreSQL schema (``search_path``), created and dropped by
the benchmark, so the database it is given stays as it was. The drain is read from
procrastinate's own event table (``started`` and ``succeeded`` times of each job).
"""

from __future__ import annotations

import os

from procrastinate import App, PsycopgConnector

DSN_VARIABLE = "BENCH_PROCRASTINATE_DSN"
SCHEMA_VARIABLE = "BENCH_PROCRASTINATE_SCHEMA"
QUEUE = "bench"


def create_app(dsn: str, schema: str) -> App:
    """A procrastinate app whose tables are in ``schema`` of the database at ``dsn``."""
    app = App(
        connector=PsycopgConnector(
            conninfo=dsn, kwargs={"options": f"-c search_path={schema}"}, min_size=1, max_size=4
        )
    )

    @app.task(name="bench.noop", queue=QUEUE)
    async def noop() -> None:
        """Do nothing."""

    return app


app = (
    create_app(os.environ[DSN_VARIABLE], os.environ[SCHEMA_VARIABLE])
    if DSN_VARIABLE in os.environ
    else None
)
