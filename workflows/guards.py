"""Guards on agent actions: what the policy allows, as pure checks that say which field is wrong and why.

Which actions a ticket takes in which state is the table in `workflows/transitions.py`; these checks
come after it and judge the action against the policy (roles, reasons, departments, limits). Each
returns silently or raises `Rejected`; the decision function records the refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from config.policy import Policy, Role
from workflows.durations import iso_duration
from workflows.models import (
    Acknowledge,
    ChangePriority,
    ConfirmSolved,
    CustomerReplied,
    DecideApproval,
    DiscardNotices,
    Escalate,
    EscalationKind,
    PendingCustomer,
    Reassign,
    Redeliver,
    Reopen,
    RequestApproval,
    Resolve,
)
from workflows.state import TicketState

MAX_APPROVALS = 20


class Rejected(ValueError):
    """An action the policy or the ticket's state refuses; the ticket stays as it was."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def _needs_reason(policy: Policy, reason: str | None, what: str) -> None:
    if policy.guards.require_reason and not (reason or "").strip():
        raise Rejected("reason", f"a reason is required to {what}")


def department_of_queue(policy: Policy, queue: str) -> str | None:
    for name, dept in policy.departments.items():
        if queue in dept.queues.values() or queue.startswith(f"{name}-tier"):
            return name
    return None


def check_acknowledge(snap: TicketState, policy: Policy, action: Acknowledge, now: datetime) -> None:
    return None


def check_reassign(snap: TicketState, policy: Policy, action: Reassign, now: datetime) -> None:
    if not action.to_agent and not action.to_queue:
        raise Rejected("to_agent", "give to_agent or to_queue")
    if action.to_agent == snap.assignee and action.to_queue in (None, snap.queue) and snap.queue is not None:
        raise Rejected("to_agent", f"the ticket is already with {snap.assignee!r} in queue {snap.queue!r}")
    scope = policy.permission(action.actor.role).reassign
    if scope == "none":
        raise Rejected("actor.role", f"role {action.actor.role.value} may not reassign")
    if action.to_queue is None or action.to_queue == snap.queue:
        return
    target = department_of_queue(policy, action.to_queue)
    if target is None:
        raise Rejected("to_queue", f"unknown queue {action.to_queue!r}")
    if scope == "own_queue" and snap.queue is None:
        role = action.actor.role.value
        raise Rejected("to_queue", f"role {role} may not move a Tier 0 ticket to a queue; ask a lead")
    if scope == "own_queue":
        raise Rejected(
            "to_queue",
            f"role {action.actor.role.value} may reassign only within queue {snap.queue!r}; ask a lead",
        )
    if scope == "own_department" and target != snap.department:
        raise Rejected(
            "to_queue",
            f"role {action.actor.role.value} may not move the ticket out of department {snap.department!r}",
        )


def hierarchical_target(snap: TicketState, policy: Policy, to_tier: int | None) -> int:
    """The tier a hierarchical escalation goes to. From Tier 0 (self-service) the first tier is the
    route's own tier: leaving self-service never skips the tier the matrix chose."""
    nxt = snap.route.tier if snap.tier == 0 else policy.next_tier(snap.tier)
    if to_tier is None:
        if nxt is None:
            raise Rejected("kind", f"tier {snap.tier} is the top tier; there is nowhere higher")
        return nxt
    if to_tier not in policy.tier_levels():
        raise Rejected("to_tier", f"unknown tier {to_tier}")
    if to_tier <= snap.tier:
        raise Rejected("to_tier", f"tier {to_tier} is not above the current tier {snap.tier}")
    below_route = snap.tier == 0 and nxt is not None and to_tier < nxt
    if to_tier != nxt and not policy.guards.allow_skip_level and not below_route:
        raise Rejected("to_tier", f"skip-level escalation to tier {to_tier} is not allowed; next is {nxt}")
    return to_tier


def check_escalate(snap: TicketState, policy: Policy, action: Escalate, now: datetime) -> None:
    role = action.actor.role
    if not policy.permission(role).escalate:
        raise Rejected("actor.role", f"role {role.value} may not escalate")
    _needs_reason(policy, action.reason, "escalate")
    if action.kind == EscalationKind.functional:
        if not action.department:
            raise Rejected("department", "a functional escalation names the department")
        if action.department not in policy.departments:
            known = ", ".join(sorted(policy.departments))
            raise Rejected("department", f"unknown department {action.department!r} (known: {known})")
        if action.department == snap.department:
            raise Rejected("department", f"the ticket is already in {action.department!r}")
        revisits = _revisits(snap.departments_visited) + (1 if action.department in snap.departments_visited else 0)
        if revisits > policy.guards.max_department_bounces:
            raise Rejected(
                "department",
                f"the ticket would bounce back to {action.department!r} "
                f"(bounces {revisits} > max {policy.guards.max_department_bounces}); ask a manager",
            )
        return
    hierarchical_target(snap, policy, action.to_tier)
    waived = (
        snap.priority in policy.guards.min_time_waived_for_priorities
        or role in policy.guards.min_time_waived_for_roles
        or role == Role.system
        or snap.tier == 0  # leaving self-service is never too fast
    )
    in_tier = now - snap.tier_entered_at
    if not waived and in_tier < policy.guards.min_time_in_tier:
        raise Rejected(
            "kind",
            f"the ticket has been in tier {snap.tier} for {_fmt(in_tier)}; "
            f"hierarchical escalation needs {_fmt(policy.guards.min_time_in_tier)} "
            "(waived for urgent priority, leads and managers)",
        )


