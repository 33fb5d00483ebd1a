"""Who gets told, and what the outbound event says: pure functions of the ticket's snapshot."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from activities.models import OutboundEvent, Person
from config.policy import Endpoint, Policy, Recipient
from workflows.models import Ticket, TicketSnapshot


def recipients(policy: Policy, snap: TicketSnapshot, roles: list[Recipient]) -> list[Person]:
    """Resolve roles against the ticket's department; roles with nobody behind them are left out."""
    dept = policy.departments[snap.department]
    found: list[Person] = []
    for role in roles:
        if role == Recipient.assignee:
            if snap.assignee:
                found.append(Person(role="assignee", id=snap.assignee))
            elif snap.queue:
                found.append(Person(role="queue", id=snap.queue))
        elif role == Recipient.queue and snap.queue:
            found.append(Person(role="queue", id=snap.queue))
        elif role == Recipient.team_lead and dept.team_lead:
            found.append(Person(role="team_lead", id=dept.team_lead.id, email=dept.team_lead.email))
        elif role == Recipient.department_head and dept.head:
            found.append(Person(role="department_head", id=dept.head.id, email=dept.head.email))
    unique: dict[tuple[str, str], Person] = {(p.role, p.id): p for p in found}
    return list(unique.values())


def department_head(policy: Policy, department: str) -> list[Person]:
    head = policy.departments[department].head
    return [Person(role="department_head", id=head.id, email=head.email)] if head else []


def build_event(
    *,
    seq: int,
    workflow_id: str,
    ticket: Ticket,
    snap: TicketSnapshot,
    type: str,
    now: datetime,
    reason: str,
    recipients: list[Person] | None = None,
    cc: list[Person] | None = None,
    rule: str | None = None,
    data: dict[str, Any] | None = None,
) -> OutboundEvent:
    """The event id is the workflow id plus a per-ticket sequence: stable across retries and runs."""
    return OutboundEvent(
        id=f"msg_{workflow_id}_{seq}",
        type=type,
        occurred_at=now,
        ticket_id=ticket.ticket_id,
        workflow_id=workflow_id,
        tier=snap.tier,
        department=snap.department,
        priority=snap.priority.value,
        recipients=recipients or [],
        cc=cc or [],
        rule=rule,
        reason=reason,
        data=data or {},
    )


def endpoints_for(policy: Policy, event_type: str) -> list[Endpoint]:
    return [e for e in policy.notifications.endpoints if not e.event_types or event_type in e.event_types]
