"""Process telemetry: the worker's Prometheus endpoint and OpenTelemetry tracing (off by default).

Metrics: one Temporal `Runtime` per worker process, with Prometheus on `ESCALATIONS_METRICS_ADDRESS`
(`host:port`, empty: off). It serves the SDK's own series (workflow and activity task latencies,
schedule-to-start, sticky cache, `temporal_workflow_task_execution_failed_total`: a wedged ticket)
and the product's (`workflows/metrics.py`: breaches, escalations, notices, refusals, lateness;
activities: delivery tries and durations). Process entry points call `start_worker_metrics` before
they connect; it makes that runtime the process default, so every client and worker made after
it reports there. The API serves its own request metrics on its own `/metrics` (`api/metrics.py`).

Tracing: `ESCALATIONS_TRACING=true` installs an OTLP/HTTP exporter (endpoint from
`ESCALATIONS_TRACING_ENDPOINT` or the standard `OTEL_EXPORTER_OTLP_*` variables), Temporal's
`TracingInterceptor` on every client (and so its workers), and FastAPI's instrumentation: one trace
runs from the API call through the workflow to its activities. Export happens on a background
thread with a short timeout: a collector that is down loses spans, never tickets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from config.settings import Settings
from workers.logs import core_logging
from workflows import metrics as product

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from temporalio.client import Interceptor

log = structlog.get_logger("telemetry")

# Seconds. Lateness spans a healthy sub-second to an outage of hours; one HTTP try is at most 15 s.
BUCKETS: dict[str, Sequence[float]] = {
    product.BREACH_LATENESS: (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600),
    product.DELIVERY_DURATION: (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
}
# Requests the API does not trace: scrapes and probes would drown the traces that matter.
UNTRACED_URLS = "metrics,healthz,readyz,livez"
EXPORT_TIMEOUT_SECONDS = 5


class TelemetryError(RuntimeError):
    """Telemetry cannot start as configured; the message names the setting to change."""


def prometheus_config(bind_address: str) -> PrometheusConfig:
    return PrometheusConfig(
        bind_address=bind_address,
        counters_total_suffix=True,  # OpenMetrics names: escalations_sla_breaches_total
        durations_as_seconds=True,
        histogram_bucket_overrides=BUCKETS,
    )


def metrics_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime serving Prometheus `/metrics` on `bind_address` (`host:port`)."""
    try:
        return Runtime(telemetry=TelemetryConfig(logging=core_logging(), metrics=prometheus_config(bind_address)))
    except ValueError as err:  # the SDK's words: "Address already in use", "invalid socket address syntax"
        raise TelemetryError(
            f"ESCALATIONS_METRICS_ADDRESS={bind_address!r}: {err}. Give a free host:port, or an empty value "
            "to turn the worker's metrics off"
        ) from None


def start_worker_metrics(settings: Settings) -> Runtime | None:
    """The worker process's runtime, made the process default (call before connecting); None if off.

    An address the operator set that cannot be bound raises `TelemetryError` (the process exits 2
    naming the setting: a deployment whose scrape target silently vanished is worse). The default
    address taken (a second worker on one machine, a test run beside `./dev run`) only warns: the
    worker runs, without metrics."""
    address = (settings.metrics_address or "").strip()
    if not address:
        return None
    try:
        runtime = metrics_runtime(address)
    except TelemetryError as err:
        if "metrics_address" in settings.model_fields_set:
            raise
        log.warning("metrics.unavailable", error=str(err), hint="set ESCALATIONS_METRICS_ADDRESS per worker")
        return None
    Runtime.set_default(runtime, error_if_already_set=False)
    log.info("metrics.serving", url=f"http://{address}/metrics")
    return runtime


# ---------------------------------------------------------------------- tracing
_provider: TracerProvider | None = None


def setup_tracing(settings: Settings, service: str) -> TracerProvider | None:
    """Install the process's tracer provider when tracing is on (idempotent); None when off."""
    global _provider
    if not settings.tracing:
        return None
    if _provider is not None:
        return _provider
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service})
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=settings.tracing_endpoint or None, timeout=EXPORT_TIMEOUT_SECONDS)
    provider.add_span_processor(BatchSpanProcessor(exporter, export_timeout_millis=EXPORT_TIMEOUT_SECONDS * 1000))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown_tracing(timeout_seconds: float = 3) -> None:
    """Flush what is buffered, within a bound: a collector that is down must not hold up a shutdown."""
    global _provider
    provider, _provider = _provider, None
    if provider is None:
        return
    try:
        provider.force_flush(timeout_millis=int(timeout_seconds * 1000))
    finally:
        provider.shutdown()


def client_interceptors(settings: Settings, provider: TracerProvider | None = None) -> list[Interceptor]:
    """Temporal's tracing interceptor when tracing is on (a client's interceptors also serve its workers)."""
    if not settings.tracing:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    tracer = provider.get_tracer("escalations") if provider is not None else None
    return [TracingInterceptor(tracer)]


def instrument_api(app: FastAPI, settings: Settings, provider: TracerProvider | None = None) -> None:
    """Server spans for the API's requests (route templates as names), parents of the workflow's spans."""
    if not settings.tracing:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # One span per request: the per-message receive/send spans add nothing an operator reads.
    kwargs: dict[str, Any] = {"excluded_urls": UNTRACED_URLS, "exclude_spans": ["receive", "send"]}
    if provider is not None:
        kwargs["tracer_provider"] = provider
    FastAPIInstrumentor.instrument_app(app, **kwargs)
