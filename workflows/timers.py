"""Time passing: what is due when, and what a `Tick` does (ladder steps, breaches, waits that end).

The SLA clocks live in `workflows/sla.py` (business time); this module turns the policy's ladders
into due instants (`next_due`, which the workflow sleeps until) and applies everything that is due
at a tick, in time order: breaches, ladder steps and their actions, the end of the Tier 0
self-service wait, approval deadlines. `finished` says when a resolved ticket may complete.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import workflows.notices as notices
import workflows.routing as routing
import workflows.sla as sla
from config.policy import CcAction, EscalateAction, LadderStep, NotifyAction, Policy, ReassignAction
from workflows.draft import RESOLVED, SS, SYSTEM, Draft
from workflows.models import Approval, ClockName
from workflows.outbox import cc_head, notify
from workflows.state import TicketState
from workflows.state_changes import escalate_hierarchical, leave_self_service, reassign


def next_due(state: TicketState, policy: Policy) -> tuple[datetime, str] | None:
    """The nearest instant something must happen, with a label for the timer in the Web UI.

    Outbox retries are not included: the workflow adds them, since it knows which are in flight."""
    candidates: list[tuple[datetime, str]] = []
    for due in pending_steps(state, policy):
        what = f"{due.clock.value} {'breach' if due.step is None else 'step ' + due.step.id}"
        candidates.append((due.at, what))
    if state.state == SS and state.self_service_until:
        candidates.append((state.self_service_until, "self-service wait ends"))
    for approval in state.approvals:
        if approval.status == "pending":
            candidates.append((approval.deadline, f"approval {approval.id} deadline"))
    if state.state == RESOLVED and state.resolved_at:
        closes = state.resolved_at + policy.reopen_window
        candidates.append((closes, "reopen window closes"))
    return min(candidates, default=None)


def tick_due(state: TicketState, policy: Policy, now: datetime) -> bool:
    """Would a `Tick` at `now` fire anything? (The reopen window's end is the workflow's to act on.)"""
    if state.state == SS and state.self_service_until and state.self_service_until <= now:
        return True
    if any(a.status == "pending" and a.deadline <= now for a in state.approvals):
        return True
    return any(d.at <= now for d in pending_steps(state, policy))


def pending_steps(state: TicketState, policy: Policy) -> list[sla.Due]:
    items: list[sla.Due] = []
    for name, clock in state.clocks.items():
        items += sla.pending(clock, policy.calendars[clock.calendar], steps_for(state, policy, name))
    return sorted(items, key=lambda d: d.at)


def steps_for(state: TicketState, policy: Policy, clock: ClockName) -> list[LadderStep]:
    steps: list[LadderStep] = getattr(policy.ladders, clock.value)
    return [s for s in steps if s.tiers is None or state.tier in s.tiers]


def finished(state: TicketState, policy: Policy, now: datetime) -> bool:
    """Resolved, its reopen window over, and its outbox empty: a ticket never completes with a notice
    undelivered. Given-up ones keep it open (and listed) until an operator redelivers or discards them."""
    if state.state != RESOLVED or state.resolved_at is None:
        return False
    if state.outbox:
        return False
    return now >= state.resolved_at + policy.reopen_window


def skip_due(state: TicketState, policy: Policy, now: datetime) -> list[str]:
    """Mark whatever is due as done without doing it: after an internal error, so the same bug does not spin."""
    skipped: list[str] = []
    for name, clock in list(state.clocks.items()):
        steps: list[LadderStep] = getattr(policy.ladders, name.value)
        for due in sla.pending(clock, policy.calendars[clock.calendar], steps):
            if due.at > now:
                continue
            if due.step is None:
                clock = clock.model_copy(update={"breached_at": due.at})
            else:
                clock = sla.mark_fired(clock, due.step)
            skipped.append(f"{name.value}:{due.step.id if due.step else 'breach'}")
        state.clocks[name] = clock
    if state.self_service_until is not None and state.self_service_until <= now:
        state.self_service_until = now + timedelta(hours=1)
        skipped.append("self_service_until")
    for approval in state.approvals:
        if approval.status == "pending" and approval.deadline <= now:
            approval.status = "timed_out"
            skipped.append(f"approval:{approval.id}")
    return skipped


# ---------------------------------------------------------------------- a tick
def tick(d: Draft) -> None:
    """Do everything that is due now, in time order; an escalation re-plans what follows."""
    for _ in range(100):  # bounded: each pass fires at least one item or stops
        if d.state.state == SS and d.state.self_service_until and d.now >= d.state.self_service_until:
            d.record("self_service_expired", by=SYSTEM)
            leave_self_service(d, "no confirmation from the customer in time")
            continue
        expired = [a for a in d.state.approvals if a.status == "pending" and d.now >= a.deadline]
        if expired:
            approval_timed_out(d, expired[0])
            continue
        due = [x for x in pending_steps(d.state, d.policy) if x.at <= d.now]
        if not due:
            return
        fire(d, due[0])


def fire(d: Draft, due: sla.Due) -> None:
    clock = d.state.clocks[due.clock]
    if due.step is None:
        # Recorded at its deadline, even when the worker only got to it later.
        d.state.clocks[due.clock] = clock.model_copy(update={"breached_at": due.at})
        d.state.breaches += 1
        d.record(
            "sla_breached",
            by=SYSTEM,
            when=due.at,
            clock=due.clock.value,
            deadline=due.at.isoformat(),
            noticed_at=d.now.isoformat(),
        )
        return
    step = due.step
    times = 1
    if step.repeat is not None:
        # After an outage, the repeats that fell due meanwhile collapse into one notice.
        times = 1 + int((d.now - due.at) / step.repeat.interval)
        if step.repeat.count is not None:
            times = min(times, step.repeat.count + 1 - clock.fired.get(step.id, 0))
        times = max(times, 1)
    fired = clock.fired.get(step.id, 0) + times
    d.state.clocks[due.clock] = clock.model_copy(update={"fired": {**clock.fired, step.id: fired}})
    steps: list[LadderStep] = getattr(d.policy.ladders, due.clock.value)
    rule = f"ladders.{due.clock.value}[{steps.index(step)}] ({step.id})"
    when = f"at {step.at_percent:g}% of target" if step.is_warning else "after breach"
    reason = f"{due.clock.value} SLA {when}" + (f" (repeat {fired - 1})" if fired > 1 else "")
    missed = times - 1
    if missed:
        reason += f"; {missed} earlier reminder(s) missed while the worker was away"
    d.record("ladder_step", by=SYSTEM, rule=rule, clock=due.clock.value, reason=reason, missed=missed)
    for action in step.actions:
        ladder_action(d, action, step, rule, reason, missed)


def ladder_action(d: Draft, action: object, step: LadderStep, rule: str, reason: str, missed: int) -> None:
    if isinstance(action, NotifyAction):
        kind = "sla.warning" if step.is_warning else "sla.breached"
        data = {"missed": missed} if missed else None
        recipients = notices.recipients(d.policy, d.state, action.roles)
        notify(d, kind, reason=reason, rule=rule, recipients=recipients, data=data)
    elif isinstance(action, ReassignAction):
        queue = routing.queue_for(d.policy, d.state.department, d.state.tier)
        if d.state.queue == queue and d.state.assignee is None:
            d.record("reassign_skipped", by=SYSTEM, rule=rule, reason=f"already unassigned in {queue}")
            return
        reassign(d, SYSTEM, to_agent=None, to_queue=queue, reason=reason, rule=rule)
    elif isinstance(action, EscalateAction):
        target = d.policy.next_tier(d.state.tier)
        if target is None:
            d.record("escalation_skipped", by=SYSTEM, rule=rule, reason="already at the top tier")
            return
        escalate_hierarchical(d, target, SYSTEM, reason=reason, rule=rule)
    elif isinstance(action, CcAction):
        cc_head(d, reason=reason, rule=rule)


def approval_timed_out(d: Draft, approval: Approval) -> None:
    approval.status = "timed_out"
    reason = f"{approval.kind} approval {approval.id} not decided by {approval.deadline.isoformat()}"
    d.record("approval_timed_out", by=SYSTEM, approval_id=approval.id, reason=reason)
    target = d.policy.next_tier(d.state.tier) if d.state.tier > 0 else d.state.route.tier
    if target is not None:
        escalate_hierarchical(d, target, SYSTEM, reason=reason, rule="approvals.timeout")
    cc_head(d, reason=reason, rule="approvals.timeout")
