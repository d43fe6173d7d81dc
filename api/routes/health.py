"""``/healthz`` (the process is up) and ``/readyz`` (its database and Redis answer)."""

from __future__ import annotations

import logging

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.resources import ApiResources, Resources
from api.schemas import Liveness, Readiness
from core.logging import redact
from db.errors import QueryError

router = APIRouter(tags=["health"])

log = logging.getLogger("autoforge.api.health")

OK = "ok"


@router.get("/healthz")
def healthz() -> Liveness:
    """The process is up. Checks nothing else: use ``/readyz`` for dependencies."""
    return Liveness()


@router.get("/readyz", responses={503: {"model": Readiness}})
def readyz(resources: Resources) -> JSONResponse:
    """``200`` when the database and Redis both answer, else ``503`` saying which does not."""
    report = Readiness(
        database=_database(resources), redis=_redis(resources), replicas=_replicas(resources)
    )
    ready = report.database == OK and report.redis == OK and report.replicas in (OK, None)
    return JSONResponse(report.model_dump(exclude_none=True), status_code=200 if ready else 503)


def _database(resources: ApiResources) -> str:
    try:
        with resources.runtime.db.read_session() as session:
            session.execute(text("SELECT 1")).scalar_one()
            try:
                # The API is not ready on a database without the job ledger either.
                session.execute(text("SELECT 1 FROM jobs LIMIT 1")).all()
            except QueryError:
                return "error: the database is not migrated (no jobs table)"
    except Exception as exc:  # any failure means "not ready"; say which
        return _failure("database", resources, exc)
    return OK


def _replicas(resources: ApiResources) -> str | None:
    """This host's replicas whose last successful sync is older than REPLICA_STALE_AFTER_S."""
    settings = resources.settings
    if not settings.local_replicas():
        return None
    from tasks.replica_sync.status import replica_statuses

    try:
        with resources.runtime.db.read_session() as session:
            statuses = replica_statuses(session, settings)
    except Exception as exc:  # the database check above says why
        return _failure("replicas", resources, exc)
    local = {replica.name for replica in settings.local_replicas()}
    stale = [s for s in statuses if s.name in local and s.stale]
    if not stale:
        return OK
    described = ", ".join(
        f"{s.name} (never synced)" if s.lag_s is None else f"{s.name} ({s.lag_s:.0f} s behind)"
        for s in stale
    )
    return (
        f"error: stale replica(s) on {settings.replica_host}: {described}; "
        f"threshold REPLICA_STALE_AFTER_S={settings.replica_stale_after_s:g}"
    )


def _redis(resources: ApiResources) -> str:
    try:
        resources.redis.ping()
    except redis.RedisError as exc:
        return _failure("redis", resources, exc)
    return OK


def _failure(source: str, resources: ApiResources, exc: Exception) -> str:
    message = redact(f"error: {type(exc).__name__}: {exc}", resources.settings.secrets())
    log.warning("readiness: %s %s", source, message)
    return message
