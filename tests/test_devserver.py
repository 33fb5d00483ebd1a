"""On the real dev server: search attributes and visibility, one workflow per ticket, continue-as-new."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio.testing import WorkflowEnvironment

from api.client import TicketClient
from tests.conftest import policy_doc, start_dev_server
from tests.helpers import AGENT, LEAD, ticket
from tests.receiver import Receiver
from workflows import search_attributes as sa


async def wait_visible(tickets: TicketClient, query: str, count: int = 1) -> list[Any]:
    for _ in range(100):  # visibility is eventually consistent
        found, _ = await tickets.search(query)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    return found


def short_sla_policy() -> dict[str, Any]:
    doc = policy_doc()
    for level, tier in doc["sla"].items():  # tier 1 breaches in 2 s; tier 2 then holds the ticket
        for targets in tier.values():
            targets.update(first_response="PT1S", resolution="PT2S" if level == 1 else "PT1H")
    doc["ladders"]["resolution"] = [s for s in doc["ladders"]["resolution"] if s["id"] == "res-breach"]
    return doc


async def test_visibility_query_finds_a_breached_tier2_ticket(
    dev_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(dev_env, receiver, short_sla_policy()) as h:
        tickets = h.tickets
        t = ticket(category=f"cat-{h.task_queue}")
        await tickets.open(t)
        for _ in range(100):
            status = await tickets.status(t.ticket_id)
            if status.tier == 2:
                break
            await asyncio.sleep(0.05)
        await tickets.act(t.ticket_id, "acknowledge", {"actor": {"id": "tia", "role": "agent", "tier": 2}})
        found = await wait_visible(
            tickets,
            f"TicketTier = 2 AND SlaBreached = true AND TicketCategory = '{t.category}' "
            "AND TicketState = 'acknowledged'",
        )
        described = await h.client.get_workflow_handle(f"ticket-{t.ticket_id}").describe()

    assert [wf.id for wf in found] == [f"ticket-{t.ticket_id}"]
    attrs = described.typed_search_attributes
    assert attrs.get(sa.TICKET_TIER) == 2 and attrs.get(sa.SLA_BREACHED) is True
    assert attrs.get(sa.TICKET_DEPARTMENT) == "support" and attrs.get(sa.TICKET_ASSIGNEE) == "tia"
    assert attrs.get(sa.ESCALATION_COUNT) == 1 and attrs.get(sa.TICKET_CHANNEL) == "email"
    assert attrs.get(sa.TICKET_PRIORITY) == "normal" and attrs.get(sa.NEXT_SLA_DEADLINE) is not None


async def test_opening_the_same_ticket_twice_yields_one_workflow(
    dev_env: WorkflowEnvironment, make_harness: Any
) -> None:
    async with make_harness(dev_env, None) as h:
        tickets = h.tickets
        t = ticket()
        first, second = await asyncio.gather(tickets.open(t), tickets.open(t))
        third = await tickets.open(t)
        found = await wait_visible(tickets, f"WorkflowId = 'ticket-{t.ticket_id}'")
    assert sorted([first.created, second.created, third.created]) == [False, False, True]
    assert len({first.run_id, second.run_id, third.run_id}) == 1
    assert len(found) == 1


async def test_long_lived_ticket_continues_as_new_with_its_state(make_harness: Any, receiver: Receiver) -> None:
    env = await start_dev_server(20)
    try:
        async with make_harness(env, receiver) as h:
            tickets = h.tickets
            t = ticket()
            opened = await tickets.open(t)
            await tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})
            for i in range(6):
                await tickets.act(t.ticket_id, "pending_customer", {"actor": AGENT, "note": f"ask {i}"})
                await tickets.act(t.ticket_id, "customer_replied", {"note": f"reply {i}"})
            await tickets.act(t.ticket_id, "escalate", {"actor": LEAD, "kind": "hierarchical", "reason": "hard"})
            status = await tickets.status(t.ticket_id)
            timeline = await tickets.timeline(t.ticket_id)
            # It continues as new once the suggestion came and its events are in the record store
            # (one `store_events` activity after the last action): poll, do not look once.
            handle = h.client.get_workflow_handle(f"ticket-{t.ticket_id}")
            for _ in range(100):
                described = await handle.describe()
                if described.run_id != opened.run_id:
                    break
                await asyncio.sleep(0.2)
    finally:
        await env.shutdown()
    assert described.run_id != opened.run_id  # it continued as new at least once
    assert status.tier == 2 and status.escalation_count == 1 and status.policy_version.startswith("2026.11-default")
    assert sum(1 for e in timeline.events if e.kind == "sla_paused") == 6
    assert timeline.events[0].kind == "ticket_opened"
    assert status.clocks[1].paused >= timedelta(0)
