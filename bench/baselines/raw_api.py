"""A bare FastAPI route that publishes a raw Celery task: the API baseline.

``uvicorn --factory bench.baselines.raw_api:build``. The route validates the same small
body as the product's ``POST /v1/jobs/canary``, publishes with ``send_task`` and answers
202 with the id; a plain ``def``, so FastAPI runs it in its thread pool as it runs the
product's routes.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from bench.baselines.raw_celery import BROKER_VARIABLE, QUEUE, TASK_NAME, create_app


class NoopBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sleep_ms: int = Field(0, ge=0)


def build() -> FastAPI:
    """The app, publishing to the broker named by ``BENCH_BROKER_URL``."""
    celery = create_app(os.environ[BROKER_VARIABLE])
    api = FastAPI()

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.post("/v1/jobs/canary", status_code=202)
    def enqueue(body: NoopBody) -> dict[str, Any]:
        job_id = str(uuid.uuid4())
        celery.send_task(TASK_NAME, args=[job_id], task_id=job_id, queue=QUEUE)
        return {"id": job_id, "status": "queued"}

    return api
