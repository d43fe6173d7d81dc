"""The FastAPI app factory: routes, auth, limits and error handling wired explicitly.

``create_app(settings)`` builds no engine and opens no connection; the lifespan builds
the process resources (:class:`api.resources.ApiResources`) at start-up and releases
them at shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi_offline import FastAPIOffline

from api.auth import require_api_key
from api.errors import install_error_handlers
from api.http_metrics import HttpMetrics, RequestMetrics
from api.limits import BodySizeLimit
from api.openapi import install_openapi
from api.resources import ApiResources
from api.routes import backups, evaluations, health, jobs, metrics, prompts, replicas
from api.schemas import ErrorBody
from core.settings import Settings
from tasks.registry import kind_registry

DESCRIPTION = """
Enqueue background jobs and inspect them in the durable job ledger.

Everything under `/v1` needs `Authorization: Bearer <key>`. Errors are
`{"error": {"code": ..., "message": ...}}`; a `422` adds `detail`, one entry per problem,
whose `loc` names the field.
"""


def create_app(settings: Settings) -> FastAPI:
    """The API for ``settings``.

    Raises:
        ConfigurationError: the settings do not fit the declared job kinds.
    """
    kinds = kind_registry()
    kinds.check_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = ApiResources.open(settings)
        app.state.resources = resources
        try:
            yield
        finally:
            resources.close()

    # Swagger UI (/docs) and ReDoc (/redoc) with their scripts served by this app, not a
    # CDN: the docs work on a machine without internet.
    app = FastAPIOffline(
        title="AutoForge Jobs",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        static_url="/docs-assets",
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    # Outermost, so refused bodies and errors are counted too.
    app.state.http_metrics = HttpMetrics()
    app.add_middleware(RequestMetrics, metrics=app.state.http_metrics)

    v1 = APIRouter(
        dependencies=[Depends(require_api_key)],
        responses={
            401: {"model": ErrorBody, "description": "No or malformed Authorization header."},
            403: {"model": ErrorBody, "description": "The API key is not valid."},
            413: {"model": ErrorBody, "description": "The body is too large."},
        },
    )
    v1.include_router(jobs.build_router(kinds))
    v1.include_router(prompts.router)
    v1.include_router(evaluations.router)
    v1.include_router(backups.router)
    v1.include_router(replicas.router)
    app.include_router(v1)
    app.include_router(health.router)
    app.include_router(metrics.router)
    install_openapi(app, kinds)
    return app
