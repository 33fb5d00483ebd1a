"""What each agent action does to a ticket: one handler per action, typed by the action's model.

A handler runs only once the state table (`workflows/transitions.py`) and the policy's guards
(`workflows/guards.py`) have accepted the action, so it never refuses; it changes the draft's
state, records the timeline events and queues notices. The table names the handler of each cell.
"""

from __future__ import annotations

import workflows.guards as guards
import workflows.notices as notices
import workflows.routing as routing
import workflows.sla as sla
from config.policy import Recipient
from workflows.draft import ACK, CUSTOMER, PENDING, SS, Draft
from workflows.models import (
    Acknowledge,
    Approval,
    ChangePriority,
    ClockName,
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
from workflows.outbox import notify
from workflows.state_changes import (
    enter_tier,
    escalate_functional,
    escalate_hierarchical,
    from_to,
    leave_self_service,
    reassign,
    resolve,
)


def acknowledge(d: Draft, a: Acknowledge) -> None:
    if d.state.state == SS:
        leave_self_service(d, f"acknowledged by {a.actor.id}")
    clock = d.state.clocks.get(ClockName.first_response)
    if clock is not None:
        d.state.clocks[ClockName.first_response] = sla.stop(clock, d.calendar(), d.now)
    d.state.state = ACK
    d.state.assignee = d.state.assignee or a.actor.id
    d.state.first_response_at = d.state.first_response_at or d.now
    d.record("acknowledged", by=a.actor, note=a.note)


def reassign_ticket(d: Draft, a: Reassign) -> None:
    if d.state.state == SS:
        leave_self_service(d, f"reassigned by {a.actor.id}")
    reassign(d, a.actor, to_agent=a.to_agent, to_queue=a.to_queue, reason=a.reason or "")


def escalate(d: Draft, a: Escalate) -> None:
    if a.kind == EscalationKind.functional:
        assert a.department is not None  # the guard refuses a functional escalation without one
        escalate_functional(d, a.department, a.actor, a.reason)
    else:
        target = guards.hierarchical_target(d.state, d.policy, a.to_tier)
        escalate_hierarchical(d, target, a.actor, reason=a.reason, rule=None)


def pending_customer(d: Draft, a: PendingCustomer) -> None:
    cal = d.calendar()
    d.state.clocks = {name: sla.pause(c, cal, d.now) for name, c in d.state.clocks.items()}
    d.state.resume_state = d.state.state
    d.state.state = PENDING
    d.record("sla_paused", by=a.actor, note=a.note)


def customer_replied(d: Draft, a: CustomerReplied) -> None:
    if d.state.state == SS:
        d.record("customer_replied", by=CUSTOMER, note=a.note, effect="leaves self-service")
        leave_self_service(d, "the customer still needs help")
        return
    if d.state.state != PENDING:
        d.record("customer_replied", by=CUSTOMER, note=a.note, effect="none: the clocks were running")
        return
    cal = d.calendar()
    d.state.clocks = {name: sla.resume(c, cal, d.now) for name, c in d.state.clocks.items()}
    d.state.state = d.state.resume_state or ACK
    d.state.resume_state = None
    deadlines = {n.value: c.deadline.isoformat() for n, c in d.state.clocks.items() if c.deadline and sla.is_running(c)}
    d.record("sla_resumed", by=CUSTOMER, note=a.note, deadlines=deadlines)


def confirm_solved(d: Draft, a: ConfirmSolved) -> None:
    d.state.self_service_until = None
    resolve(d, CUSTOMER, "solved by self-service" + (f": {a.note}" if a.note else ""))


def change_priority(d: Draft, a: ChangePriority) -> None:
    s = d.state
    before = {n.value: c.deadline.isoformat() if c.deadline else None for n, c in s.clocks.items()}
    old = s.priority
    s.priority = a.priority
    if s.tier > 0:
        targets = routing.targets_for(d.policy, s.route.route, d.ticket.customer.segment, s.tier, a.priority)
        cal = d.calendar()
        s.clocks = {
            n: sla.retarget(c, cal, getattr(targets, n.value)) if c.stopped_at is None else c
            for n, c in s.clocks.items()
        }
    after = {n.value: c.deadline.isoformat() if c.deadline else None for n, c in s.clocks.items()}
    d.record(
        "priority_changed",
        by=a.actor,
        **from_to(old.value, a.priority.value),
        reason=a.reason,
        deadlines_before=before,
        deadlines_after=after,
    )


def resolve_ticket(d: Draft, a: Resolve) -> None:
    resolve(d, a.actor, a.resolution)


def reopen(d: Draft, a: Reopen) -> None:
    d.state.resolved_at = None
    d.state.reopens += 1
    d.record("reopened", by=a.actor, reason=a.reason)
    tier = d.state.tier if d.state.tier > 0 else d.state.route.tier
    enter_tier(d, tier, d.state.department, why=f"reopened: {a.reason}")
    notify(d, "ticket.reopened", reason=a.reason, recipients=notices.recipients(d.policy, d.state, [Recipient.queue]))


def request_approval(d: Draft, a: RequestApproval) -> None:
    approval = Approval(
        id=f"apr-{len(d.state.approvals) + 1}",
        kind=a.kind,
        amount=a.amount,
        requested_by=a.actor.id,
        reason=a.reason[:500],
        requested_at=d.now,
        deadline=d.now + d.policy.approvals.timeout,
    )
    if guards.within_authority(d.policy, a):
        approval.status, approval.decided_by = "approved", a.actor.id
        d.state.approvals.append(approval)
        d.record(
            "approval_granted",
            by=a.actor,
            approval_id=approval.id,
            within_authority=True,
            amount=a.amount,
            kind=a.kind,
        )
        return
    d.state.approvals.append(approval)
    d.record("approval_requested", by=a.actor, **approval.model_dump(mode="json"))
    notify(
        d,
        "approval.requested",
        reason=a.reason,
        rule="permissions.authority_limit",
        recipients=notices.department_head(d.policy, d.state.department),
        data={
            "approval_id": approval.id,
            "kind": a.kind,
            "amount": a.amount,
            "deadline": approval.deadline.isoformat(),
        },
    )


def decide_approval(d: Draft, a: DecideApproval) -> None:
    approval = next(x for x in d.state.approvals if x.id == a.approval_id)
    approval.status = "approved" if a.approved else "rejected"
    approval.decided_by = a.actor.id
    d.record(f"approval_{approval.status}", by=a.actor, approval_id=approval.id, note=a.note)


def redeliver(d: Draft, a: Redeliver) -> None:
    keys = []
    for notice in d.state.outbox:
        if notice.status == "pending":
            continue
        notice.status = "undelivered"
        notice.next_attempt_at = d.now
        notice.give_up_at = d.now + d.policy.notifications.retry_for
        keys.append(notice.key)
    d.record("redelivery_requested", by=a.actor, reason=a.reason, notices=keys)


def discard_notices(d: Draft, a: DiscardNotices) -> None:
    gone = [n for n in d.state.outbox if n.status == "failed"]
    d.state.outbox = [n for n in d.state.outbox if n.status != "failed"]
    d.state.dropped += len(gone)
    d.record(
        "notifications_discarded",
        by=a.actor,
        reason=a.reason,
        notices=[{"key": n.key, "type": n.type, "endpoint": n.endpoint, "error": n.last_error} for n in gone],
    )
