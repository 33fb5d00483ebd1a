"""The breach ladder on the time-skipping server: days of SLA time in well under a second."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from temporalio.testing import WorkflowEnvironment

from tests.helpers import AGENT, ticket, until
from tests.receiver import Receiver
from workflows.models import State


def hours_after(start: datetime, event: dict[str, Any]) -> float:
    return (datetime.fromisoformat(event["occurred_at"]) - start).total_seconds() / 3600


async def test_untouched_ticket_walks_the_whole_ladder(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket(priority="normal")
        began = time.perf_counter()
        await tickets.open(t)
        start = (await tickets.status(t.ticket_id)).clocks[0].started_at
        # Nobody acts for a week: tier 1 (res 3d) -> 2 (2d) -> 3 (1d) -> 4 (12h), then repeats every 4h.
        await ts_env.sleep(timedelta(hours=169))
        status = await tickets.status(t.ticket_id)
        elapsed = time.perf_counter() - began
        # 3 escalations, 8 warnings, 12 breach notices, 4 CCs; deliveries run in the background.
        await until(receiver.events, count=27)
        timeline = (await tickets.timeline(t.ticket_id)).events
        print(f"169 hours of SLA time took {elapsed:.2f}s of test time")

    assert status.tier == 4 and status.escalation_count == 3 and status.sla_breached
    escalations = receiver.events("ticket.escalated")
    assert [round(hours_after(start, e)) for e in escalations] == [72, 120, 144]
    assert [(e["data"]["from_tier"], e["data"]["to_tier"]) for e in escalations] == [(1, 2), (2, 3), (3, 4)]
    assert all(e["rule"] == "ladders.resolution[1] (res-breach)" for e in escalations)
    # Each tier: a first-response warning and a resolution warning.
    assert len(receiver.events("sla.warning")) == 8
    # Each tier: first-response breach + resolution breach; at the top, the repeat at 156, 160, 164, 168h.
    breached = receiver.events("sla.breached")
    repeats = [round(hours_after(start, e)) for e in breached if "res-top-tier-repeat" in (e["rule"] or "")]
    assert repeats == [156, 160, 164, 168]
    assert len(breached) == 8 + 4
    cc = receiver.events("ticket.cc")
    assert len(cc) == 4 and {c["id"] for e in cc for c in e["cc"]} == {"dana.head"}
    # The first-response breach's reassignment to the tier's queue changes nothing for an untouched
    # ticket (it waits there unassigned already): no notice, no helpdesk call, a recorded skip.
    assert receiver.events("ticket.reassigned") == []
    assert [r for r in receiver.accepted if r.path.endswith("/assignment")] == []
    skips = [e.detail for e in timeline if e.kind == "reassign_skipped"]
    assert len(skips) == 4 and all(s["rule"] == "ladders.first_response[1] (fr-breach)" for s in skips)


async def test_acknowledged_then_resolved_ticket_sends_no_breach(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket(priority="high")
        await tickets.open(t)
        await ts_env.sleep(timedelta(minutes=20))
        status = await tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})
        assert status.state == State.acknowledged and status.assignee == "ann"
        await ts_env.sleep(timedelta(hours=3))
        status = await tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "password reset"})
        assert status.state == State.resolved
        assert all(c.state == "stopped" for c in status.clocks)
        await ts_env.sleep(timedelta(days=8))  # the reopen window passes; the workflow returns its summary
        summary = await h.client.get_workflow_handle(f"ticket-{t.ticket_id}").result()

    assert summary["final_state"] == "resolved"
    assert not [e for e in receiver.events() if e["type"] in ("sla.breached", "ticket.escalated", "sla.warning")]
    assert [e["type"] for e in receiver.events()] == ["ticket.resolved"]
    assert summary["breaches"] == 0 and summary["tiers_visited"] == [1]


async def test_pause_and_resume_move_the_deadline_by_exactly_the_paused_time(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket(priority="normal")
        await tickets.open(t)
        await tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})
        before = (await tickets.status(t.ticket_id)).clocks[1]
        await ts_env.sleep(timedelta(hours=1))
        paused = await tickets.act(t.ticket_id, "pending_customer", {"actor": AGENT, "note": "asked for logs"})
        assert paused.state == State.pending_customer and paused.clocks[1].state == "paused"
        assert paused.next_deadline is None
        await ts_env.sleep(timedelta(hours=30))
        resumed = await tickets.act(t.ticket_id, "customer_replied", {"note": "logs attached"})

    after = resumed.clocks[1]
    assert resumed.state == State.acknowledged and after.state == "running"
    assert before.deadline is not None and after.deadline is not None
    moved = after.deadline - before.deadline
    assert moved == after.paused
    assert timedelta(hours=30) <= moved < timedelta(hours=30, seconds=5)


async def test_the_next_deadline_is_the_nearest_one_still_ahead(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    """First response breached, resolution still pending: the status and `NextSlaDeadline` point at
    the resolution deadline, not at the first response's, which has passed (a patch: tickets opened
    before it replay on the old rule; this one carries the marker)."""
    from temporalio.api.enums.v1 import EventType

    from workflows.ticket_views import NEXT_DEADLINE_PATCH

    async with make_harness(ts_env, receiver) as h:
        t = ticket(priority="urgent")  # first response 30 min, resolution 8 h
        await h.tickets.open(t)
        await ts_env.sleep(timedelta(minutes=40))
        status = await h.tickets.status(t.ticket_id)
        handle = h.tickets.handle(t.ticket_id)
        attrs = {p.key.name: p.value for p in (await handle.describe()).typed_search_attributes}
        history = await handle.fetch_history()

    clocks = {c.name.value: c for c in status.clocks}
    assert clocks["first_response"].breached and not clocks["resolution"].breached
    assert status.next_deadline == clocks["resolution"].deadline
    assert attrs.get("NextSlaDeadline") == clocks["resolution"].deadline
    markers = [
        e.marker_recorded_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    assert any(NEXT_DEADLINE_PATCH.encode() in m.details["patch-data"].payloads[0].data for m in markers)
