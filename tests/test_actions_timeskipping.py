"""Agent actions and guards on the real workflow (time-skipping server), accepted and refused."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from api.client import ActionRefused
from tests.conftest import policy_doc
from tests.helpers import AGENT, LEAD, MANAGER, ticket, until, without_elapsed
from tests.receiver import Receiver
from workflows.models import State, workflow_id_for


async def test_refused_updates_leave_the_ticket_unchanged(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket()
        await tickets.open(t)
        await ts_env.sleep(timedelta(hours=1))
        before = await tickets.status(t.ticket_id)

        with pytest.raises(ActionRefused) as nowhere:
            await tickets.act(
                t.ticket_id,
                "escalate",
                {"actor": LEAD, "kind": "functional", "department": "astrology", "reason": "stars"},
            )
        assert nowhere.value.field == "department"
        assert "unknown department 'astrology' (known: billing, support, technical)" in str(nowhere.value)

        with pytest.raises(ActionRefused) as no_reason:
            await tickets.act(t.ticket_id, "escalate", {"actor": LEAD, "kind": "hierarchical", "reason": ""})
        assert str(no_reason.value) == "reason: a reason is required to escalate"

        after = await tickets.status(t.ticket_id)
        assert without_elapsed(after) == without_elapsed(before)
        # Refused by the ticket (not by the payload check): recorded on the timeline with the reason.
        events = (await tickets.timeline(t.ticket_id)).events
        rejected = [e.detail for e in events if e.kind == "action_rejected"]
        assert "escalated" not in [e.kind for e in events]
        assert [(r["field"], r["via"]) for r in rejected] == [("department", "update"), ("reason", "update")]
        assert after.refused_actions == before.refused_actions + 2


async def test_refused_signals_are_recorded_and_change_nothing(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket()
        await tickets.open(t)
        await ts_env.sleep(timedelta(hours=1))
        before = await tickets.status(t.ticket_id)
        await tickets.signal(
            t.ticket_id, "escalate", {"actor": LEAD, "kind": "functional", "department": "astrology", "reason": "stars"}
        )
        await tickets.signal(t.ticket_id, "escalate", {"actor": LEAD, "kind": "hierarchical", "reason": ""})
        await ts_env.sleep(timedelta(seconds=1))
        after = await tickets.status(t.ticket_id)
        rejected = [e for e in (await tickets.timeline(t.ticket_id)).events if e.kind == "action_rejected"]

    assert after.tier == before.tier and after.department == before.department
    assert after.escalation_count == before.escalation_count == 0
    assert [(e.detail["field"], e.detail["via"], e.actor) for e in rejected] == [
        ("department", "signal", "lead:lee.lead"),
        ("reason", "signal", "lead:lee.lead"),
    ]
    assert "unknown department 'astrology'" in rejected[0].detail["reason"]


async def test_manual_escalations_functional_then_hierarchical(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket(category="account")
        await tickets.open(t)
        await tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})
        res_deadline = (await tickets.status(t.ticket_id)).clocks[1].deadline
        moved = await tickets.act(
            t.ticket_id,
            "escalate",
            {"actor": AGENT, "kind": "functional", "department": "billing", "reason": "a refund question"},
        )
        assert (moved.department, moved.tier, moved.queue, moved.state) == ("billing", 1, "billing-t1", State.open)
        assert moved.clocks[1].deadline == res_deadline  # the customer's wait goes on
        assert moved.clocks[0].state == "running"  # billing must respond anew
        with pytest.raises(ActionRefused, match="hierarchical escalation needs PT30M"):
            await tickets.act(t.ticket_id, "escalate", {"actor": AGENT, "kind": "hierarchical", "reason": "hard"})
        await ts_env.sleep(timedelta(minutes=31))
        up = await tickets.act(t.ticket_id, "escalate", {"actor": AGENT, "kind": "hierarchical", "reason": "hard"})
        assert (up.tier, up.department, up.escalation_count) == (2, "billing", 2)
        escalated = await until(lambda: receiver.events("ticket.escalated"), count=2)
    assert [e["data"]["kind"] for e in escalated] == ["functional", "hierarchical"]
    assert escalated[1]["reason"] == "hard" and escalated[1]["rule"] is None and escalated[1]["data"]["actor"] == "ann"


async def test_priority_change_recomputes_deadlines_from_the_open_time(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket(priority="low")
        await tickets.open(t)
        start = (await tickets.status(t.ticket_id)).clocks[0].started_at
        await ts_env.sleep(timedelta(hours=1))
        with pytest.raises(ActionRefused, match="reason: a reason is required to change the priority"):
            await tickets.act(t.ticket_id, "change_priority", {"actor": AGENT, "priority": "urgent"})
        status = await tickets.act(
            t.ticket_id, "change_priority", {"actor": AGENT, "priority": "urgent", "reason": "production down"}
        )
        await ts_env.sleep(timedelta(seconds=1))
        events = (await tickets.timeline(t.ticket_id)).events
    fr, res = status.clocks
    assert status.priority == "urgent"
    assert fr.deadline == start + timedelta(minutes=30) and res.deadline == start + timedelta(hours=8)
    change = next(e for e in events if e.kind == "priority_changed")
    assert change.detail["from"] == "low" and change.detail["reason"] == "production down"
    assert change.detail["deadlines_before"]["first_response"] == (start + timedelta(days=1)).isoformat()
    # The new first-response deadline (30 min after opening) had already passed: the breach fires at once.
    assert status.sla_breached or any(e.kind == "sla_breached" for e in events)


async def test_tier0_self_service_confirmed_or_expired(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        solved, unsolved = ticket(category="how-to", channel="web"), ticket(category="how-to", channel="web")
        await tickets.open(solved)
        await tickets.open(unsolved)
        first = await tickets.status(solved.ticket_id)
        assert (first.state, first.tier, first.clocks) == (State.self_service, 0, [])
        done = await tickets.act(solved.ticket_id, "confirm_solved", {"note": "the article helped"})
        assert done.state == State.resolved
        await ts_env.sleep(timedelta(days=1, minutes=1))
        moved = await tickets.status(unsolved.ticket_id)
        kb = receiver.events("ticket.self_service")
    assert (moved.state, moved.tier, moved.queue) == (State.open, 1, "support-t1")
    # Tier 1's SLA starts when it leaves Tier 0, not when the ticket was opened.
    assert moved.clocks[0].deadline is not None and moved.clocks[0].elapsed <= timedelta(minutes=1)
    assert len(kb) == 2 and kb[0]["data"]["kb_url"] == "https://help.example.com/kb"
    assert kb[0]["recipients"][0]["role"] == "customer"


async def test_customer_reply_in_tier0_moves_to_tier1(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket(category="how-to", channel="email")
        await tickets.open(t)
        with pytest.raises(ActionRefused, match="state: a self-service ticket already waits"):
            await tickets.act(t.ticket_id, "pending_customer", {"actor": AGENT})
        status = await tickets.act(t.ticket_id, "customer_replied", {"note": "did not help"})
    assert (status.state, status.tier) == (State.open, 1)


async def test_approval_within_authority_and_escalating_when_nobody_answers(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket(category="billing")
        await tickets.open(t)
        await tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})
        small = await tickets.act(
            t.ticket_id, "request_approval", {"actor": AGENT, "kind": "refund", "amount": 20, "reason": "late delivery"}
        )
        assert small.pending_approvals == []
        big = await tickets.act(
            t.ticket_id,
            "request_approval",
            {"actor": AGENT, "kind": "refund", "amount": 900, "reason": "double charge"},
        )
        assert [a.id for a in big.pending_approvals] == ["apr-2"]
        with pytest.raises(ActionRefused, match=r"actor\.role: role lead may not decide approvals"):
            await tickets.act(t.ticket_id, "decide_approval", {"actor": LEAD, "approval_id": "apr-2", "approved": True})
        with pytest.raises(ActionRefused, match="an approval is still pending"):
            await tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "refunded"})
        await ts_env.sleep(timedelta(hours=4, minutes=1))
        after = await tickets.status(t.ticket_id)
        events = (await tickets.timeline(t.ticket_id)).events
        requested = receiver.events("approval.requested")
        esc = await until(lambda: receiver.events("ticket.escalated"))
    assert after.tier == 2 and after.pending_approvals == []
    assert any(e.kind == "approval_timed_out" for e in events)
    assert requested[0]["recipients"][0]["id"] == "bea.head" and requested[0]["data"]["amount"] == 900
    assert esc and esc[0]["rule"] == "approvals.timeout"


async def test_manager_decides_an_approval(ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket(category="billing")
        await tickets.open(t)
        await tickets.act(
            t.ticket_id,
            "request_approval",
            {"actor": AGENT, "kind": "discount", "amount": 900, "reason": "loyal customer"},
        )
        ok = await tickets.act(
            t.ticket_id, "decide_approval", {"actor": MANAGER, "approval_id": "apr-1", "approved": True}
        )
        assert ok.pending_approvals == []
        with pytest.raises(ActionRefused, match="approval_id: approval apr-1 is already approved"):
            await tickets.act(
                t.ticket_id, "decide_approval", {"actor": MANAGER, "approval_id": "apr-1", "approved": False}
            )


async def test_resolve_then_reopen(ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket()
        await tickets.open(t)
        with pytest.raises(ActionRefused, match="state: only a resolved ticket can be reopened"):
            await tickets.act(t.ticket_id, "reopen", {"actor": AGENT, "reason": "again"})
        await tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "fixed"})
        with pytest.raises(ActionRefused, match="state: the ticket is resolved; reopen it first"):
            await tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})
        again = await tickets.act(t.ticket_id, "reopen", {"actor": AGENT, "reason": "still broken"})
        assert again.state == State.open and all(c.state == "running" for c in again.clocks)
        sent = await until(receiver.events, count=2)
    assert sorted(e["type"] for e in sent) == ["ticket.reopened", "ticket.resolved"]


async def test_repeat_count_and_tier_filter(
    ts_env: WorkflowEnvironment,
    receiver: Receiver,
    make_harness: Any,
) -> None:
    doc = policy_doc()
    doc["ladders"]["first_response"] = [
        {
            "id": "nag",
            "after_breach": "PT0S",
            "repeat": {"interval": "PT1H", "count": 2},
            "actions": [{"type": "notify", "roles": ["team_lead"]}],
        },
        {
            "id": "tier2-only",
            "after_breach": "PT0S",
            "tiers": [2],
            "actions": [{"type": "notify", "roles": ["department_head"]}],
        },
    ]
    async with make_harness(ts_env, receiver, doc) as h:
        tickets = h.tickets
        t = ticket(priority="normal")  # first response 8h at tier 1
        await tickets.open(t)
        await ts_env.sleep(timedelta(hours=14))
    nags = [e for e in receiver.events("sla.breached") if e["rule"].endswith("(nag)")]
    assert len(nags) == 3  # the first firing and 2 repeats, one hour apart, then it stops
    assert not [e for e in receiver.events() if (e["rule"] or "").endswith("(tier2-only)")]


async def test_policy_version_is_frozen_per_ticket(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any, write_policy: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        old = ticket(priority="normal")
        await tickets.open(old)
        before = await tickets.status(old.ticket_id)
        # Edit the policy file the worker reads: the running ticket keeps its version and targets.
        doc = policy_doc(version="edited")
        doc["sla"][1]["normal"] = {"first_response": "PT1M", "resolution": "PT2M"}
        h.settings.policy_path.write_text(yaml.safe_dump(doc))
        new = ticket(priority="normal")
        await tickets.open(new)
        old_after, new_status = await tickets.status(old.ticket_id), await tickets.status(new.ticket_id)
    assert old_after.policy_version == before.policy_version and before.policy_version.startswith("2026.11-default+")
    assert old_after.clocks[0].target == timedelta(hours=8)
    assert new_status.policy_version.startswith("edited+") and new_status.clocks[0].target == timedelta(minutes=1)


async def test_invalid_input_fails_at_once(ts_env: WorkflowEnvironment, make_harness: Any) -> None:
    async with make_harness(ts_env, None) as h:
        handle = await h.client.start_workflow(
            "TicketEscalation",
            {"ticket_id": "x", "subject": "", "customer": {"id": "c"}},
            id=workflow_id_for("bad-input"),
            task_queue=h.task_queue,
        )
        with pytest.raises(WorkflowFailureError) as err:
            await handle.result()
    assert "subject" in str(err.value.cause) and "at least 1 character" in str(err.value.cause)


@pytest.mark.parametrize("opened_at", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:00:00+00:00"])
async def test_an_opening_at_the_ends_of_the_calendar_fails_at_once(
    ts_env: WorkflowEnvironment, make_harness: Any, opened_at: str
) -> None:
    """A raw start (any language, or the CLI) with such a date once wedged its ticket: the SLA
    arithmetic overflowed in every workflow task. Now the ticket fails at once, naming the field."""
    async with make_harness(ts_env, None) as h:
        handle = await h.client.start_workflow(
            "TicketEscalation",
            {"ticket_id": "x", "subject": "s", "customer": {"id": "c"}, "opened_at": opened_at},
            id=workflow_id_for(f"edge-{opened_at[:4]}"),
            task_queue=h.task_queue,
        )
        with pytest.raises(WorkflowFailureError) as err:
            await handle.result()
    assert "opened_at: must lie between 2000-01-01 and 2200-01-01" in str(err.value.cause)
