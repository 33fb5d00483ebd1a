"""The steps that actions and timers share: entering a tier, escalating, reassigning, resolving.

An agent's `escalate` and a breach ladder's escalation are the same change, so it is written once
here; `workflows/action_handlers.py` and `workflows/timers.py` call these. Each step changes the
draft's state, records what happened and queues the notices it causes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import workflows.guards as guards
import workflows.notices as notices
import workflows.routing as routing
import workflows.sla as sla
from config.policy import Recipient
from workflows.draft import OPEN, PENDING, RESOLVED, SS, SYSTEM, Draft
from workflows.durations import iso_duration
from workflows.messages import ReassignInput
from workflows.models import Actor, ClockName
from workflows.outbox import enqueue, notify
from workflows.state import MAX_VISITED, Notice


def from_to(before: Any, after: Any) -> dict[str, Any]:
    return {"from": before, "to": after}


def visit(d: Draft, tier: int | None = None, department: str | None = None) -> None:
    """Remember a tier and a department the ticket has been in (bounded; guards and the summary read it)."""
    if tier is not None:
        d.state.tiers_visited = [*d.state.tiers_visited, tier][-MAX_VISITED:]
    visited = d.state.departments_visited
    if department is not None and (not visited or visited[-1] != department):
        d.state.departments_visited = [*visited, department][-MAX_VISITED:]


def enter_tier(d: Draft, tier: int, department: str, *, start: datetime | None = None, why: str) -> None:
    """Put the ticket in a tier and department; both clocks start over for the new owners."""
    start = min(start or d.now, d.now)
    d.state.tier, d.state.department = tier, department
    d.state.tier_entered_at = d.now
    d.state.state = OPEN
    d.state.resume_state = None
    d.state.assignee = None
    d.state.queue = routing.queue_for(d.policy, department, tier)
    visit(d, tier, department)
    start_clock(d, ClockName.first_response, start)
    start_clock(d, ClockName.resolution, start)
    d.record("tier_entered", by=SYSTEM, tier=tier, department=department, queue=d.state.queue, why=why)


def start_clock(d: Draft, name: ClockName, start: datetime) -> None:
    calendar = d.state.route.calendar
    targets = routing.targets_for(
        d.policy, d.state.route.route, d.ticket.customer.segment, d.state.tier, d.state.priority
    )
    target: timedelta = getattr(targets, name.value)
    clock = sla.start_clock(name, calendar, d.policy.calendars[calendar], target, start)
    d.state.clocks[name] = clock
    d.record(
        "sla_started",
        by=SYSTEM,
        clock=name.value,
        target=iso_duration(target),
        calendar=calendar,
        deadline=clock.deadline.isoformat() if clock.deadline else None,
    )


def leave_self_service(d: Draft, why: str, department: str | None = None, tier: int | None = None) -> None:
    d.state.self_service_until = None
    enter_tier(d, tier or d.state.route.tier, department or d.state.route.department, why=why)


def escalate_hierarchical(d: Draft, tier: int, actor: Actor, *, reason: str, rule: str | None) -> None:
    before = d.state.tier
    d.state.escalations += 1
    enter_tier(d, tier, d.state.department, why=f"hierarchical escalation: {reason}")
    d.record(
        "escalated",
        by=actor,
        kind="hierarchical",
        from_tier=before,
        to_tier=tier,
        department=d.state.department,
        rule=rule,
        reason=reason,
    )
    notify(
        d,
        "ticket.escalated",
        reason=reason,
        rule=rule,
        recipients=notices.recipients(d.policy, d.state, [Recipient.queue, Recipient.team_lead]),
        data={"kind": "hierarchical", "from_tier": before, "to_tier": tier, "actor": actor.id},
    )


def escalate_functional(d: Draft, department: str, actor: Actor, reason: str) -> None:
    """To another department at the same tier: it must respond anew; the resolution clock runs on.

    From Tier 0 the ticket enters the department at its route's tier, with both clocks."""
    before = d.state.department
    d.state.escalations += 1
    if d.state.state == SS:
        leave_self_service(d, f"functional escalation: {reason}", department=department)
    else:
        d.state.department = department
        visit(d, department=department)
        d.state.queue = routing.queue_for(d.policy, department, d.state.tier)
        d.state.assignee = None
        if d.state.state == PENDING:  # the new department's clock runs: the ticket is open for them
            cal = d.calendar()
            d.state.clocks = {name: sla.resume(c, cal, d.now) for name, c in d.state.clocks.items()}
            d.state.resume_state = None
        d.state.state = OPEN
        start_clock(d, ClockName.first_response, d.now)
    d.record(
        "escalated",
        by=actor,
        kind="functional",
        from_department=before,
        to_department=department,
        tier=d.state.tier,
        reason=reason,
    )
    notify(
        d,
        "ticket.escalated",
        reason=reason,
        recipients=notices.recipients(d.policy, d.state, [Recipient.queue, Recipient.team_lead]),
        data={"kind": "functional", "from_department": before, "to_department": department, "actor": actor.id},
    )


def reassign(
    d: Draft, actor: Actor, *, to_agent: str | None, to_queue: str | None, reason: str, rule: str | None = None
) -> None:
    """Another agent or queue; the help desk is told too (a `reassign` notice in the outbox)."""
    s = d.state
    before = {"agent": s.assignee, "queue": s.queue, "department": s.department}
    if to_queue:
        s.queue = to_queue
        s.department = guards.department_of_queue(d.policy, to_queue) or s.department
        visit(d, department=s.department)
    s.assignee = to_agent
    after = {"agent": s.assignee, "queue": s.queue, "department": s.department}
    if after == before:
        d.record("reassign_skipped", by=actor, rule=rule, reason="nothing to change")
        return
    d.record("reassigned", by=actor, reason=reason, rule=rule, **from_to(before, after))
    notify(
        d,
        "ticket.reassigned",
        reason=reason,
        rule=rule,
        recipients=notices.recipients(d.policy, s, [Recipient.assignee]),
        data={"from": before, "to": after},
    )
    s.notice_seq += 1
    key = f"{d.ctx.workflow_id}:{d.ctx.life}:reassign:{s.notice_seq}"
    request = ReassignInput(
        idempotency_key=key,
        ticket_id=d.ticket.ticket_id,
        workflow_id=d.ctx.workflow_id,
        queue=s.queue,
        agent=s.assignee,
        reason=reason,
    )
    enqueue(
        d,
        Notice(
            key=key,
            activity="reassign",
            type="helpdesk.reassign",
            endpoint="helpdesk",
            reassign=request,
            created_at=d.now,
            next_attempt_at=d.now,
            give_up_at=d.now + d.policy.notifications.retry_for,
        ),
    )


def resolve(d: Draft, actor: Actor | str, resolution: str) -> None:
    """Stop the clocks; the reopen window starts."""
    cal = d.calendar()
    d.state.clocks = {n: sla.stop(c, cal, d.now) for n, c in d.state.clocks.items()}
    d.state.state = RESOLVED
    d.state.resume_state = None
    d.state.resolved_at = d.now
    d.state.self_service_until = None
    d.record("resolved", by=actor, resolution=resolution)
    notify(
        d, "ticket.resolved", reason=resolution, recipients=notices.recipients(d.policy, d.state, [Recipient.assignee])
    )
