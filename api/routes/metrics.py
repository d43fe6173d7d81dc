"""``/metrics``: the Prometheus text exposition of this app's registry."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.resources import Resources

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
def metrics(resources: Resources) -> Response:
    """Jobs by kind and status, outbox backlog, queue depths, retries, durations, lock
    retries, and the jobs this process enqueued, in Prometheus's text format."""
    return Response(generate_latest(resources.metrics.registry), media_type=CONTENT_TYPE_LATEST)
