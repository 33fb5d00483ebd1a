"""The audit export of an escalated ticket, from its Temporal history, checked event by event."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

from temporalio.testing import WorkflowEnvironment

from api.export import audit_from_history, render_timeline
from tests.helpers import AGENT, ticket, until
from tests.receiver import Receiver

NOISE = {"search_attributes", "timer_started", "timer_fired", "notification_delivered", "helpdesk_updated"}


def key(e: dict[str, Any]) -> tuple[Any, ...]:
    d = e["detail"]
    kind = e["kind"]
    if kind.endswith("_scheduled") and kind != "load_policy_scheduled":
        return (e["source"], kind, d.get("event_type") or d.get("queue"), d.get("rule"))
    if kind in ("ladder_step",):
        return (e["source"], kind, d["rule"])
    if kind in ("sla_started", "sla_breached"):
        return (e["source"], kind, d["clock"])
    if kind == "tier_entered":
        return (e["source"], kind, d["tier"])
    if kind in ("update_accepted", "update_completed", "signal_received"):
        return (e["source"], kind, d["action"], e["actor"])
    if kind == "action_rejected":
        return (e["source"], kind, d["field"], e["actor"])
    if kind == "escalated":
        return (e["source"], kind, d["from_tier"], d["to_tier"], d["rule"])
    return (e["source"], kind)


async def test_audit_export_of_an_escalated_ticket(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket(priority="urgent")  # tier 1: first response 30 min, resolution 8 h
        await tickets.open(t)
        await ts_env.sleep(timedelta(minutes=25))
        await tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT, "note": "on it"})
        await tickets.signal(
            t.ticket_id, "escalate", {"actor": AGENT, "kind": "functional", "department": "nowhere", "reason": "x"}
        )
        # Resolution breach at 8 h: escalate to tier 2, CC the head; resolved at 8h05, before tier 2 must respond.
        await ts_env.sleep(timedelta(hours=7, minutes=40))
        await tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "fixed"})
        await until(lambda: receiver.events("ticket.resolved"))
        await ts_env.sleep(timedelta(seconds=1))
        entries = await audit_from_history(h.client, f"ticket-{t.ticket_id}")

    rule_fr_warn, rule_res_warn = "ladders.first_response[0] (fr-warning)", "ladders.resolution[0] (res-warning)"
    rule_res_breach = "ladders.resolution[1] (res-breach)"
    decisions = [
        key(e)
        for e in entries
        if (e["kind"] not in NOISE and not e["kind"].endswith("_completed")) or e["kind"] == "update_completed"
    ]
    assert decisions == [
        ("history", "workflow_started"),
        ("workflow", "ticket_opened"),
        ("workflow", "routed"),
        ("workflow", "sla_started", "first_response"),
        ("workflow", "sla_started", "resolution"),
        ("workflow", "tier_entered", 1),
        ("workflow", "ladder_step", rule_fr_warn),
        ("history", "notify_scheduled", "sla.warning", rule_fr_warn),
        ("workflow", "acknowledged"),
        ("history", "update_accepted", "acknowledge", "agent:ann"),
        ("history", "update_completed", "acknowledge", "agent:ann"),
        ("history", "signal_received", "escalate", "agent:ann"),
        ("workflow", "action_rejected", "department", "agent:ann"),
        ("workflow", "ladder_step", rule_res_warn),
        ("history", "notify_scheduled", "sla.warning", rule_res_warn),
        ("workflow", "sla_breached", "resolution"),
        ("workflow", "ladder_step", rule_res_breach),
        ("workflow", "sla_started", "first_response"),
        ("workflow", "sla_started", "resolution"),
        ("workflow", "tier_entered", 2),
        ("workflow", "escalated", 1, 2, rule_res_breach),
        ("history", "notify_scheduled", "sla.breached", rule_res_breach),
        ("history", "notify_scheduled", "ticket.escalated", rule_res_breach),
        ("history", "cc_department_heads_scheduled", "ticket.cc", rule_res_breach),
        ("workflow", "resolved"),
        ("history", "update_accepted", "resolve", "agent:ann"),
        ("history", "update_completed", "resolve", "agent:ann"),
        ("history", "notify_scheduled", "ticket.resolved", None),
    ]

    by_kind = {e["kind"]: e for e in entries}
    opened = datetime.fromisoformat(entries[0]["at"])

    def at(e: dict[str, Any]) -> timedelta:
        return datetime.fromisoformat(e["at"]) - opened

    steps = [e for e in entries if e["kind"] == "ladder_step"]
    assert timedelta(minutes=22, seconds=29) < at(steps[0]) < timedelta(minutes=22, seconds=31)  # 75% of 30 min
    assert timedelta(hours=6, minutes=23) < at(steps[1]) < timedelta(hours=6, minutes=25)  # 80% of 8 h
    assert timedelta(hours=7, minutes=59) < at(steps[2]) < timedelta(hours=8, minutes=1)
    # The policy is loaded by a local activity: its result is a marker in history.
    assert by_kind["load_policy_completed"]["detail"]["local"] is True
    version = by_kind["load_policy_completed"]["detail"]["policy_version"]
    assert version.startswith("2026.11-default+") and by_kind["ticket_opened"]["detail"]["policy_version"] == version
    rejected = by_kind["action_rejected"]["detail"]
    assert rejected["reason"].startswith("unknown department 'nowhere'") and rejected["via"] == "signal"
    escalated = by_kind["escalated"]["detail"]
    assert (escalated["kind"], escalated["department"], escalated["reason"]) == (
        "hierarchical",
        "support",
        "resolution SLA after breach",
    )
    cc = by_kind["cc_department_heads_scheduled"]["detail"]
    assert cc["cc"] == ["dana.head"]

    # Every notification scheduled was delivered once, first attempt, HTTP 200: outcome per event id.
    scheduled = {
        e["detail"]["event_id"] for e in entries if e["kind"] in ("notify_scheduled", "cc_department_heads_scheduled")
    }
    completed = [e["detail"] for e in entries if e["kind"] in ("notify_completed", "cc_department_heads_completed")]
    assert {c["event_id"] for c in completed} == scheduled and len(completed) == len(scheduled) == 6
    assert all(c["attempts"] == 1 and c["status_code"] == 200 for c in completed)
    # The search attributes in history show the state changes an auditor filters on in the Web UI.
    tiers = [
        e["detail"]["TicketTier"] for e in entries if e["kind"] == "search_attributes" and "TicketTier" in e["detail"]
    ]
    assert tiers == [1, 2]

    rows = list(csv.reader(io.StringIO(render_timeline(t.ticket_id, entries, "csv"))))
    assert rows[0] == ["at", "source", "kind", "actor", "detail"] and len(rows) == len(entries) + 1
    markdown = render_timeline(t.ticket_id, entries, "md")
    assert (
        markdown.count("\n| 20") == len(entries) and "| workflow | escalated | system:escalation-policy |" in markdown
    )
