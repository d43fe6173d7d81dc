"""Prometheus endpoints: this process's metrics, and the shared state of the system.

``/metrics`` is scraped on every API replica; ``/metrics/ledger`` answers the same from
every replica (it reads the ledger and Redis), so Prometheus scrapes it from one target.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.http_metrics import HttpMetrics
from api.resources import Resources

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
def metrics(request: Request, resources: Resources) -> Response:
    """This process: jobs it enqueued, its database lock retries, its HTTP requests by
    route and status, and their latency, in Prometheus's text format."""
    http: HttpMetrics = request.app.state.http_metrics
    body = generate_latest(resources.metrics.registry) + generate_latest(http.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/metrics/ledger", response_class=Response)
def ledger_metrics(resources: Resources) -> Response:
    """The whole system, read from the job ledger and Redis: jobs by kind and status,
    status changes, retries, lease lapses, job durations and start delays, the outbox
    backlog, queue depths and backup outcomes. Scrape it from one target only."""
    body = generate_latest(resources.metrics.ledger_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
