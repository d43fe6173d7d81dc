"""What one API process holds: built in the app's lifespan, released at shutdown.

Nothing here connects when it is built: the database engine is created on first use in
the serving process (:class:`db.database.Database`), Celery and Redis connect on their
first command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import redis
from fastapi import Depends, Request
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.auth import ApiKeyRing
from api.metrics import ApiMetrics
from core.settings import Settings
from db.database import Database
from jobs.runtime import Runtime
from providers.embeddings import Embedder, embedder_for
from workers.app import broker_url, create_celery

REDIS_PROBE_TIMEOUT_S = 1.0


@dataclass
class ApiResources:
    """The runtime (settings, database, publisher), a Redis client, keys and metrics."""

    settings: Settings
    celery_app: Any
    runtime: Runtime
    redis: redis.Redis
    keys: ApiKeyRing
    metrics: ApiMetrics
    #: ``READ_REPLICA``'s local file, read-only: reads that may be stale.
    replica_db: Database | None = None
    _embedder: Embedder | None = field(default=None, repr=False)

    @property
    def stale_read_db(self) -> Database:
        """Where reads that may be stale go (prompt listings, score history): the local
        replica of ``READ_REPLICA`` once it has a file, else the primary. Writes, and
        reads that must see them, use ``runtime.db``."""
        replica = self.replica_db
        if replica is not None and replica.read_only_file and replica.read_only_file.exists():
            return replica
        return self.runtime.db

    @classmethod
    def open(cls, settings: Settings) -> ApiResources:
        """Build this process's resources for ``settings``; nothing connects yet."""
        celery_app = create_celery(settings)
        _publish_only(celery_app)
        runtime: Runtime = celery_app.autoforge_runtime
        # For readiness and queue depths only: one quick try, no retry loop.
        client = redis.Redis.from_url(
            broker_url(settings),
            socket_timeout=REDIS_PROBE_TIMEOUT_S,
            socket_connect_timeout=REDIS_PROBE_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        replica = settings.replica(settings.read_replica) if settings.read_replica else None
        return cls(
            settings=settings,
            celery_app=celery_app,
            runtime=runtime,
            redis=client,
            keys=ApiKeyRing(settings),
            metrics=ApiMetrics(runtime, client),
            replica_db=None if replica is None else Database(settings, read_only_file=replica.path),
        )

    def embedder(self) -> Embedder:
        """The configured embedder, for search queries (made on first use: the local
        model loads in this process only if a search asks for it)."""
        if self._embedder is None:
            self._embedder = embedder_for(self.settings)
        return self._embedder

    def close(self) -> None:
        """Close this app's database pool and Redis client.

        The broker connections stay open: kombu pools them per process, keyed by broker
        URL and options, so another app in this process may be using the same pool.
        """
        self.runtime.db.dispose()
        if self.replica_db is not None:
            self.replica_db.dispose()
        self.redis.close()
        self.celery_app.close()


def _publish_only(celery_app: Any) -> None:
    """Tune the Celery app for a process that only publishes, before it first connects.

    With Redis down, a publish would otherwise stall the request for ~20 s: kombu retries
    the broker connection, and Celery subscribes to each task's result on the result
    backend and retries that too. The API needs neither: the ledger holds results, and a
    job whose publish failed stays queued for the outbox sweeper. So the broker gets one
    try per publish, and the result backend is off in this process.
    """
    celery_app.conf.broker_transport_options = {
        **celery_app.conf.broker_transport_options,
        "max_retries": 0,
    }
    celery_app.conf.result_backend = "disabled"


def get_resources(request: Request) -> ApiResources:
    resources: ApiResources = request.app.state.resources
    return resources


Resources = Annotated[ApiResources, Depends(get_resources)]
