"""Record the histories that CI replays: `python -m tests.histories.record`.

Each scenario runs the real workflow on the time-skipping server and saves its event history.
Re-record only on purpose: a history recorded by today's code and replayed by tomorrow's is what
catches a change that would break tickets already running.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import yaml
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.client import TicketClient
from tests.conftest import make_settings, policy_doc
from tests.helpers import AGENT, LEAD, MANAGER, ticket
from tests.receiver import start_receiver
from workers.connection import binary, register_search_attributes
from workers.worker import build_worker

HERE = Path(__file__).parent
Scenario = Callable[[WorkflowEnvironment, TicketClient, str], Awaitable[None]]


async def untouched_ladder(env: WorkflowEnvironment, tickets: TicketClient, tid: str) -> None:
    await tickets.open(ticket(ticket_id=tid, priority="high"))
    await env.sleep(timedelta(hours=48))


async def acknowledged_paused_resolved(env: WorkflowEnvironment, tickets: TicketClient, tid: str) -> None:
    await tickets.open(ticket(ticket_id=tid, category="billing", customer={"id": "c", "segment": "vip"}))
    await env.sleep(timedelta(minutes=20))
    await tickets.act(tid, "acknowledge", {"actor": AGENT})
    await tickets.act(tid, "pending_customer", {"actor": AGENT, "note": "need invoice number"})
    await env.sleep(timedelta(hours=3))
    await tickets.act(tid, "customer_replied", {"note": "INV-1"})
    await tickets.signal(tid, "escalate", {"actor": AGENT, "kind": "functional", "department": "x", "reason": "y"})
    await tickets.act(tid, "change_priority", {"actor": LEAD, "priority": "urgent", "reason": "vip angry"})
    await tickets.act(tid, "request_approval", {"actor": AGENT, "kind": "refund", "amount": 900, "reason": "double"})
    await tickets.act(tid, "decide_approval", {"actor": MANAGER, "approval_id": "apr-1", "approved": True})
    await tickets.act(
        tid,
        "escalate",
        {"actor": LEAD, "kind": "functional", "department": "technical", "reason": "a bug in invoicing"},
    )
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "refunded and fixed"})
    await env.sleep(timedelta(days=8))


async def self_service(env: WorkflowEnvironment, tickets: TicketClient, tid: str) -> None:
    await tickets.open(ticket(ticket_id=tid, category="how-to", channel="web"))
    await env.sleep(timedelta(days=1, hours=1))
    await tickets.act(tid, "escalate", {"actor": LEAD, "kind": "hierarchical", "reason": "needs a specialist"})


SCENARIOS: dict[str, Scenario] = {
    "untouched_ladder": untouched_ladder,
    "acknowledged_paused_resolved": acknowledged_paused_resolved,
    "self_service": self_service,
}


async def record() -> None:
    receiver = start_receiver()
    policy = Path(tempfile.mkdtemp()) / "policy.yaml"
    policy.write_text(yaml.safe_dump(policy_doc()))
    for name, scenario in SCENARIOS.items():
        env = await WorkflowEnvironment.start_time_skipping(
            data_converter=pydantic_data_converter, test_server_existing_path=str(binary("temporal-test-server"))
        )
        try:
            await register_search_attributes(env.client, "default")
            async with (
                httpx.AsyncClient() as http,
                build_worker(env.client, make_settings(policy, receiver), http, task_queue="record"),
            ):
                tickets = TicketClient(env.client, "record")
                await scenario(env, tickets, f"REC-{name}")
                await env.sleep(timedelta(seconds=1))
                history = await tickets.handle(f"REC-{name}").fetch_history()
            # The file is named by the workflow id, which replay needs and the JSON does not carry.
            (HERE / f"{history.workflow_id}.json").write_text(history.to_json())
            print(f"{name}: {len(history.events)} events")
        finally:
            await env.shutdown()
    receiver.server.shutdown()


if __name__ == "__main__":
    asyncio.run(record())
