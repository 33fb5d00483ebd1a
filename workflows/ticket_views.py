"""What the outside sees of a ticket: its status, its summary, its search attributes.

Pure functions of the ticket, its state and its policy: the `status` query and each update's answer,
the workflow's result, the values mirrored onto the search attributes (bounded: the server ends a
workflow whose upsert is too large). The workflow calls them; they decide nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio.common import SearchAttributeKey

import workflows.search_attributes as sa
import workflows.sla as sla
from config.policy import Policy
from workflows.models import NoticeStatus, Ticket, TicketStatus, TicketSummary
from workflows.state import TicketState

KEYWORD_MAX_BYTES = 255


def bounded_keyword(value: str | None) -> str | None:
    """Cut a keyword search-attribute value to at most 255 UTF-8 bytes, on a character boundary."""
    if value is None:
        return None
    data = value.encode()
    if len(data) <= KEYWORD_MAX_BYTES:
        return value
    return data[:KEYWORD_MAX_BYTES].decode(errors="ignore")


# Patch: `NextSlaDeadline` is the nearest deadline still ahead of a clock (before it, a breached
# clock's passed deadline could hide a later pending one). Asked only where the rules disagree.
NEXT_DEADLINE_PATCH = "next-deadline-pending-v1"


def next_pending(s: TicketState, *, pending_only: bool = True) -> tuple[datetime, str] | None:
    """The nearest deadline of a running clock, with the clock's name; `pending_only`: of one that
    has not breached yet. (The status query reads its clocks as of its own instant instead.)"""
    deadlines = [
        (c.deadline, name.value)
        for name, c in s.clocks.items()
        if sla.is_running(c) and c.deadline and not (pending_only and c.breached_at is not None)
    ]
    return min(deadlines, default=None)


def next_deadline(s: TicketState, *, pending_only: bool = True) -> datetime | None:
    found = next_pending(s, pending_only=pending_only)
    return found[0] if found else None


def next_deadline_rules_differ(s: TicketState) -> bool:
    return next_deadline(s) != next_deadline(s, pending_only=False)


def search_attribute_values(
    ticket: Ticket, s: TicketState, *, pending_only: bool = True
) -> list[tuple[SearchAttributeKey[Any], Any]]:
    """Every search attribute of the ticket with its value now (`None`: unset)."""
    return [
        (sa.TICKET_TIER, s.tier),
        (sa.TICKET_STATE, s.state.value),
        (sa.TICKET_PRIORITY, s.priority.value),
        (sa.TICKET_CHANNEL, ticket.channel.value),
        (sa.TICKET_CATEGORY, bounded_keyword(ticket.category)),
        (sa.TICKET_DEPARTMENT, bounded_keyword(s.department)),
        (sa.TICKET_ASSIGNEE, bounded_keyword(s.assignee)),
        (sa.SLA_BREACHED, s.breaches > 0),  # sticky: it breached at some tier
        (sa.ESCALATION_COUNT, s.escalations),
        (sa.NEXT_SLA_DEADLINE, next_deadline(s, pending_only=pending_only)),
        (sa.UNDELIVERED_NOTICES, sum(1 for n in s.outbox if n.status != "pending")),
    ]


def ticket_status(
    ticket: Ticket, s: TicketState, policy: Policy, now: datetime, workflow_id: str, policy_version: str
) -> TicketStatus:
    """The answer to the `status` query and to every accepted update."""
    clocks = [sla.status(c, policy.calendars[c.calendar], now) for c in s.clocks.values()]
    pending = [c.deadline for c in clocks if c.state == "running" and c.deadline and not c.breached]
    undelivered = [n for n in s.outbox if n.status != "pending"]
    return TicketStatus(
        ticket_id=ticket.ticket_id,
        workflow_id=workflow_id,
        state=s.state,
        tier=s.tier,
        department=s.department,
        assignee=s.assignee,
        queue=s.queue,
        priority=s.priority,
        clocks=clocks,
        next_deadline=min(pending, default=None),
        sla_breached=s.breaches > 0,
        escalation_count=s.escalations,
        policy_version=policy_version,
        route=s.route.route,
        pending_approvals=[a for a in s.approvals if a.status == "pending"],
        undelivered_count=len(undelivered),
        undelivered=[
            NoticeStatus(
                key=n.key,
                type=n.type,
                endpoint=n.endpoint,
                status=n.status,
                attempts=n.attempts,
                last_error=n.last_error,
                next_attempt_at=n.next_attempt_at if n.status != "failed" else None,
                give_up_at=n.give_up_at,
            )
            for n in undelivered[:20]
        ],
        refused_actions=s.refused,
        internal_errors=s.internal_errors,
        notices_dropped=s.dropped,
    )


def ticket_summary(ticket: Ticket, s: TicketState, opened: datetime, policy_version: str) -> TicketSummary:
    """The workflow's result, and the record store's summary row of a finished ticket."""
    return TicketSummary(
        ticket_id=ticket.ticket_id,
        final_state=s.state,
        tiers_visited=s.tiers_visited,
        departments_visited=s.departments_visited,
        escalations=s.escalations,
        breaches=s.breaches,
        time_to_first_response=(s.first_response_at - opened) if s.first_response_at else None,
        time_to_resolution=(s.resolved_at - opened) if s.resolved_at else None,
        policy_version=policy_version,
        refused_actions=s.refused,
        notices_delivered=s.delivered,
        notices_failed=sum(1 for n in s.outbox if n.status == "failed"),
        notices_dropped=s.dropped,
    )
