"""Refused actions are on the ticket's timeline, also those the ticket itself never saw.

An update its validator refuses leaves nothing in history; a payload the API or the CLI refuses
never reaches the ticket. The client that refused tells the ticket (signal `record_refusal`); the
ticket records a `refused` row and changes nothing else. Bounded, validated, never fatal.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ConfigDict, ValidationError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from api.client import ActionRefused
from api.export import audit_from_history, render_timeline
from store.repository import Store
from tests.helpers import AGENT, ticket, without_elapsed
from workflows.models import MAX_REPORTED_REFUSALS, REFUSAL_SIGNAL, Acknowledge


class NewerAcknowledge(Acknowledge):
    """An acknowledge from a newer client, with a field this ticket does not know."""

    model_config = ConfigDict(extra="allow")


async def test_refusals_before_the_ticket_are_recorded_on_it(ts_env: WorkflowEnvironment, make_harness: Any) -> None:
    async with make_harness(ts_env, None) as h:
        tickets = h.tickets
        t = ticket()
        await tickets.open(t)
        before = await tickets.status(t.ticket_id)

        # 1. Refused by the ticket's validator: no history of the update, but the client reports it.
        newer = NewerAcknowledge.model_validate({"actor": AGENT, "mood": "sunny"})
        with pytest.raises(ActionRefused, match="mood"):
            await tickets.act(t.ticket_id, "acknowledge", newer)
        # The validator's refusal says the ticket did not record it.
        with pytest.raises(WorkflowUpdateFailedError) as raw:
            await tickets.handle(t.ticket_id).execute_update("acknowledge", {"actor": AGENT, "mood": "x"})
        assert isinstance(raw.value.cause, ApplicationError) and raw.value.cause.details[0]["recorded"] is False

        # 2. Refused by the client before sending (the API's and the CLI's edge work the same way).
        with pytest.raises(ValidationError):
            await tickets.act(t.ticket_id, "escalate", {"actor": AGENT, "kind": "sideways", "reason": "x"})

        # 3. Garbage reports are ignored; a flood is bounded.
        handle = tickets.handle(t.ticket_id)
        await handle.signal(REFUSAL_SIGNAL, {"action": "", "reason": 7, "junk": True})
        await handle.signal(REFUSAL_SIGNAL)
        await asyncio.gather(
            *(
                tickets.report_refusal(t.ticket_id, "reassign", "payload", f"flood {i}", via="api")
                for i in range(MAX_REPORTED_REFUSALS)
            )
        )
        after = await tickets.status(t.ticket_id)
        timeline = await tickets.timeline(t.ticket_id)
        entries = await audit_from_history(h.client, f"ticket-{t.ticket_id}")
        # The rows reach the record store too (with the next batch, a short wait in workflow time).
        await ts_env.sleep(timedelta(minutes=1))
        stored: list[str] = []
        store = Store(h.settings.store_database_url)
        for _ in range(100):
            life = store.life(t.ticket_id)
            stored = [e.kind for e in store.events([life.ticket.life_id])] if life else []
            if stored.count("refused") == MAX_REPORTED_REFUSALS:
                break
            await asyncio.sleep(0.1)
        store.dispose()

    assert without_elapsed(after) == without_elapsed(before)  # nothing else changed, not even the count
    assert after.refused_actions == before.refused_actions == 0
    refused = [e for e in timeline.events if e.kind == "refused"]
    assert len(refused) == MAX_REPORTED_REFUSALS
    first, second = refused[0], refused[1]
    assert (first.actor, first.detail["action"], first.detail["field"], first.detail["via"]) == (
        "agent:ann",
        "acknowledge",
        "mood",
        "update",
    )
    assert first.detail["update_id"].startswith("acknowledge:")
    assert (second.actor, second.detail["action"], second.detail["field"], second.detail["via"]) == (
        "agent:ann",
        "escalate",
        "kind",
        "client",
    )
    assert [e.kind for e in timeline.events].count("refusals_not_recorded") == 1
    assert stored.count("refused") == MAX_REPORTED_REFUSALS and stored.count("refusals_not_recorded") == 1
    # The auditor's export shows them too, in every format.
    rows = [e for e in entries if e["kind"] == "refused"]
    assert len(rows) == MAX_REPORTED_REFUSALS and rows[0]["actor"] == "agent:ann"
    assert "| workflow | refused | agent:ann |" in render_timeline(t.ticket_id, entries, "md")


async def test_a_report_for_no_ticket_is_dropped(ts_env: WorkflowEnvironment, make_harness: Any) -> None:
    async with make_harness(ts_env, None) as h:
        assert await h.tickets.report_refusal("NO-SUCH-TICKET", "acknowledge", "payload", "x") is False


async def test_a_payload_the_cli_refuses_is_on_the_ticket(dev_env: WorkflowEnvironment, make_harness: Any) -> None:
    from tests.test_cli import cli

    async with make_harness(dev_env, None) as h:
        t = ticket()
        await h.tickets.open(t)
        bad = '{"actor": {"id": "ann", "role": "agent"}, "kind": "sideways", "reason": "x"}'
        code, _, err = await cli(dev_env, h.task_queue, "act", t.ticket_id, "escalate", bad)
        assert code == 2 and "kind" in err
        # The CLI's report is a signal: the ticket records it at its next workflow task; poll.
        for _ in range(50):
            timeline = await h.tickets.timeline(t.ticket_id)
            if any(e.kind == "refused" for e in timeline.events):
                break
            await asyncio.sleep(0.2)
        status = await h.tickets.status(t.ticket_id)
    refused = [e for e in timeline.events if e.kind == "refused"]
    assert len(refused) == 1 and refused[0].actor == "agent:ann" and refused[0].detail["via"] == "cli"
    assert refused[0].detail["action"] == "escalate" and "kind" in refused[0].detail["reason"]
    assert status.refused_actions == 0 and status.tier == 1  # recorded, nothing else
