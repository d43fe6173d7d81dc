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


__all__ = [
    "API_FACTORY",
    "CELERY_APP_MODULE",
    "AutoforgeError",
    "Database",
    "EmbeddedRedis",
    "Runtime",
    "Settings",
]
