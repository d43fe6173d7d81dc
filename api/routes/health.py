"""``/healthz`` (the process is up) and ``/readyz`` (its database and Redis answer, and
the checks the job kinds declare pass: the replica sync's, that this host's replicas are
fresh)."""

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
from jobs.kind import ReadinessCheck

router = APIRouter(tags=["health"])

log = logging.getLogger("autoforge.api.health")

OK = "ok"


@router.get("/healthz")
def healthz() -> Liveness:
    """The process is up. Checks nothing else: use ``/readyz`` for dependencies."""
    return Liveness()


@router.get("/readyz", responses={503: {"model": Readiness}})
def readyz(resources: Resources) -> JSONResponse:
    """``200`` when the database and Redis both answer (and the kinds' own checks pass),
    else ``503`` saying which does not."""
    checks = {"database": _database(resources), "redis": _redis(resources)}
    for kind in resources.runtime.kinds:
        if kind.readiness is not None:
            outcome = _kind_check(resources, kind.readiness)
            if outcome is not None:
                checks[kind.readiness.name] = outcome
    report = Readiness.model_validate(checks)
    ready = all(outcome == OK for outcome in checks.values())
    return JSONResponse(report.model_dump(), status_code=200 if ready else 503)


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


def _kind_check(resources: ApiResources, readiness: ReadinessCheck) -> str | None:
    """A kind's readiness on this machine (see :class:`jobs.kind.ReadinessCheck`)."""
    try:
        return readiness.check.load()(resources.settings, resources.runtime.db)
    except Exception as exc:  # any failure means "not ready"; say which
        return _failure(readiness.name, resources, exc)


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
