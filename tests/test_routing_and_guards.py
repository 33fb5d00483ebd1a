"""The escalation matrix and the action guards, as plain functions (no Temporal)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from config.policy import Priority, load_policy_file
from config.settings import DEFAULT_POLICY
from tests.helpers import ticket
from workflows import guards
from workflows.guards import Rejected
from workflows.models import Escalate, Reassign, RouteDecision, State
from workflows.routing import route_ticket, targets_for
from workflows.state import TicketState

POLICY = load_policy_file(DEFAULT_POLICY)
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def snap(**fields: Any) -> TicketState:
    base: dict[str, Any] = {
        "state": State.open,
        "tier": 1,
        "department": "support",
        "priority": Priority.normal,
        "queue": "support-t1",
        "tier_entered_at": NOW - timedelta(minutes=10),
        "departments_visited": ["support"],
        "route": RouteDecision(
            route="default", reason="", tier=1, department="support", calendar="always", priority=Priority.normal
        ),
    }
    base.update(fields)
    return TicketState.model_validate(base)


def test_public_social_post_gets_higher_priority_and_tighter_targets_than_a_private_message() -> None:
    public = route_ticket(POLICY, ticket(channel="social_public", priority="normal"))
    private = route_ticket(POLICY, ticket(channel="social_private", priority="normal"))
    assert public.route == "public-social" and public.priority == Priority.high
    assert "priority raised from normal to high" in public.reason
    assert private.route == "default" and private.priority == Priority.normal
    tight = targets_for(POLICY, public.route, "standard", 1, public.priority)
    loose = targets_for(POLICY, private.route, "standard", 1, private.priority)
    assert tight.first_response < loose.first_response and tight.resolution < loose.resolution


def test_first_match_wins_and_vip_override_applies() -> None:
    vip = route_ticket(POLICY, ticket(category="billing", customer={"id": "c", "segment": "vip"}))
    assert (vip.route, vip.department, vip.tier, vip.priority) == ("billing", "billing", 2, Priority.high)
    assert "segment override 'vip'" in vip.reason
    plain = route_ticket(POLICY, ticket(category="billing"))
    assert (plain.tier, plain.priority) == (1, Priority.normal)
    assert route_ticket(POLICY, ticket(category="weather")).route == "default"


def test_escalation_needs_a_reason() -> None:
    with pytest.raises(Rejected, match="reason: a reason is required to escalate"):
        guards.check_escalate(
            snap(),
            POLICY,
            Escalate.model_validate({"actor": {"id": "a", "role": "agent"}, "kind": "hierarchical", "reason": " "}),
            NOW + timedelta(hours=1),
        )


def test_min_time_in_tier_and_its_waivers() -> None:
    early = Escalate.model_validate({"actor": {"id": "a", "role": "agent"}, "kind": "hierarchical", "reason": "hard"})
    with pytest.raises(Rejected, match="in tier 1 for PT10M; hierarchical escalation needs PT30M"):
        guards.check_escalate(snap(), POLICY, early, NOW)
    guards.check_escalate(snap(priority=Priority.urgent), POLICY, early, NOW)  # urgent: waived
    lead = early.model_copy(update={"actor": early.actor.model_copy(update={"role": "lead"})})
    guards.check_escalate(snap(), POLICY, lead, NOW)  # leads: waived
    guards.check_escalate(snap(), POLICY, early, NOW + timedelta(minutes=25))  # after 35 minutes: fine


def test_skip_level_refused_unless_allowed() -> None:
    skip = Escalate.model_validate(
        {"actor": {"id": "l", "role": "lead"}, "kind": "hierarchical", "reason": "x", "to_tier": 3}
    )
    with pytest.raises(Rejected, match="to_tier: skip-level escalation to tier 3 is not allowed; next is 2"):
        guards.check_escalate(snap(), POLICY, skip, NOW)
    allowing = POLICY.model_copy(update={"guards": POLICY.guards.model_copy(update={"allow_skip_level": True})})
    guards.check_escalate(snap(policy=allowing), allowing, skip, NOW)


def test_department_bounces_are_capped() -> None:
    back = Escalate.model_validate(
        {"actor": {"id": "l", "role": "lead"}, "kind": "functional", "department": "support", "reason": "not billing"}
    )
    once = snap(department="billing", departments_visited=["support", "billing"])
    guards.check_escalate(once, POLICY, back, NOW)  # first return: 1 bounce, max 1
    twice = snap(department="billing", departments_visited=["support", "billing", "support", "billing"])
    with pytest.raises(Rejected, match=r"bounce back to 'support' \(bounces 3 > max 1\)"):
        guards.check_escalate(twice, POLICY, back, NOW)


def test_who_may_reassign_where() -> None:
    def move(role: str, queue: str) -> Reassign:
        return Reassign.model_validate({"actor": {"id": "x", "role": role}, "to_queue": queue})

    with pytest.raises(Rejected, match="to_queue: role agent may reassign only within queue 'support-t1'"):
        guards.check_reassign(snap(), POLICY, move("agent", "billing-t1"), NOW)
    guards.check_reassign(snap(), POLICY, move("lead", "billing-t1"), NOW)
    with pytest.raises(Rejected, match="to_queue: unknown queue 'nowhere'"):
        guards.check_reassign(snap(), POLICY, move("lead", "nowhere"), NOW)
    guards.check_reassign(
        snap(), POLICY, Reassign.model_validate({"actor": {"id": "x", "role": "agent"}, "to_agent": "bob"}), NOW
    )
