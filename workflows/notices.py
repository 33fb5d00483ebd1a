"""Who gets told, and what the outbound event says: pure functions of the ticket's snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from config.policy import ChannelKind, Endpoint, FloodLimit, Policy, Recipient, RecipientChannels
from workflows.messages import Channel, DeliverInput, EndpointRef, FloodRef, OutboundEvent, Person
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
    deadline: Any = None,
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
        subject=ticket.subject,
        deadline=deadline,
    )


def endpoints_for(policy: Policy, event_type: str) -> list[Endpoint]:
    return [e for e in policy.notifications.endpoints if not e.event_types or event_type in e.event_types]


# ---------------------------------------------------------------------- channels
@dataclass(frozen=True)
class Planned:
    """One outbox entry to create: the endpoint by name only (no URL, no credential)."""

    key: str
    activity: str
    endpoint: str
    deliver: DeliverInput


def _rule(policy: Policy, person: Person) -> RecipientChannels | None:
    n = policy.notifications
    own = n.people.get(person.id)
    try:
        by_role = n.roles.get(Recipient(person.role))
    except ValueError:  # a role outside the policy's recipients (the customer): no people channels
        by_role = None
    if own is None:
        return by_role
    if by_role is None or own.endpoints:
        return own
    return RecipientChannels(endpoints=by_role.endpoints, email=own.email, flood=own.flood or by_role.flood)


def _flood(policy: Policy, rule: RecipientChannels) -> FloodLimit | None:
    return rule.flood or policy.notifications.flood


def never_delayed(event: OutboundEvent, person: Person) -> bool:
    """A breach notice to the ticket's own assignee bypasses flood control: it is never held."""
    return event.type == "sla.breached" and person.role == "assignee"


def frozen_templates(policy: Policy, channel: str, event_type: str) -> dict[str, dict[str, str]]:
    """The ticket's own template overrides a notice of this type renders with (the policy it froze,
    not the worker's file at delivery): the event type's and the channel's default, if any."""
    own = policy.notifications.templates.get(channel, {})  # type: ignore[call-overload]
    return {key: dict(parts) for key, parts in own.items() if key in (event_type, "default")}


def plan(policy: Policy, event: OutboundEvent, activity: str) -> tuple[list[Planned], list[dict[str, Any]]]:
    """The outbox entries for one event, and the recipients left out (with the reason).

    Webhook endpoints get every event (filtered by their `event_types`), as before. People (the
    event's recipients and CC) get it on the endpoints their person or role entry names: email one
    message per person (to the address from the policy), chat one message per endpoint."""
    out: list[Planned] = []
    skipped: list[dict[str, Any]] = []
    endpoints = {e.name: e for e in policy.notifications.endpoints}
    for endpoint in endpoints_for(policy, event.type):
        if endpoint.ticket_prefix is not None and not event.ticket_id.startswith(endpoint.ticket_prefix):
            continue  # a helpdesk connector's endpoint: not a ticket of that helpdesk
        if endpoint.channel == ChannelKind.webhook:
            request = DeliverInput(event=event, endpoint=EndpointRef(name=endpoint.name), channel="webhook")
            out.append(Planned(request.key(), activity, endpoint.name, request))
    chats: dict[str, tuple[Person, FloodLimit | None, bool]] = {}
    for person in [*event.recipients, *event.cc]:
        rule = _rule(policy, person)
        if rule is None:
            continue
        for name in rule.endpoints:
            found = endpoints.get(name)
            if found is None or (found.event_types and event.type not in found.event_types):
                continue
            endpoint = found
            limit = _flood(policy, rule)
            urgent = never_delayed(event, person)
            if endpoint.channel == ChannelKind.email:
                address = rule.email or person.email
                if not address:
                    why = "no email address"
                    skipped.append({"recipient": person.id, "role": person.role, "endpoint": name, "why": why})
                    continue
                flood = None
                if limit is not None and not urgent:
                    flood = FloodRef(key=f"{name}:{person.id}", limit=limit.limit, window=limit.window)
                request = DeliverInput(
                    event=event,
                    endpoint=EndpointRef(name=name),
                    channel="email",
                    recipient=Person(role=person.role, id=person.id, email=address),
                    flood=flood,
                    templates=frozen_templates(policy, "email", event.type),
                )
                if all(p.key != request.key() for p in out):
                    out.append(Planned(request.key(), "notify", name, request))
            elif endpoint.channel in (ChannelKind.slack, ChannelKind.teams):
                first = chats.get(name)
                if first is None:
                    chats[name] = (person, limit, urgent)
                elif urgent:
                    chats[name] = (first[0], first[1], True)
    for name, (_person, limit, urgent) in chats.items():
        channel: Channel = "slack" if endpoints[name].channel == ChannelKind.slack else "teams"
        flood = None if limit is None or urgent else FloodRef(key=name, limit=limit.limit, window=limit.window)
        request = DeliverInput(
            event=event,
            endpoint=EndpointRef(name=name),
            channel=channel,
            flood=flood,
            templates=frozen_templates(policy, channel, event.type),
        )
        out.append(Planned(request.key(), "notify", name, request))
    return out, skipped
