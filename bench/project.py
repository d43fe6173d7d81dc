"""Everything the benchmarks use of the product, in one place.

The benchmarks import the product only through this module, so that when a module of
the product moves (say ``workers/outbox.py`` to ``jobs/outbox.py``) the fix is one line
here. The product's process entry points (the Celery app module, the API factory) are
named here too, as the strings the command lines take.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file, not as ``python -m bench``
    sys.path.insert(0, str(ROOT))

from celery.exceptions import DuplicateTaskNameWarning  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from core.errors import AutoforgeError  # noqa: E402
from core.settings import Settings  # noqa: E402
from db import migrations  # noqa: E402
from db.database import Database  # noqa: E402
from db.models import JobModel  # noqa: E402
from db.transaction import write_transaction  # noqa: E402
from devstack.redis_server import EmbeddedRedis  # noqa: E402
from domain.jobs import JobStatus  # noqa: E402
from jobs.outbox import enqueue  # noqa: E402
from jobs.queues import PRUNE_LEDGER_TASK  # noqa: E402
from jobs.runtime import Runtime  # noqa: E402
from tasks.registry import kind_registry  # noqa: E402
from workers.app import create_celery  # noqa: E402

# The bench builds one product app per database it measures, all in this process: each
# new app also receives the earlier apps' (shared) tasks, and Celery warns about the
# names. Each task still reaches its own app's runtime (``self.app``), which is all the
# bench relies on.
warnings.filterwarnings("ignore", category=DuplicateTaskNameWarning)

#: ``celery -A <this> worker``: the product's worker.
CELERY_APP_MODULE = "workers.main"
#: ``uvicorn --factory <this>``: the product's API.
API_FACTORY = "api.main:build"
#: The route that enqueues a canary job, and the body of a no-op canary.
CANARY_PATH = "/v1/jobs/canary"
NOOP_CANARY: dict[str, Any] = {"sleep_ms": 0}
#: Queue of canary jobs (workers consume it with ``-Q``).
CANARY_QUEUE = kind_registry()["canary"].queue
#: What an evaluation job's ledger row says its kind is, and the final statuses.
EVALUATION_KIND = "evaluation"
CANARY_KIND = "canary"
BACKUP_KIND = "backup"
SUCCEEDED = str(JobStatus.SUCCEEDED)
FAILED = str(JobStatus.FAILED)
CANCELLED = str(JobStatus.CANCELLED)
QUEUED = str(JobStatus.QUEUED)
#: How many days a finished job stays in the ledger unless LEDGER_RETENTION_DAYS says.
DEFAULT_RETENTION_DAYS: float = Settings.model_fields["ledger_retention_days"].default
#: The settings variables (their environment names): processes the bench starts get
#: only the ones it sets.
SETTINGS_VARIABLES = frozenset(name.upper() for name in Settings.model_fields)


def settings_for(database: Path, redis_url: str, **overrides: Any) -> Settings:
    """The product's settings for a benchmark: a local file, a given Redis, quiet logs."""
    values: dict[str, Any] = {
        "app_env": "local",
        "database_url": str(database),
        "redis_url": redis_url,
        "log_level": "WARNING",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def migrate(settings: Settings) -> None:
    """Create (or bring up to date) the schema of ``settings``' database."""
    migrations.upgrade(settings)


def open_runtime(settings: Settings) -> tuple[Any, Runtime]:
    """A Celery app and the runtime attached to it (database, publisher), as a worker
    process or the CLI holds them."""
    app = create_celery(settings)
    runtime: Runtime = app.autoforge_runtime
    return app, runtime


def enqueue_canary(runtime: Runtime) -> str:
    """Accept a no-op canary job through the outbox; returns its id."""
    accepted = enqueue(runtime, CANARY_KIND, dict(NOOP_CANARY))
    return accepted.job.id


def prune_ledger(app: Any) -> Any:
    """Run the beat-scheduled prune of finished jobs, in this process, as a worker would."""
    return app.tasks[PRUNE_LEDGER_TASK]()


def job_times(db: Database, job_ids: Iterable[str]) -> dict[str, tuple[str, datetime, datetime]]:
    """Job id -> (status, started_at, finished_at) of the given jobs that have finished."""
    ids = list(job_ids)
    found: dict[str, tuple[str, datetime, datetime]] = {}
    with db.read_session() as session:
        for start in range(0, len(ids), 500):
            rows = session.execute(
                select(
                    JobModel.id, JobModel.status, JobModel.started_at, JobModel.finished_at
                ).where(
                    JobModel.id.in_(ids[start : start + 500]),
                    JobModel.finished_at.is_not(None),
                )
            )
            found.update({job_id: (str(s), a, b) for job_id, s, a, b in rows})
    return found


def finished_count(db: Database, job_ids: list[str]) -> int:
    """How many of the given jobs have finished."""
    count = 0
    with db.read_session() as session:
        for start in range(0, len(job_ids), 500):
            count += int(
                session.scalar(
                    select(func.count()).where(
                        JobModel.id.in_(job_ids[start : start + 500]),
                        JobModel.finished_at.is_not(None),
                    )
                )
                or 0
            )
    return count


def touch_job(db: Database, job_id: str, progress: float) -> None:
    """The write unit the benchmarks time: one small UPDATE of one job row."""

    def unit(session: Session) -> None:
        session.execute(
            text("UPDATE jobs SET progress = :progress WHERE id = :id"),
            {"progress": progress, "id": job_id},
        )

    write_transaction(db, unit)


# ---------------------------------------------------------------- embeddings and search
# Imported on use: numpy and onnxruntime stay out of the other benchmarks.


def local_embedder() -> Any:
    """The product's local embedder (all-MiniLM-L6-v2, int8 ONNX), its model loaded."""
    from providers.embeddings.local import LocalEmbedder

    embedder = LocalEmbedder()
    embedder.load()
    return embedder


def embed_all_stale(db: Database, embedder: Any, batch_size: int) -> Any:
    """The embedding job's logic on ``{"all_stale": true}``, in this process: stale prompts
    read in pages, embedded, written in one write transaction per batch."""
    from tasks.embedding.job import embed_prompts

    return embed_prompts(db, embedder, all_stale=True, batch_size=batch_size)


def add_prompts(db: Database, rows: list[tuple[str, str, str]]) -> None:
    """Insert prompts (id, title, content) in one write transaction (bulk, not one by one:
    the FTS triggers index them as usual)."""
    from sqlalchemy import insert

    from db.models import PromptModel

    def unit(session: Session) -> None:
        session.execute(
            insert(PromptModel),
            [
                {"id": pid, "title": title, "content": content, "user_id": "bench"}
                for pid, title, content in rows
            ],
        )

    write_transaction(db, unit)


def upsert_vectors(
    db: Database, model: str, rows: list[tuple[str, str, str, list[float]]]
) -> list[str]:
    """Store vectors of prompts (id, title, content, vector) through the repository's
    upsert, in one write transaction (as the embedding job writes a batch)."""
    from tasks.embedding.repository import PromptEmbeddingRepository, PromptText

    items = [(PromptText.of(pid, title, content), vector) for pid, title, content, vector in rows]
    dim = len(rows[0][3]) if rows else 0
    written: list[str] = write_transaction(
        db, lambda s: PromptEmbeddingRepository(s).upsert(model, dim, items)
    )
    return written


def nearest(db: Database, model: str, vector: list[float], k: int) -> list[str]:
    """The product's vector search candidates (``vector_top_k`` through the index, joined
    back to live prompts): prompt ids, nearest first."""
    from tasks.embedding.repository import PromptEmbeddingRepository

    with db.read_session() as session:
        found = PromptEmbeddingRepository(session).nearest(model, vector, k)
    return [c.prompt_id for c in found]


def clear_vectors(db: Database) -> None:
    """Delete every stored vector (their prompts become stale again)."""
    execute(db, "DELETE FROM prompt_embeddings")


def execute(db: Database, statement: str) -> None:
    """One statement in a write transaction."""
    write_transaction(db, lambda s: s.execute(text(statement)))


def top_k_raw(db: Database, vector: list[float], k: int) -> list[str]:
    """``vector_top_k(index, q, k)`` alone, joined to the rows' prompt ids (no over-fetch,
    no filter): what the index itself returns."""
    import json

    with db.read_session() as session:
        rows = session.execute(
            text(
                f"SELECT e.prompt_id FROM vector_top_k('{VECTOR_INDEX}', vector32(:q), :k) "
                "AS t JOIN prompt_embeddings AS e ON e.rowid = t.id"
            ),
            {"q": json.dumps(vector), "k": k},
        )
        return [str(pid) for (pid,) in rows]


def exact_nearest(db: Database, vector: list[float], k: int) -> list[str]:
    """The exact ``k`` nearest by cosine: a scan of every vector, no index."""
    import json

    with db.read_session() as session:
        rows = session.execute(
            text(
                "SELECT prompt_id FROM prompt_embeddings "
                "ORDER BY vector_distance_cos(embedding, vector32(:q)) LIMIT :k"
            ),
            {"q": json.dumps(vector), "k": k},
        )
        return [str(pid) for (pid,) in rows]


def vector_index_ddl() -> str:
    """The product's ``CREATE INDEX`` of the vector index (the newest revision that makes
    it)."""
    import importlib.util

    path = ROOT / "alembic" / "versions" / "0011_vector_index_1bit_neighbours.py"
    spec = importlib.util.spec_from_file_location("bench_revision_0011", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.VECTOR_INDEX_DDL)


#: The vector index's name, and the local model's name and vector size.
VECTOR_INDEX = "idx_prompt_embeddings_vector"
EMBEDDING_BATCH_SIZE: int = Settings.model_fields["embedding_batch_size"].default


__all__ = [
    "API_FACTORY",
    "CELERY_APP_MODULE",
    "AutoforgeError",
    "Database",
    "EmbeddedRedis",
    "Runtime",
    "Settings",
]
