"""`./dev bench --connector N`: the same tickets with their notices sent as the generic signed webhook
or through the Zendesk connector (to the local Zendesk of tests/fakes/zendesk.py), side by side.

Two workers on one dev server, the same policy but for where `sla.breached` and `ticket.resolved`
go: worker A posts them to a webhook receiver, worker B to a `zendesk` connector endpoint (each
notice there: a status query, then one PUT). Measured in alternating rounds (the machine's load
drifts): open -> acknowledge -> resolve per second, and first-response breach -> arrival lateness.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.client import TicketClient
from config.settings import EndpointSettings
from tests.bench.common import AGENT, percentile, run_all, ticket
from tests.conftest import make_settings
from tests.fakes.zendesk import FakeZendesk
from tests.receiver import start_receiver
from workers.connection import binary
from workers.worker import build_worker
from workflows import search_attributes as sa

EVENTS = ["sla.breached", "ticket.resolved"]
SLA_SECONDS = 6


def policies(base: dict[str, Any], receiver_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    webhook = yaml.safe_load(yaml.safe_dump(base))
    webhook["notifications"]["endpoints"] = [{"name": "hook", "url": f"{receiver_url}/events", "event_types": EVENTS}]
    connector = yaml.safe_load(yaml.safe_dump(base))
    connector["notifications"]["endpoints"] = [{"name": "zendesk", "event_types": EVENTS}]
    queues = {q: "1" for d in base["departments"].values() for q in d["queues"].values()}
    connector["helpdesks"] = {"zendesk": {"kind": "zendesk", "queues": queues, "own_user": "900001"}}
    return webhook, connector


async def lifecycles(tickets: TicketClient, ids: list[str], concurrency: int) -> float:
    async def one(i: int) -> None:
        await tickets.open(ticket(ids[i]))
        await tickets.act(ids[i], "acknowledge", AGENT)
        await tickets.act(ids[i], "resolve", AGENT | {"resolution": "done"})
        await tickets.handle(ids[i]).result()

    return len(ids) / await run_all(len(ids), concurrency, one)


async def breaches(tickets: TicketClient, ids: list[str], rate: float, arrivals: dict[str, float]) -> list[float]:
    deadlines: dict[str, float] = {}
    began = time.perf_counter()

    async def paced(i: int) -> None:
        await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
        opened = datetime.now(UTC)
        deadlines[ids[i]] = (opened + timedelta(seconds=SLA_SECONDS)).timestamp()
        await tickets.open(ticket(ids[i], opened))

    await asyncio.gather(*(paced(i) for i in range(len(ids))))
    for _ in range(600):
        if all(tid in arrivals for tid in deadlines):
            break
        await asyncio.sleep(0.1)
    return [arrivals[tid] - deadlines[tid] for tid in deadlines if tid in arrivals]


async def bench(n: int, concurrency: int, rate: float, rounds: int, base_policy: dict[str, Any]) -> None:
    from workers.logs import configure

    configure("console", "WARNING")
    receiver = start_receiver()
    arrivals: dict[str, float] = {}
    original = receiver.answer

    def stamp(req: Any) -> int:
        body = req.json()
        if body.get("type") == "sla.breached":
            arrivals.setdefault(body["ticket_id"], time.time())
        return original(req)

    receiver.answer = stamp  # type: ignore[method-assign]
    zendesk = FakeZendesk().start()
    zendesk.add_group(1, "all queues")
    zendesk_answer = zendesk.answer

    def stamp_zendesk(req: Any) -> Any:
        if req.method == "PUT" and "SLA breached" in req.body.decode(errors="replace"):
            arrivals.setdefault(f"ZD-{req.path.split('/')[4].split('.')[0]}", time.time())
        return zendesk_answer(req)

    zendesk.answer = stamp_zendesk  # type: ignore[method-assign]
    folder = Path(tempfile.mkdtemp())
    webhook_doc, connector_doc = policies(base_policy, receiver.url)
    (folder / "webhook.yaml").write_text(yaml.safe_dump(webhook_doc))
    (folder / "connector.yaml").write_text(yaml.safe_dump(connector_doc))
    credentials = EndpointSettings.model_validate(
        {"url": zendesk.url, "username": zendesk.email, "token": zendesk.token, "secret": "s"}
    )
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(binary("temporal")),
        search_attributes=sa.ALL,
        dev_server_log_level="error",
    )
    seq = iter(range(10_000_000, 20_000_000))

    def ids(kind: str, count: int) -> list[str]:
        if kind == "webhook":
            return [f"W{uuid.uuid4().hex[:10]}" for _ in range(count)]
        numbers = [next(seq) for _ in range(count)]
        for number in numbers:
            zendesk.add_ticket(number, group_id=1)
        return [f"ZD-{number}" for number in numbers]

    print(
        f"{n} tickets per measurement, concurrency {concurrency}, {rounds} alternating rounds, {os.cpu_count()} cores"
    )
    store = f"sqlite:///{folder / 'store.db'}"
    try:
        async with httpx.AsyncClient() as http:
            tq = f"conn-{uuid.uuid4().hex[:6]}"
            hook_settings = make_settings(folder / "webhook.yaml", None, store)
            zd_settings = make_settings(folder / "connector.yaml", None, store).model_copy(
                update={"endpoints": {"zendesk": credentials}}
            )
            workers = {
                "webhook": build_worker(env.client, hook_settings, http, task_queue=tq + "-hook"),
                "connector": build_worker(env.client, zd_settings, http, task_queue=tq + "-zd"),
            }
            clients = {
                "webhook": TicketClient(env.client, tq + "-hook"),
                "connector": TicketClient(env.client, tq + "-zd"),
            }
            async with workers["webhook"], workers["connector"]:
                for kind in clients:  # warm-up
                    await lifecycles(clients[kind], ids(kind, min(n, 50)), concurrency)
                rates: dict[str, list[float]] = {"webhook": [], "connector": []}
                late: dict[str, list[float]] = {"webhook": [], "connector": []}
                for _ in range(rounds):
                    for kind in clients:
                        rates[kind].append(await lifecycles(clients[kind], ids(kind, n), concurrency))
                for _ in range(rounds):
                    for kind in clients:
                        late[kind] += await breaches(clients[kind], ids(kind, n), rate, arrivals)
        print("open -> acknowledge -> resolve (tickets/s, median of the rounds):")
        hook_rate, zd_rate = statistics.median(rates["webhook"]), statistics.median(rates["connector"])
        print(f"  generic webhook {hook_rate:.1f} ({', '.join(f'{r:.1f}' for r in rates['webhook'])})")
        print(
            f"  Zendesk connector {zd_rate:.1f} ({', '.join(f'{r:.1f}' for r in rates['connector'])}); "
            f"{100 * (zd_rate / hook_rate - 1):+.1f} %"
        )
        print(f"first-response breach ({SLA_SECONDS}s SLA, {rate:g}/s) -> arrival, lateness p50 / p99:")
        for kind, name in (("webhook", "generic webhook"), ("connector", "Zendesk connector")):
            values = late[kind]
            p50, p99 = statistics.median(values), percentile(values, 0.99)
            print(f"  {name}: {p50:.2f}s / {p99:.2f}s, {len(values)}/{n * rounds} arrived")
    finally:
        await env.shutdown()
        receiver.server.shutdown()
        zendesk.stop()
