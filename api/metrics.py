"""The API's own Prometheus metrics: requests by method, route template and status, and their latency.

Served at `GET /metrics` of the API (public, like `/healthz`: aggregates only, no ticket data).
Labels stay bounded whatever a caller sends: the route is the matched template
(`/tickets/{ticket_id}`), never the raw path; a path no route matches is `unmatched`; an unusual
method is `other`. The worker's metrics (SDK and business series) are on the worker's own port
(`ESCALATIONS_METRICS_ADDRESS`, see `workers/telemetry.py`).

Each app gets its own registry, so several apps in one process (tests) never collide.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED = "unmatched"
NOT_COUNTED = frozenset({"/metrics"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # resident memory, CPU seconds, open fds
        self.requests = Counter(
            "escalations_api_requests",
            "HTTP requests answered by the API, by method, route template and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "escalations_api_request_duration_seconds",
            "seconds from request to response, by method and route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _Middleware:
    """Pure ASGI (no body buffering): counts each HTTP response once, after the route matched."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response starts is what the client sees as a 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = _route_of(scope)
            if route not in NOT_COUNTED:
                method = scope.get("method", "")
                method = method if method in METHODS else "other"
                self.metrics.requests.labels(method, route, str(status)).inc()
                self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


def _route_of(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def install(app: FastAPI) -> ApiMetrics:
    """Count the app's requests and serve them at `GET /metrics` (left out of the OpenAPI document)."""
    metrics = ApiMetrics()
    app.add_middleware(_Middleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return metrics.render()

    return metrics
