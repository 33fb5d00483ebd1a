"""Who gets told, and what the outbound event says: pure functions of the ticket's snapshot."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from activities.models import OutboundEvent, Person
from config.policy import Endpoint, Policy, Recipient
from workflows.models import Ticket
from workflows.state import TicketState


def recipients(policy: Policy, snap: TicketState, roles: list[Recipient]) -> list[Person]:
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


# A notice waits in the ticket's carried outbox until delivered: its reason is cut to keep that
# bounded (the full text is on the timeline and in history).
MAX_REASON = 500


def event_id(workflow_id: str, life: str, seq: int) -> str:
    """The webhook-id: unique per ticket life (the first run id survives continue-as-new, and a ticket
    id opened again gets a new one), stable across retries because it is computed once, in history."""
    return f"msg_{workflow_id}_{life.replace('-', '')}_{seq}"


def build_event(
    *,
    event_id: str,
    workflow_id: str,
    ticket: Ticket,
    snap: TicketState,
    type: str,
    now: datetime,
    reason: str,
    recipients: list[Person] | None = None,
    cc: list[Person] | None = None,
    rule: str | None = None,
    data: dict[str, Any] | None = None,
) -> OutboundEvent:
    return OutboundEvent(
        id=event_id,
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
        reason=reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…",
        data=data or {},
    )


def endpoints_for(policy: Policy, event_type: str) -> list[Endpoint]:
    return [e for e in policy.notifications.endpoints if not e.event_types or event_type in e.event_types]