def _revisits(visited: list[str]) -> int:
    seen: set[str] = set()
    count = 0
    for d in visited:
        if d in seen:
            count += 1
        seen.add(d)
    return count


def _fmt(delta: timedelta) -> str:
    return iso_duration(timedelta(seconds=int(delta.total_seconds())))


def check_pending_customer(snap: TicketState, policy: Policy, action: PendingCustomer, now: datetime) -> None:
    return None


def check_customer_replied(snap: TicketState, policy: Policy, action: CustomerReplied, now: datetime) -> None:
    return None


def check_confirm_solved(snap: TicketState, policy: Policy, action: ConfirmSolved, now: datetime) -> None:
    return None


def check_change_priority(snap: TicketState, policy: Policy, action: ChangePriority, now: datetime) -> None:
    _needs_reason(policy, action.reason, "change the priority")
    if action.priority == snap.priority:
        raise Rejected("priority", f"the priority is already {action.priority.value}")


def check_resolve(snap: TicketState, policy: Policy, action: Resolve, now: datetime) -> None:
    if any(a.status == "pending" for a in snap.approvals):
        raise Rejected("state", "an approval is still pending; decide it before resolving")


def check_reopen(snap: TicketState, policy: Policy, action: Reopen, now: datetime) -> None:
    _needs_reason(policy, action.reason, "reopen")
    if snap.resolved_at is not None and now >= snap.resolved_at + policy.reopen_window:
        closed = (snap.resolved_at + policy.reopen_window).isoformat()
        raise Rejected("state", f"the reopen window closed at {closed}; open a new ticket")


def check_request_approval(snap: TicketState, policy: Policy, action: RequestApproval, now: datetime) -> None:
    _needs_reason(policy, action.reason, f"request a {action.kind}")
    if len(snap.approvals) >= MAX_APPROVALS:
        raise Rejected("approval_id", f"this ticket already has {MAX_APPROVALS} approvals; open a new ticket")


def check_redeliver(snap: TicketState, policy: Policy, action: Redeliver, now: datetime) -> None:
    if action.actor.role not in (Role.system, Role.manager, Role.lead):
        raise Rejected("actor.role", f"role {action.actor.role.value} may not redeliver notices; ask a lead")
    if not any(n.status != "pending" for n in snap.outbox):
        raise Rejected("state", "no undelivered notices on this ticket")


def check_discard_notices(snap: TicketState, policy: Policy, action: DiscardNotices, now: datetime) -> None:
    if action.actor.role not in (Role.system, Role.manager, Role.lead):
        raise Rejected("actor.role", f"role {action.actor.role.value} may not discard notices; ask a lead")
    _needs_reason(policy, action.reason, "discard notices")
    if not any(n.status == "failed" for n in snap.outbox):
        raise Rejected("state", "no given-up notices on this ticket (only those can be discarded)")


def check_decide_approval(snap: TicketState, policy: Policy, action: DecideApproval, now: datetime) -> None:
    approval = next((a for a in snap.approvals if a.id == action.approval_id), None)
    if approval is None:
        raise Rejected("approval_id", f"no approval {action.approval_id!r} on this ticket")
    if approval.status != "pending":
        raise Rejected("approval_id", f"approval {approval.id} is already {approval.status}")
    perm = policy.permission(action.actor.role)
    if not perm.decide_approvals:
        raise Rejected("actor.role", f"role {action.actor.role.value} may not decide approvals")
    if perm.authority_limit < approval.amount:
        raise Rejected(
            "actor.role",
            f"{approval.kind} of {approval.amount:g} is above the {action.actor.role.value} "
            f"authority limit of {perm.authority_limit:g}",
        )


def within_authority(policy: Policy, action: RequestApproval) -> bool:
    return policy.permission(action.actor.role).authority_limit >= action.amount


_CHECKS: dict[str, Callable[[TicketState, Policy, Any, datetime], None]] = {
    "acknowledge": check_acknowledge,
    "escalate": check_escalate,
    "redeliver": check_redeliver,
    "discard_notices": check_discard_notices,
    "reassign": check_reassign,
    "pending_customer": check_pending_customer,
    "customer_replied": check_customer_replied,
    "confirm_solved": check_confirm_solved,
    "change_priority": check_change_priority,
    "resolve": check_resolve,
    "reopen": check_reopen,
    "request_approval": check_request_approval,
    "decide_approval": check_decide_approval,
}


def check(name: str, snap: TicketState, policy: Policy, action: Any, now: datetime) -> None:
    """Run the guard of action `name`; raises `Rejected` with the field and the reason."""
    _CHECKS[name](snap, policy, action, now)
