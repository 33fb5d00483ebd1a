"""Whole-policy checks that pydantic's field validation cannot express: references between parts,
reachability of routes and ladder steps, escalation cycles, notification wiring.

Each problem is one line that starts with the place it is about, e.g. `routes[2] (vip).tier: ...`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from config.helpdesk_schema import HelpdeskMapping, helpdesk_problems
from config.notification_schema import EVENT_TYPES, TEMPLATE_PARTS, ChannelKind, Notifications
from config.schema import (
    Calendar,
    CcAction,
    Department,
    EscalateAction,
    Ladders,
    LadderStep,
    Permission,
    Priority,
    Role,
    Route,
    Tier,
    TierTargets,
)


class PolicyView(Protocol):
    """What the checks read of a policy (`config.model.Policy`, which runs them while it validates)."""

    @property
    def tiers(self) -> Sequence[Tier]: ...
    @property
    def departments(self) -> Mapping[str, Department]: ...
    @property
    def calendars(self) -> Mapping[str, Calendar]: ...
    @property
    def sla(self) -> TierTargets: ...
    @property
    def ladders(self) -> Ladders: ...
    @property
    def routes(self) -> Sequence[Route]: ...
    @property
    def permissions(self) -> Mapping[Role, Permission]: ...
    @property
    def notifications(self) -> Notifications: ...
    @property
    def helpdesks(self) -> Mapping[str, HelpdeskMapping]: ...

    def next_tier(self, level: int) -> int | None: ...


def check_semantics(policy: PolicyView) -> list[str]:
    """Whole-policy checks pydantic cannot express; each message starts with the place it is about."""
    problems: list[str] = []
    levels = {t.level for t in policy.tiers}

    for tier in policy.tiers:
        if tier.escalates_to is not None and tier.escalates_to not in levels:
            problems.append(f"tiers[level={tier.level}].escalates_to: unknown tier {tier.escalates_to}")
    problems += _escalation_cycles(policy, levels)

    for level in policy.sla:
        if level not in levels:
            problems.append(f"sla.{level}: unknown tier {level}")
    for level in levels:
        missing = [p.value for p in Priority if p not in policy.sla.get(level, {})]
        if missing:
            problems.append(f"sla.{level}: no targets for priorities {', '.join(missing)}")

    for name, cal in policy.calendars.items():
        if cal.always_open and cal.hours:
            problems.append(f"calendars.{name}: always_open calendars take no hours")

    for clock in ("first_response", "resolution"):
        problems += _ladder_problems(policy, clock, getattr(policy.ladders, clock), levels)

    headless = sorted(n for n, d in policy.departments.items() if d.head is None)
    uses_cc = any(
        isinstance(a, CcAction)
        for steps in (policy.ladders.first_response, policy.ladders.resolution)
        for s in steps
        for a in s.actions
    )
    if uses_cc and headless:
        problems.append(f"ladders: cc_department_head is used but department(s) {', '.join(headless)} have no head")

    for i, route in enumerate(policy.routes):
        place = f"routes[{i}] ({route.name})"
        if route.department not in policy.departments:
            problems.append(f"{place}.department: unknown department {route.department!r}")
        if route.calendar not in policy.calendars:
            problems.append(f"{place}.calendar: unknown calendar {route.calendar!r}")
        if route.tier not in levels:
            problems.append(f"{place}.tier: unknown tier {route.tier}")
        for seg, override in route.segments.items():
            if override.tier is not None and override.tier not in levels:
                problems.append(f"{place}.segments.{seg}.tier: unknown tier {override.tier}")
        for j in range(i):
            earlier = policy.routes[j]
            if earlier.match.covers(route.match):
                kind = "catch-all" if earlier.match.is_catch_all() else "route"
                problems.append(f"{place}: shadowed by earlier {kind} routes[{j}] ({earlier.name}); it can never match")
                break
    if not policy.routes[-1].match.is_catch_all():
        problems.append(f"routes[{len(policy.routes) - 1}]: the last route must be a catch-all default")

    for role in policy.permissions:
        if role not in set(Role):
            problems.append(f"permissions.{role}: unknown role")
    problems += _notification_problems(policy.notifications)
    problems += helpdesk_problems(policy)
    return problems


def _notification_problems(n: Notifications) -> list[str]:
    problems: list[str] = []
    channels: dict[str, ChannelKind] = {}
    for i, endpoint in enumerate(n.endpoints):
        if endpoint.name in channels:
            problems.append(f"notifications.endpoints[{i}] ({endpoint.name}): duplicate endpoint name")
        channels[endpoint.name] = endpoint.channel
    for kind, entries in (("roles", n.roles), ("people", n.people)):
        for who, entry in entries.items():
            place = f"notifications.{kind}.{who}"
            for name in entry.endpoints:
                if name not in channels:
                    problems.append(f"{place}.endpoints: unknown endpoint {name!r} (known: {', '.join(channels)})")
                elif channels[name] == ChannelKind.webhook:
                    problems.append(
                        f"{place}.endpoints: {name!r} is a webhook endpoint (webhooks get every event); "
                        "list email, slack or teams endpoints here"
                    )
            if kind == "roles" and entry.email is not None:
                problems.append(f"{place}.email: addresses belong to people, not roles")
    for channel, templates in n.templates.items():
        for event_type, parts in templates.items():
            place = f"notifications.templates.{channel}.{event_type}"
            if event_type != "default" and event_type not in EVENT_TYPES:
                problems.append(f"{place}: unknown event type (known: default, {', '.join(EVENT_TYPES)})")
            for part in parts:
                if part not in TEMPLATE_PARTS[channel]:
                    problems.append(f"{place}.{part}: unknown part (known: {', '.join(TEMPLATE_PARTS[channel])})")
    return problems


def _escalation_cycles(policy: PolicyView, levels: set[int]) -> list[str]:
    problems = []
    for start in sorted(levels):
        seen = [start]
        current: int | None = start
        while current is not None:
            current = policy.next_tier(current) if current in levels else None
            if current is None:
                break
            if current in seen:
                chain = " -> ".join(str(x) for x in [*seen, current])
                problems.append(f"tiers: escalation chain cycles ({chain})")
                return problems
            seen.append(current)
    return problems


def _ladder_problems(policy: PolicyView, clock: str, steps: list[LadderStep], levels: set[int]) -> list[str]:
    problems: list[str] = []
    top = max(levels)
    ids: set[str] = set()
    seen_breach = False
    escalating: LadderStep | None = None
    for i, step in enumerate(steps):
        place = f"ladders.{clock}[{i}] ({step.id})"
        if step.id in ids:
            problems.append(f"{place}: duplicate step id")
        ids.add(step.id)
        if step.is_warning and seen_breach:
            problems.append(f"{place}: a warning listed after its breach step; warnings come first")
        if not step.is_warning:
            seen_breach = True
        if step.at_percent is not None and step.at_percent > 100:
            problems.append(f"{place}: at_percent above 100; use after_breach for steps past the deadline")
        for level in step.tiers or []:
            if level not in levels:
                problems.append(f"{place}.tiers: unknown tier {level}")
        if step.repeat is not None and any(isinstance(a, EscalateAction) for a in step.actions):
            problems.append(f"{place}: an escalate action cannot repeat")
        applies = set(step.tiers) if step.tiers else levels
        if escalating is not None and step.sort_key() > escalating.sort_key():
            esc_tiers = set(escalating.tiers) if escalating.tiers else levels
            # On tiers where the earlier step escalates away (all but the top), this step never fires.
            if clock == "resolution" and applies <= (esc_tiers - {top}):
                problems.append(
                    f"{place}: unreachable, step {escalating.id!r} escalates the ticket away before it fires"
                )
        if clock == "resolution" and any(isinstance(a, EscalateAction) for a in step.actions):
            escalating = escalating or step
    return problems
