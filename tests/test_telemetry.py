"""Metrics and traces: a Prometheus scrape after a breach, a wedged workflow's task-failure counter,
nothing emitted on replay, bounded labels whatever callers send, one trace from the API call through
the workflow to its activities. Real servers, real HTTP, a real Prometheus endpoint."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio import workflow
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from api.server import build_server, create_app
from cli.replay import load_history
from config.settings import Settings
from tests.conftest import TEST_CONVERTER, make_settings, policy_doc
from tests.helpers import AGENT, ticket, until
from tests.ports import free_port
from tests.receiver import Receiver
from workers.connection import binary, register_search_attributes
from workers.telemetry import (
    TelemetryError,
    client_interceptors,
    instrument_api,
    metrics_runtime,
    start_worker_metrics,
)
from workers.worker import build_worker
from workflows.ticket import TicketEscalation

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
MONITORING = Path(__file__).parent.parent / "deploy" / "monitoring"
# SDK counters that appear only once a workflow task fails (checked by the wedged-workflow test).
COUNTED_WHEN_WEDGED = {
    "temporal_workflow_task_execution_failed_total",
    "temporal_sticky_cache_total_forced_eviction_total",
}
Samples = dict[str, list[tuple[dict[str, str], float]]]


@pytest.fixture(scope="module")
def prometheus() -> Iterator[tuple[Runtime, str]]:
    """One runtime with a Prometheus endpoint for this module (a runtime cannot be closed)."""
    address = f"127.0.0.1:{free_port()}"
    yield metrics_runtime(address), f"http://{address}/metrics"


def scrape(url: str) -> Samples:
    return scrape_text(httpx.get(url, timeout=5).text)


def scrape_text(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


# ---------------------------------------------------------------------- the must-show scrape
async def test_a_scrape_after_a_breach_shows_the_business_counters_with_their_labels(
    prometheus: tuple[Runtime, str], receiver: Receiver, write_policy: Any
) -> None:
    runtime, url = prometheus
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(binary("temporal-test-server")),
        runtime=runtime,
    )
    try:
        await register_search_attributes(env.client, "default")
        settings = make_settings(write_policy(policy_doc()), receiver)
        task_queue = f"tq-{uuid.uuid4().hex[:8]}"
        async with httpx.AsyncClient(timeout=5) as http, build_worker(env.client, settings, http, task_queue):
            from api.client import TicketClient

            tickets = TicketClient(env.client, task_queue)
            t = ticket(priority="urgent")
            await tickets.open(t)
            handle = env.client.get_workflow_handle(f"ticket-{t.ticket_id}")
            # Refusals whose names and fields come from the caller: the labels must stay bounded.
            await handle.signal(f"drop_tables_{t.ticket_id}", {"x": 1})
            await handle.signal("escalate", {"actor": AGENT, "kind": "functional", "department": t.ticket_id})
            await handle.signal("acknowledge", {"actor": AGENT, f"field_{t.ticket_id}": 1})
            with pytest.raises(WorkflowUpdateFailedError):  # refused by the update validator
                await handle.execute_update(f"nonsense_{t.ticket_id}", {"x": 1})
            await env.sleep(timedelta(minutes=31))  # warning at 22.5 min, breach at 30 min
            await until(lambda: receiver.events("sla.breached"), seconds=30)
            await until(lambda: [1] if total(scrape(url), "escalations_breach_delivery_lateness_seconds_count") else [])
            # A policy file broken under the running worker: the next ticket opens on the last good
            # policy, and the failure is counted (in the load_policy local activity).
            settings.policy_path.write_text("tiers: [oops")
            await tickets.open(ticket())
            await until(lambda: [1] if total(scrape(url), "escalations_policy_invalid_total") else [])
            text = (await asyncio.to_thread(httpx.get, url, timeout=5)).text
            samples = scrape_text(text)
    finally:
        await env.shutdown()

    assert t.ticket_id not in text  # no ticket id, no caller-chosen text in any label
    assert total(samples, "escalations_tickets_opened_total", channel="email", priority="urgent", tier="1") >= 1
    assert total(samples, "escalations_sla_breaches_total", clock="first_response", tier="1", department="support") >= 1
    delivered = {"type": "sla.breached", "endpoint": "settings", "outcome": "delivered"}
    assert total(samples, "escalations_notifications_total", **delivered) >= 1
    assert total(samples, "escalations_notifications_total", type="sla.warning", outcome="delivered") >= 1
    assert total(samples, "escalations_breach_delivery_lateness_seconds_count", clock="first_response") >= 1
    assert total(samples, "escalations_refused_actions_total", action="unknown", reason="unknown_action") >= 1
    assert total(samples, "escalations_refused_actions_total", action="escalate", reason="policy", via="signal") >= 1
    assert total(samples, "escalations_refused_actions_total", action="acknowledge", reason="invalid") >= 1
    assert total(samples, "escalations_refused_actions_total", reason="unknown_action", via="update") >= 1
    assert total(samples, "escalations_delivery_attempts_total", activity_type="notify", result="2xx") >= 2
    assert total(samples, "escalations_delivery_duration_seconds_count", endpoint="settings") >= 2
    assert total(samples, "escalations_policy_invalid_total", activity_type="load_policy") == 1
    # The SDK's runtime series ride along on the same endpoint.
    assert "temporal_workflow_task_schedule_to_start_latency_count" in samples
    assert "temporal_sticky_cache_size" in samples
    # The dashboard and the alert rules name only series that exist: the SDK's are in this scrape,
    # the product's are declared (a counter shows up only once counted).
    referenced = dashboard_and_alert_series()
    assert {n for n in referenced if n.startswith("temporal_")} <= samples.keys() | COUNTED_WHEN_WEDGED
    assert {n for n in referenced if n.startswith("escalations_")} <= declared_series()
    ours = [row for name, rows in samples.items() if name.startswith("escalations_") for row in rows]
    labels = {key for row in ours for key in row[0]}
    assert labels <= {
        "namespace", "task_queue", "workflow_type", "activity_type", "service_name", "le",
        "channel", "priority", "tier", "department", "clock", "kind", "trigger", "type", "endpoint",
        "outcome", "action", "reason", "via", "input", "result",
    }  # fmt: skip


def dashboard_and_alert_series() -> set[str]:
    import json
    import re

    import yaml

    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20 and all(p.get("title") for p in dashboard["panels"])
    rules = yaml.safe_load((MONITORING / "prometheus-alerts.yml").read_text())["groups"][0]["rules"]
    assert {"TicketWorkflowTaskFailing", "NoticesGivenUp", "NoticesUndelivered"} <= {r["alert"] for r in rules}
    exprs += [r["expr"] for r in rules]
    return {m for e in exprs for m in re.findall(r"\b((?:escalations|temporal)_[a-z_]+)", e)}


def declared_series() -> set[str]:
    from workflows import metrics as product

    names = {"escalations_api_requests_total"}
    names |= {f"escalations_api_request_duration_seconds{s}" for s in ("_bucket", "_count", "_sum")}
    for name in product.DESCRIPTIONS:
        if name in product.HISTOGRAMS_SECONDS:
            names |= {f"{name}{s}" for s in ("_bucket", "_count", "_sum")}
        else:
            names.add(f"{name}_total")
    return names


# ---------------------------------------------------------------------- a wedged workflow
@workflow.defn(name="WedgedForTest", sandboxed=False)
class Wedged:
    """A workflow whose task fails every time (what a bug in workflow code does to a ticket)."""

    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("a bug in workflow code")


async def test_a_wedged_workflow_shows_on_the_task_failure_counter(
    prometheus: tuple[Runtime, str], dev_env: WorkflowEnvironment
) -> None:
    runtime, url = prometheus
    client = await Client.connect(dev_env.client.service_client.config.target_host, runtime=runtime)
    task_queue = f"wedged-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, workflows=[Wedged]):
        await client.start_workflow(Wedged.run, id=f"wedged-{uuid.uuid4().hex[:8]}", task_queue=task_queue)

        def failures() -> list[float]:
            n = total(
                scrape(url), "temporal_workflow_task_execution_failed_total",
                workflow_type="WedgedForTest", task_queue=task_queue,
            )  # fmt: skip
            return [n] if n >= 2 else []

        found = await until(failures, seconds=60)
    assert found, "the retried task's failures are counted, again and again: alert on their rate"
    assert scrape(url).keys() >= COUNTED_WHEN_WEDGED


# ---------------------------------------------------------------------- replay emits nothing
async def test_replay_emits_no_business_metric_but_the_live_run_did(receiver: Receiver, write_policy: Any) -> None:
    buffer = MetricBuffer(10_000)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(binary("temporal-test-server")),
        runtime=runtime,
    )
    try:
        await register_search_attributes(env.client, "default")
        settings = make_settings(write_policy(policy_doc()), receiver)
        task_queue = f"tq-{uuid.uuid4().hex[:8]}"
        async with httpx.AsyncClient(timeout=5) as http, build_worker(env.client, settings, http, task_queue):
            from api.client import TicketClient

            tickets = TicketClient(env.client, task_queue)
            t = ticket(priority="urgent")
            await tickets.open(t)
            await env.sleep(timedelta(minutes=31))
            await until(lambda: receiver.events("sla.breached"), seconds=30)
            await tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "fixed"})
            await until(lambda: receiver.events("ticket.resolved"), seconds=30)
            history = await env.client.get_workflow_handle(f"ticket-{t.ticket_id}").fetch_history()
    finally:
        await env.shutdown()

    def product_updates() -> list[Any]:
        return [u for u in buffer.retrieve_updates() if u.metric.name.startswith("escalations_")]

    # The SDK hands metric updates over asynchronously: collect until the live run's are all in,
    # then once more after a pause, so none of them can be mistaken for an emission on replay.
    expected = {"escalations_tickets_opened", "escalations_sla_breaches", "escalations_notifications"}
    expected.add("escalations_tickets_resolved")
    live: list[Any] = []
    for _ in range(100):
        live += product_updates()
        if {u.metric.name for u in live} >= expected:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(3)
    live += product_updates()
    assert {u.metric.name for u in live} >= expected  # the live run counted
    replayer = Replayer(workflows=[TicketEscalation], data_converter=pydantic_data_converter, runtime=runtime)
    result = await replayer.replay_workflow(history)
    assert result.replay_failure is None, result.replay_failure
    # Every committed history, on today's code (some were recorded with encrypted payloads).
    corpus = Replayer(workflows=[TicketEscalation], data_converter=TEST_CONVERTER, runtime=runtime)
    for path in HISTORIES:
        await corpus.replay_workflow(load_history(path))
    await asyncio.sleep(3)
    replayed = product_updates()
    assert replayed == [], [(u.metric.name, u.attributes) for u in replayed[:5]]


# ---------------------------------------------------------------------- operators' mistakes
def test_a_metrics_port_in_use_stops_the_worker_only_when_the_operator_chose_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(TelemetryError, match="ESCALATIONS_METRICS_ADDRESS") as caught:
            start_worker_metrics(Settings(_env_file=None, metrics_address=address))
        assert "in use" in str(caught.value)
        # The default address taken (a second worker on this machine): a warning, the worker runs on.
        defaulted = Settings.model_construct(_fields_set=set(), metrics_address=address)
        assert start_worker_metrics(defaulted) is None
    with pytest.raises(TelemetryError, match="ESCALATIONS_METRICS_ADDRESS"):
        metrics_runtime("not an address")
    assert start_worker_metrics(Settings(_env_file=None, metrics_address="")) is None  # off


# ---------------------------------------------------------------------- the API's own metrics
@pytest.fixture
async def api_url(dev_env: WorkflowEnvironment, write_policy: Any) -> AsyncIterator[str]:
    settings = make_settings(write_policy(policy_doc()), None).model_copy(
        update={"api_port": free_port(), "temporal_address": "127.0.0.1:1"}
    )
    server = build_server(settings, dev_env.client)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{settings.api_port}"
    server.should_exit = True
    await task


async def test_api_request_metrics_stay_bounded_whatever_the_paths(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
        for i in range(60):
            await http.get(f"/tickets/T-{uuid.uuid4().hex}")  # 401: no key
            await http.get(f"/no/such/{uuid.uuid4().hex}/{i}")  # 404: unmatched
            await http.request("BREW", f"/tickets/{i}")
        await http.get("/healthz")
        text = (await http.get("/metrics")).text
    samples = scrape_text(text)
    rows = samples["escalations_api_requests_total"]
    routes = {labels["route"] for labels, _ in rows}
    assert routes == {"/tickets/{ticket_id}", "unmatched", "/healthz"}, routes
    assert len(rows) <= 5
    assert total(samples, "escalations_api_requests_total", route="/tickets/{ticket_id}", status="401") == 60
    assert total(samples, "escalations_api_requests_total", route="unmatched", status="404") == 60
    assert total(samples, "escalations_api_requests_total", method="other") == 60
    assert "escalations_api_request_duration_seconds_bucket" in samples
    assert "process_resident_memory_bytes" in samples


# ---------------------------------------------------------------------- one trace
async def test_one_trace_runs_from_the_api_call_through_the_workflow_to_the_activity(
    dev_env: WorkflowEnvironment, receiver: Receiver, write_policy: Any
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    base = make_settings(write_policy(policy_doc()), receiver).model_copy(
        update={"api_port": free_port(), "task_queue": f"tq-{uuid.uuid4().hex[:8]}"}
    )
    settings = base.model_copy(update={"tracing": True})
    client = await Client.connect(
        dev_env.client.service_client.config.target_host,
        data_converter=pydantic_data_converter,
        interceptors=client_interceptors(settings, provider),
    )
    import uvicorn

    app = create_app(base, client)  # tracing off in create_app: the test's provider is added below
    instrument_api(app, settings, provider)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.api_port, log_config=None))
    body = {"ticket_id": f"TR-{uuid.uuid4().hex[:8]}", "subject": "s", "customer": {"id": "c"}}
    headers = {"X-API-Key": "dev-only-key"}
    async with httpx.AsyncClient(timeout=10) as http, build_worker(client, settings, http):
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=15) as api:
                opened = await api.post("/tickets", json=body, headers=headers)
                assert opened.status_code == 201, opened.text
                resolved = await api.post(
                    f"/tickets/{body['ticket_id']}/resolve",
                    json={"actor": {"id": "dev", "role": "agent"}, "resolution": "done"},
                    headers=headers,
                )
            await until(lambda: receiver.events("ticket.resolved"), seconds=30)
            await until(lambda: [s for s in exporter.get_finished_spans() if s.name == "RunActivity:notify"])
        finally:
            server.should_exit = True
            await task
    assert resolved.status_code == 200, resolved.text
    spans = exporter.get_finished_spans()
    print(sorted((s.name, f"{s.context.trace_id:x}"[-6:]) for s in spans))
    opening = next(s for s in spans if s.name == "POST /tickets")
    in_trace = {s.name for s in spans if s.context.trace_id == opening.context.trace_id}
    # The API call, the workflow start, the workflow run, and activities started by the workflow.
    assert {
        "StartWorkflow:TicketEscalation",
        "RunWorkflow:TicketEscalation",
        "StartActivity:load_policy",
        "RunActivity:load_policy",
    } <= in_trace, in_trace
    # The resolve request is its own trace; its update, and the notice the ticket sends for it, are
    # part of the ticket's trace (the workflow's spans descend from the call that opened it).
    assert {"HandleUpdate:resolve", "RunActivity:notify"} <= in_trace, in_trace
    assert opening.parent is None  # the API's span is the root: nothing before the API call


# ---------------------------------------------------------------------- the process, tracing on, no collector
def test_run_with_tracing_on_and_no_collector_serves_tickets_metrics_and_stops_promptly(tmp_path: Path) -> None:
    """`escalations run` with tracing pointed at a port nobody listens on: tickets work, both
    /metrics answer with the business series, and SIGTERM still ends the process quickly."""
    import os
    import signal
    import subprocess
    import sys
    import time

    api_port, metrics_port, dead = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESCALATIONS_", "TEMPORAL_", "OTEL_"))}
    env |= {
        "ESCALATIONS_DATA_DIR": str(tmp_path / "data"),
        "ESCALATIONS_DEV_SERVER_PORT": str(free_port()),
        "ESCALATIONS_DEV_UI_PORT": str(free_port()),
        "ESCALATIONS_API_PORT": str(api_port),
        "ESCALATIONS_CODEC_SERVER_PORT": str(free_port()),
        "ESCALATIONS_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        "ESCALATIONS_TRACING": "true",
        "ESCALATIONS_TRACING_ENDPOINT": f"http://127.0.0.1:{dead}/v1/traces",
        "ESCALATIONS_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    api, key = f"http://127.0.0.1:{api_port}", {"X-API-Key": "dev-only-key"}

    def poll(url: str, ok: Any, seconds: float = 90) -> httpx.Response:
        deadline = time.monotonic() + seconds
        while True:
            try:
                answer = httpx.get(url, headers=key, timeout=5)
                if ok(answer):
                    return answer
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.communicate()[0].decode()[-3000:]
            assert time.monotonic() < deadline, url
            time.sleep(0.3)

    try:
        poll(f"{api}/healthz", lambda r: r.status_code == 200)
        opened = httpx.post(f"{api}/tickets", headers=key, timeout=30, json={
            "ticket_id": "TRACE-1", "subject": "s", "customer": {"id": "c"}, "priority": "urgent",
        })  # fmt: skip
        assert opened.status_code == 201, opened.text
        poll(f"{api}/tickets/TRACE-1", lambda r: r.status_code == 200)
        worker = poll(
            f"http://127.0.0.1:{metrics_port}/metrics", lambda r: "escalations_tickets_opened_total" in r.text
        )
        assert 'priority="urgent"' in worker.text and "temporal_sticky_cache_size" in worker.text
        own = httpx.get(f"{api}/metrics", timeout=10).text
        assert 'route="/tickets",status="201"' in own.replace('method="POST",', ""), own[-2000:]
    finally:
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode()
    took = time.monotonic() - started
    print(f"stopped in {took:.1f} s; export failures logged: {output.count('Failed to export')}")
    assert process.returncode == 0, output[-3000:]
    assert took < 30, f"stopping took {took:.1f} s"  # a generous bound: spans are flushed for at most 3 s
    assert "Traceback" not in output, output[-3000:]
