"""HTTP request metrics of the API, as a pure ASGI middleware.

Requests are counted by method, route *template* (``/v1/jobs/{job_id}``, never the id
itself, so the number of series stays bounded) and status code, and timed in a
histogram by method and route. A request that matched no route (a 404 for an unknown
path, or a body refused before routing) is labelled ``route="unmatched"``.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"
# Seconds; the API answers from the ledger in milliseconds, a slow database in seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    """The request counter and latency histogram of one app, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "autoforge_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            labelnames=["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "autoforge_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            labelnames=["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )


class RequestMetrics:
    """Count and time every HTTP request passing through to ``app``."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the application raises before answering
        started = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            elapsed = time.perf_counter() - started
            method = str(scope.get("method", ""))
            route = _route_template(scope)
            self.metrics.requests.labels(method=method, route=route, status=str(status)).inc()
            self.metrics.latency.labels(method=method, route=route).observe(elapsed)


def _route_template(scope: Scope) -> str:
    # The router records the route it matched in the request's scope (shared by
    # reference with the middlewares outside it).
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
