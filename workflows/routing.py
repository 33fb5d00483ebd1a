"""The escalation matrix: which route a ticket takes, and which SLA targets apply where.

Pure functions of the policy and the ticket, so the choice can be tested, simulated and explained
("why did this go to billing tier 2?") without a Temporal server.
"""

from __future__ import annotations

from config.policy import Policy, Priority, Route, Targets
from workflows.models import RouteDecision, Ticket


def match_route(policy: Policy, ticket: Ticket) -> tuple[int, Route]:
    """First route whose every listed dimension contains the ticket's value (the last one matches all)."""
    for index, route in enumerate(policy.routes):
        m = route.match
        if m.channel and ticket.channel not in m.channel:
            continue
        if m.category and ticket.category not in m.category:
            continue
        if m.priority and ticket.priority not in m.priority:
            continue
        if m.segment and ticket.customer.segment not in m.segment:
            continue
        return index, route
    raise LookupError("no route matched; the policy's last route must be a catch-all")  # pragma: no cover


def _explain(index: int, route: Route, ticket: Ticket) -> str:
    m = route.match
    if m.is_catch_all():
        return f"routes[{index}] ({route.name}) is the default; no earlier route matched"
    parts = []
    if m.channel:
        parts.append(f"channel={ticket.channel.value}")
    if m.category:
        parts.append(f"category={ticket.category}")
    if m.priority:
        parts.append(f"priority={ticket.priority.value}")
    if m.segment:
        parts.append(f"segment={ticket.customer.segment}")
    return f"routes[{index}] ({route.name}) matched on " + ", ".join(parts)


def raise_priority(current: Priority, floor: Priority | None) -> Priority:
    if floor is None or current.rank >= floor.rank:
        return current
    return floor


def route_ticket(policy: Policy, ticket: Ticket) -> RouteDecision:
    """Choose the route, then apply its segment override (for example `vip`)."""
    index, route = match_route(policy, ticket)
    priority = raise_priority(ticket.priority, route.priority_floor)
    tier = route.tier
    reason = _explain(index, route, ticket)
    override = route.segments.get(ticket.customer.segment)
    if override is not None:
        priority = raise_priority(priority, override.priority_floor)
        tier = override.tier if override.tier is not None else tier
        reason += f"; segment override {ticket.customer.segment!r} applied"
    if priority != ticket.priority:
        reason += f"; priority raised from {ticket.priority.value} to {priority.value}"
    return RouteDecision(
        route=route.name,
        reason=reason,
        tier=tier,
        department=route.department,
        calendar=route.calendar,
        priority=priority,
        self_service=route.self_service is not None,
    )


def route_named(policy: Policy, name: str) -> Route:
    return next(r for r in policy.routes if r.name == name)


def targets_for(policy: Policy, route_name: str, segment: str, tier: int, priority: Priority) -> Targets:
    """Targets by precedence: segment override, then route override, then the policy's sla table."""
    route = route_named(policy, route_name)
    override = route.segments.get(segment)
    for table in (override.targets if override else {}, route.targets, policy.sla):
        found = table.get(tier, {}).get(priority)
        if found is not None:
            return found
    # A tier the sla table lacks (validation prevents this) falls back to the nearest lower tier.
    lower = [lv for lv in policy.sla if lv <= tier] or list(policy.sla)
    return policy.sla[max(lower)][priority]


def queue_for(policy: Policy, department: str, tier: int) -> str:
    """The department's queue for a tier, or a conventional name when the policy names none."""
    queues = policy.departments[department].queues
    return queues.get(tier) or f"{department}-tier{tier}"
