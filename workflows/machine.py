"""The ticket's state machine: every decision of `TicketEscalation`, without the Temporal wiring.

`workflows/ticket.py` imports this module through the sandbox's passthrough, so it is loaded once
per worker process instead of once per ticket (the sandbox re-executes the workflow's own module
for every workflow it creates; keeping that module small is most of a ticket's start-up cost).
Passthrough code is not policed by the sandbox, so the rules are on us and on the replay tests:
deterministic only, time from `workflow.now()`, no I/O, no randomness, no mutable module state.
"""

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

from activities.models import (
    DeliverInput,
    OutboundEvent,
    Person,
    PolicySnapshot,
    ReassignInput,
)
from config.policy import (
    CcAction,
    EscalateAction,
    LadderStep,
    NotifyAction,
    Policy,
    ReassignAction,
    Recipient,
    policy_from_snapshot,
)
from workflows import guards, notices, routing, sla
from workflows import search_attributes as sa
from workflows.guards import Rejected
from workflows.models import (
    Acknowledge,
    Actor,
    Approval,
    ChangePriority,
    ClockName,
    ConfirmSolved,
    CustomerReplied,
    DecideApproval,
    Escalate,
    EscalationKind,
    PendingCustomer,
    Reassign,
    Reopen,
    RequestApproval,
    Resolve,
    State,
    Ticket,
    TicketSnapshot,
    TicketStatus,
    TicketSummary,
    Timeline,
    TimelineEvent,
)

NOTIFY_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=15),
    "schedule_to_close_timeout": timedelta(minutes=30),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=2),
        maximum_attempts=12,
    ),
}
POLICY_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=10),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=5),
}
_UNSET = object()
_LOGGED_AT_INFO = frozenset(
    {
        "routed",
        "sla_breached",
        "escalated",
        "reassigned",
        "resolved",
        "reopened",
        "action_rejected",
        "notification_failed",
        "helpdesk_update_failed",
        "approval_timed_out",
    }
)
SYSTEM = Actor(id="escalation-policy", role="system")


class TicketMachine:
    """State and decisions of one ticket; `TicketEscalation` adds the handlers and the main loop."""

    def __init__(self, ticket: Ticket) -> None:
        self._ticket = ticket.model_copy(update={"carried_state": None})
        self._snap: TicketSnapshot | None = ticket.carried_state
        self._woken = False  # set by actions: the schedule may have changed, re-plan now
        self._published: dict[str, Any] = {}
        self._effects: set[asyncio.Task[None]] = set()

    @property
    def snap(self) -> TicketSnapshot:
        if self._snap is None:  # only queries can get here: handlers wait for the opening
            raise RuntimeError("the ticket has not been opened yet; its policy is loading")
        return self._snap

    @property
    def policy(self) -> Policy:
        return self.snap.policy

    def _open(self, snapshot: PolicySnapshot) -> None:
        """Route the ticket and start its clocks (or its Tier 0 self-service wait)."""
        now = workflow.now()
        policy = policy_from_snapshot(snapshot.fingerprint, snapshot.document)
        decision = routing.route_ticket(policy, self._ticket)
        self._snap = TicketSnapshot(
            policy=policy,
            policy_version=snapshot.version,
            route=decision,
            state=State.open,
            tier=decision.tier,
            department=decision.department,
            priority=decision.priority,
            tier_entered_at=now,
        )
        opened_at = self._ticket.opened_at or now
        self._record(
            "ticket_opened",
            detail={
                "policy_version": snapshot.version,
                "source": self._ticket.source,
                "opened_at": opened_at.isoformat(),
            },
        )
        self._record("routed", detail=decision.model_dump(mode="json"))
        route = routing.route_named(policy, decision.route)
        if route.self_service is not None:
            self.snap.state = State.self_service
            self.snap.tier = 0
            self.snap.self_service_until = now + route.self_service.wait
            self._record(
                "self_service_offered",
                detail={"kb_url": route.self_service.kb_url, "until": self.snap.self_service_until.isoformat()},
            )
            customer = self._ticket.customer
            self._notify(
                "ticket.self_service",
                reason="self-service answer offered",
                recipients=[Person(role="customer", id=customer.id, email=customer.email)],
                data={"kb_url": route.self_service.kb_url},
            )
            self._publish()
            return
        self._enter_tier(decision.tier, decision.department, start=opened_at, why="initial route")

    def _finished(self) -> bool:
        snap = self.snap
        if snap.state != State.resolved or snap.resolved_at is None:
            return False
        return workflow.now() >= snap.resolved_at + self.policy.reopen_window

    # ------------------------------------------------------------------ timers
    def _next_due(self) -> tuple[datetime, str] | None:
        """The nearest instant something must happen, with a label for the timer in the Web UI."""
        snap = self.snap
        candidates: list[tuple[datetime, str]] = []
        for due in self._pending_steps():
            what = f"{due.clock.value} {'breach' if due.step is None else 'step ' + due.step.id}"
            candidates.append((due.at, what))
        if snap.state == State.self_service and snap.self_service_until:
            candidates.append((snap.self_service_until, "self-service wait ends"))
        for approval in snap.approvals:
            if approval.status == "pending":
                candidates.append((approval.deadline, f"approval {approval.id} deadline"))
        if snap.state == State.resolved and snap.resolved_at:
            candidates.append((snap.resolved_at + self.policy.reopen_window, "reopen window closes"))
        return min(candidates, default=None)

    def _pending_steps(self) -> list[sla.Due]:
        items: list[sla.Due] = []
        for name, clock in self.snap.clocks.items():
            cal = self.policy.calendars[clock.calendar]
            items += sla.pending(clock, cal, self._steps(name))
        return sorted(items, key=lambda d: d.at)

    def _steps(self, clock: ClockName) -> list[LadderStep]:
        steps: list[LadderStep] = getattr(self.policy.ladders, clock.value)
        return [s for s in steps if s.tiers is None or self.snap.tier in s.tiers]

    def _fire_due(self) -> None:
        """Do everything that is due now, in time order; an escalation re-plans what follows."""
        snap = self.snap
        for _ in range(100):  # bounded: each pass fires at least one item or stops
            now = workflow.now()
            if snap.state == State.self_service and snap.self_service_until and now >= snap.self_service_until:
                self._record("self_service_expired")
                self._leave_self_service("no confirmation from the customer in time")
                continue
            expired = [a for a in snap.approvals if a.status == "pending" and now >= a.deadline]
            if expired:
                self._approval_timed_out(expired[0])
                continue
            due = [d for d in self._pending_steps() if d.at <= now]
            if not due:
                return
            self._fire(due[0])

    def _fire(self, due: sla.Due) -> None:
        snap = self.snap
        clock = snap.clocks[due.clock]
        now = workflow.now()
        if due.step is None:
            snap.clocks[due.clock] = clock.model_copy(update={"breached_at": now})
            snap.breaches += 1
            self._record(
                "sla_breached",
                detail={"clock": due.clock.value, "deadline": clock.deadline.isoformat() if clock.deadline else None},
            )
            self._publish()
            return
        step = due.step
        snap.clocks[due.clock] = sla.mark_fired(clock, step)
        steps: list[LadderStep] = getattr(self.policy.ladders, due.clock.value)
        rule = f"ladders.{due.clock.value}[{steps.index(step)}] ({step.id})"
        fired = snap.clocks[due.clock].fired[step.id]
        when = f"at {step.at_percent:g}% of target" if step.is_warning else "after breach"
        reason = f"{due.clock.value} SLA {when}" + (f" (repeat {fired - 1})" if fired > 1 else "")
        self._record("ladder_step", detail={"rule": rule, "clock": due.clock.value, "reason": reason})
        for action in step.actions:
            self._ladder_action(action, step, rule, reason)
        self._publish()

    def _ladder_action(self, action: object, step: LadderStep, rule: str, reason: str) -> None:
        snap = self.snap
        if isinstance(action, NotifyAction):
            kind = "sla.warning" if step.is_warning else "sla.breached"
            self._notify(kind, reason=reason, rule=rule, recipients=notices.recipients(self.policy, snap, action.roles))
        elif isinstance(action, ReassignAction):
            queue = routing.queue_for(self.policy, snap.department, snap.tier)
            self._reassign(SYSTEM, to_agent=None, to_queue=queue, reason=reason, rule=rule)
        elif isinstance(action, EscalateAction):
            target = self.policy.next_tier(snap.tier)
            if target is None:
                self._record("escalation_skipped", detail={"rule": rule, "reason": "already at the top tier"})
                return
            self._escalate_hierarchical(target, SYSTEM, reason=reason, rule=rule)
        elif isinstance(action, CcAction):
            self._cc_head(reason=reason, rule=rule)

    # ------------------------------------------------------------------ state changes
    def _enter_tier(self, tier: int, department: str, *, start: datetime | None = None, why: str) -> None:
        """Put the ticket in a tier and department; both clocks start over for the new owners."""
        snap = self.snap
        now = workflow.now()
        start = min(start or now, now)
        snap.tier, snap.department = tier, department
        snap.tier_entered_at = now
        snap.state = State.open
        snap.assignee = None
        snap.queue = routing.queue_for(self.policy, department, tier)
        snap.tiers_visited.append(tier)
        if not snap.departments_visited or snap.departments_visited[-1] != department:
            snap.departments_visited.append(department)
        self._start_clock(ClockName.first_response, start)
        self._start_clock(ClockName.resolution, start)
        self._record("tier_entered", detail={"tier": tier, "department": department, "queue": snap.queue, "why": why})
        self._publish()

    def _start_clock(self, name: ClockName, start: datetime) -> None:
        snap = self.snap
        calendar = snap.route.calendar
        targets = routing.targets_for(
            self.policy, snap.route.route, self._ticket.customer.segment, snap.tier, snap.priority
        )
        target: timedelta = getattr(targets, name.value)
        clock = sla.start_clock(name, calendar, self.policy.calendars[calendar], target, start)
        snap.clocks[name] = clock
        self._record(
            "sla_started",
            detail={
                "clock": name.value,
                "target": str(target),
                "calendar": calendar,
                "deadline": clock.deadline.isoformat() if clock.deadline else None,
            },
        )

    def _leave_self_service(self, why: str) -> None:
        snap = self.snap
        snap.self_service_until = None
        self._enter_tier(snap.route.tier, snap.route.department, why=why)

    def _escalate_hierarchical(self, tier: int, actor: Actor, *, reason: str, rule: str | None) -> None:
        snap = self.snap
        before = snap.tier
        snap.escalations += 1
        self._enter_tier(tier, snap.department, why=f"hierarchical escalation: {reason}")
        self._record(
            "escalated",
            actor=actor,
            detail={
                "kind": "hierarchical",
                "from_tier": before,
                "to_tier": tier,
                "department": snap.department,
                "rule": rule,
                "reason": reason,
            },
        )
        self._notify(
            "ticket.escalated",
            reason=reason,
            rule=rule,
            recipients=notices.recipients(self.policy, snap, [Recipient.queue, Recipient.team_lead]),
            data={"kind": "hierarchical", "from_tier": before, "to_tier": tier, "actor": actor.id},
        )

    def _escalate_functional(self, department: str, actor: Actor, reason: str) -> None:
        """To another department at the same tier: it must respond anew; the resolution clock runs on."""
        snap = self.snap
        before = snap.department
        snap.escalations += 1
        snap.department = department
        snap.departments_visited.append(department)
        snap.queue = routing.queue_for(self.policy, department, snap.tier)
        snap.assignee = None
        snap.state = State.open if snap.state != State.pending_customer else snap.state
        self._start_clock(ClockName.first_response, workflow.now())
        self._record(
            "escalated",
            actor=actor,
            detail={
                "kind": "functional",
                "from_department": before,
                "to_department": department,
                "tier": snap.tier,
                "reason": reason,
            },
        )
        self._notify(
            "ticket.escalated",
            reason=reason,
            recipients=notices.recipients(self.policy, snap, [Recipient.queue, Recipient.team_lead]),
            data={"kind": "functional", "from_department": before, "to_department": department, "actor": actor.id},
        )

    def _cc_head(self, *, reason: str, rule: str | None) -> None:
        cc = notices.department_head(self.policy, self.snap.department)
        if cc:
            self._effect_event("ticket.cc", "cc_department_heads", reason=reason, rule=rule, cc=cc)

    def _reassign(
        self, actor: Actor, *, to_agent: str | None, to_queue: str | None, reason: str, rule: str | None = None
    ) -> None:
        snap = self.snap
        before = {"agent": snap.assignee, "queue": snap.queue, "department": snap.department}
        if to_queue:
            snap.queue = to_queue
            snap.department = guards.department_of_queue(self.policy, to_queue) or snap.department
            if snap.departments_visited[-1] != snap.department:
                snap.departments_visited.append(snap.department)
        snap.assignee = to_agent
        after = {"agent": snap.assignee, "queue": snap.queue, "department": snap.department}
        self._record("reassigned", actor=actor, detail={"from": before, "to": after, "reason": reason, "rule": rule})
        self._notify(
            "ticket.reassigned",
            reason=reason,
            rule=rule,
            recipients=notices.recipients(self.policy, snap, [Recipient.assignee]),
            data={"from": before, "to": after},
        )
        snap.notification_seq += 1
        key = f"{workflow.info().workflow_id}:reassign:{snap.notification_seq}"
        request = ReassignInput(
            idempotency_key=key,
            ticket_id=self._ticket.ticket_id,
            workflow_id=workflow.info().workflow_id,
            queue=snap.queue,
            agent=snap.assignee,
            reason=reason,
        )
        self._spawn(self._run_reassign(request))
        self._publish()

    def _approval_timed_out(self, approval: Approval) -> None:
        approval.status = "timed_out"
        reason = f"{approval.kind} approval {approval.id} not decided by {approval.deadline.isoformat()}"
        self._record("approval_timed_out", detail={"approval_id": approval.id, "reason": reason})
        target = self.policy.next_tier(self.snap.tier)
        if target is not None:
            self._escalate_hierarchical(target, SYSTEM, reason=reason, rule="approvals.timeout")
        self._cc_head(reason=reason, rule="approvals.timeout")

    # ------------------------------------------------------------------ side effects
    def _notify(
        self,
        kind: str,
        *,
        reason: str,
        rule: str | None = None,
        recipients: list[Any] | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self._effect_event(kind, "notify", reason=reason, rule=rule, recipients=recipients, data=data)

    def _effect_event(self, kind: str, activity_name: str, **fields: Any) -> None:
        snap = self.snap
        snap.notification_seq += 1
        event = notices.build_event(
            seq=snap.notification_seq,
            workflow_id=workflow.info().workflow_id,
            ticket=self._ticket,
            snap=snap,
            type=kind,
            now=workflow.now(),
            **fields,
        )
        for endpoint in notices.endpoints_for(self.policy, kind):
            self._spawn(self._deliver(activity_name, DeliverInput(event=event, endpoint=endpoint)))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._effects.add(task)
        task.add_done_callback(self._effects.discard)

    async def _deliver(self, activity_name: str, request: DeliverInput) -> None:
        event: OutboundEvent = request.event
        detail = {
            "event_id": event.id,
            "type": event.type,
            "endpoint": request.endpoint.name,
            "recipients": [p.id for p in event.recipients],
            "cc": [p.id for p in event.cc],
        }
        try:
            await workflow.execute_activity(
                activity_name,
                request,
                activity_id=f"{activity_name}:{event.id}:{request.endpoint.name}",
                summary=f"{event.type} -> {request.endpoint.name}",
                **NOTIFY_OPTIONS,
            )
            self._record("notification_delivered", detail=detail)
        except ActivityError as err:
            cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause or err)
            workflow.logger.warning("notification failed", extra={"event_id": event.id, "error": cause})
            self._record("notification_failed", detail={**detail, "error": cause})

    async def _run_reassign(self, request: ReassignInput) -> None:
        try:
            await workflow.execute_activity(
                "reassign",
                request,
                summary=f"reassign to {request.queue}",
                activity_id=request.idempotency_key,
                **NOTIFY_OPTIONS,
            )
            self._record("helpdesk_updated", detail={"queue": request.queue, "agent": request.agent})
        except ActivityError as err:
            cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause or err)
            self._record("helpdesk_update_failed", detail={"queue": request.queue, "error": cause})

    def _record(self, kind: str, *, actor: Actor | None = None, detail: dict[str, Any] | None = None) -> None:
        self.snap.timeline.append(
            TimelineEvent(
                at=workflow.now(),
                kind=kind,
                actor=f"{actor.role.value}:{actor.id}" if actor else None,
                detail=detail or {},
            )
        )
        # workflow.logger is replay-aware (silent while replaying) and adds the workflow's ids.
        log = workflow.logger.info if kind in _LOGGED_AT_INFO else workflow.logger.debug
        log("ticket %s: %s", self._ticket.ticket_id, kind, extra={"ticket_id": self._ticket.ticket_id, "kind": kind})

    def _publish(self) -> None:
        """Mirror the ticket onto its search attributes (visible and queryable in the Web UI)."""
        snap = self.snap
        deadlines = [c.deadline for c in snap.clocks.values() if sla.is_running(c) and c.deadline]
        values: list[tuple[SearchAttributeKey[Any], Any]] = [
            (sa.TICKET_TIER, snap.tier),
            (sa.TICKET_STATE, snap.state.value),
            (sa.TICKET_PRIORITY, snap.priority.value),
            (sa.TICKET_CHANNEL, self._ticket.channel.value),
            (sa.TICKET_CATEGORY, self._ticket.category),
            (sa.TICKET_DEPARTMENT, snap.department),
            (sa.TICKET_ASSIGNEE, snap.assignee),
            (sa.SLA_BREACHED, snap.breaches > 0),  # sticky: it breached at some tier
            (sa.ESCALATION_COUNT, snap.escalations),
            (sa.NEXT_SLA_DEADLINE, min(deadlines, default=None)),
        ]
        # Only what changed: every upsert is a history event.
        changed = [(key, value) for key, value in values if self._published.get(key.name, _UNSET) != value]
        if not changed:
            return
        updates: list[SearchAttributeUpdate[Any]] = [
            key.value_unset() if value is None else key.value_set(value) for key, value in changed
        ]
        workflow.upsert_search_attributes(updates)
        self._published.update({key.name: value for key, value in changed})

    # ------------------------------------------------------------------ actions
    def _check(self, name: str, action: Any) -> None:
        guards.check(name, self.snap, self.policy, action, workflow.now())

    def _validate(self, name: str, action: Any) -> None:
        """Update validator: refuse with 'field: reason'; mutates nothing and writes no history."""
        if self._snap is None:
            return  # still opening: the handler checks again once the policy is loaded
        try:
            self._check(name, action)
        except Rejected as exc:
            raise ApplicationError(
                str(exc), {"field": exc.field, "reason": exc.reason}, type="ActionRejected", non_retryable=True
            ) from None

    async def _update(self, name: str, action: Any) -> TicketStatus:
        await workflow.wait_condition(lambda: self._snap is not None)
        self._validate(name, action)
        self._apply(name, action)
        return self.current_status()

    async def _signal(self, name: str, action: Any) -> None:
        await workflow.wait_condition(lambda: self._snap is not None)
        try:
            self._check(name, action)
        except Rejected as exc:
            actor = getattr(action, "actor", None)
            self._record(
                "action_rejected",
                actor=actor,
                detail={"action": name, "field": exc.field, "reason": exc.reason, "via": "signal"},
            )
            return
        self._apply(name, action)

    def _apply(self, name: str, action: Any) -> None:
        getattr(self, f"_do_{name}")(action)
        self._publish()
        self._woken = True

    def _do_acknowledge(self, a: Acknowledge) -> None:
        snap, now = self.snap, workflow.now()
        cal = self.policy.calendars[snap.route.calendar]
        snap.clocks[ClockName.first_response] = sla.stop(snap.clocks[ClockName.first_response], cal, now)
        snap.state = State.acknowledged
        snap.assignee = snap.assignee or a.actor.id
        snap.first_response_at = snap.first_response_at or now
        self._record("acknowledged", actor=a.actor, detail={"note": a.note})

    def _do_reassign(self, a: Reassign) -> None:
        self._reassign(a.actor, to_agent=a.to_agent, to_queue=a.to_queue, reason=a.reason or "")

    def _do_escalate(self, a: Escalate) -> None:
        if a.kind == EscalationKind.functional:
            assert a.department is not None
            self._escalate_functional(a.department, a.actor, a.reason)
        else:
            target = guards.hierarchical_target(self.snap, self.policy, a.to_tier)
            self._escalate_hierarchical(target, a.actor, reason=a.reason, rule=None)

    def _do_pending_customer(self, a: PendingCustomer) -> None:
        snap, now = self.snap, workflow.now()
        cal = self.policy.calendars[snap.route.calendar]
        snap.clocks = {name: sla.pause(c, cal, now) for name, c in snap.clocks.items()}
        snap.resume_state = snap.state
        snap.state = State.pending_customer
        self._record("sla_paused", actor=a.actor, detail={"note": a.note})

    def _do_customer_replied(self, a: CustomerReplied) -> None:
        snap, now = self.snap, workflow.now()
        if snap.state == State.self_service:
            self._record("customer_replied", detail={"note": a.note, "effect": "leaves self-service"})
            self._leave_self_service("the customer still needs help")
            return
        if snap.state != State.pending_customer:
            self._record("customer_replied", detail={"note": a.note, "effect": "none"})
            return
        cal = self.policy.calendars[snap.route.calendar]
        snap.clocks = {name: sla.resume(c, cal, now) for name, c in snap.clocks.items()}
        snap.state = snap.resume_state or State.acknowledged
        deadlines = {
            n.value: c.deadline.isoformat() for n, c in snap.clocks.items() if c.deadline and sla.is_running(c)
        }
        self._record("sla_resumed", detail={"note": a.note, "deadlines": deadlines})

    def _do_confirm_solved(self, a: ConfirmSolved) -> None:
        snap = self.snap
        snap.self_service_until = None
        self._resolve(SYSTEM, "solved by self-service" + (f": {a.note}" if a.note else ""))

    def _do_change_priority(self, a: ChangePriority) -> None:
        snap = self.snap
        before = {n.value: c.deadline.isoformat() if c.deadline else None for n, c in snap.clocks.items()}
        old = snap.priority
        snap.priority = a.priority
        targets = routing.targets_for(
            self.policy, snap.route.route, self._ticket.customer.segment, snap.tier, a.priority
        )
        cal = self.policy.calendars[snap.route.calendar]
        snap.clocks = {
            n: sla.retarget(c, cal, getattr(targets, n.value)) if c.stopped_at is None else c
            for n, c in snap.clocks.items()
        }
        after = {n.value: c.deadline.isoformat() if c.deadline else None for n, c in snap.clocks.items()}
        self._record(
            "priority_changed",
            actor=a.actor,
            detail={
                "from": old.value,
                "to": a.priority.value,
                "reason": a.reason,
                "deadlines_before": before,
                "deadlines_after": after,
            },
        )

    def _do_resolve(self, a: Resolve) -> None:
        self._resolve(a.actor, a.resolution)

    def _resolve(self, actor: Actor, resolution: str) -> None:
        snap, now = self.snap, workflow.now()
        cal = self.policy.calendars[snap.route.calendar]
        snap.clocks = {n: sla.stop(c, cal, now) for n, c in snap.clocks.items()}
        snap.state = State.resolved
        snap.resolved_at = now
        self._record("resolved", actor=actor, detail={"resolution": resolution})
        self._notify(
            "ticket.resolved", reason=resolution, recipients=notices.recipients(self.policy, snap, [Recipient.assignee])
        )

    def _do_reopen(self, a: Reopen) -> None:
        snap = self.snap
        snap.resolved_at = None
        self._record("reopened", actor=a.actor, detail={"reason": a.reason})
        self._enter_tier(snap.tier, snap.department, why=f"reopened: {a.reason}")
        self._notify(
            "ticket.reopened", reason=a.reason, recipients=notices.recipients(self.policy, snap, [Recipient.queue])
        )

    def _do_request_approval(self, a: RequestApproval) -> None:
        snap, now = self.snap, workflow.now()
        approval = Approval(
            id=f"apr-{len(snap.approvals) + 1}",
            kind=a.kind,
            amount=a.amount,
            requested_by=a.actor.id,
            reason=a.reason,
            requested_at=now,
            deadline=now + self.policy.approvals.timeout,
        )
        if guards.within_authority(self.policy, a):
            approval.status, approval.decided_by = "approved", a.actor.id
            snap.approvals.append(approval)
            self._record(
                "approval_granted",
                actor=a.actor,
                detail={"approval_id": approval.id, "within_authority": True, "amount": a.amount, "kind": a.kind},
            )
            return
        snap.approvals.append(approval)
        self._record("approval_requested", actor=a.actor, detail=approval.model_dump(mode="json"))
        self._notify(
            "approval.requested",
            reason=a.reason,
            rule="permissions.authority_limit",
            recipients=notices.department_head(self.policy, snap.department),
            data={
                "approval_id": approval.id,
                "kind": a.kind,
                "amount": a.amount,
                "deadline": approval.deadline.isoformat(),
            },
        )

    def _do_decide_approval(self, a: DecideApproval) -> None:
        approval = next(x for x in self.snap.approvals if x.id == a.approval_id)
        approval.status = "approved" if a.approved else "rejected"
        approval.decided_by = a.actor.id
        self._record(f"approval_{approval.status}", actor=a.actor, detail={"approval_id": approval.id, "note": a.note})

    # ------------------------------------------------------------------ query results
    def current_status(self) -> TicketStatus:
        snap, now = self.snap, workflow.now()
        clocks = [sla.status(c, self.policy.calendars[c.calendar], now) for c in snap.clocks.values()]
        running = [c.deadline for c in clocks if c.state == "running" and c.deadline]
        return TicketStatus(
            ticket_id=self._ticket.ticket_id,
            workflow_id=workflow.info().workflow_id,
            state=snap.state,
            tier=snap.tier,
            department=snap.department,
            assignee=snap.assignee,
            queue=snap.queue,
            priority=snap.priority,
            clocks=clocks,
            next_deadline=min(running, default=None),
            sla_breached=snap.breaches > 0,
            escalation_count=snap.escalations,
            policy_version=snap.policy_version,
            route=snap.route.route,
            pending_approvals=[a for a in snap.approvals if a.status == "pending"],
        )

    def current_timeline(self) -> Timeline:
        return Timeline(ticket_id=self._ticket.ticket_id, events=list(self.snap.timeline))

    def _summary(self) -> TicketSummary:
        snap = self.snap
        opened = self._ticket.opened_at or workflow.info().start_time
        return TicketSummary(
            ticket_id=self._ticket.ticket_id,
            final_state=snap.state,
            tiers_visited=snap.tiers_visited,
            departments_visited=snap.departments_visited,
            escalations=snap.escalations,
            breaches=snap.breaches,
            time_to_first_response=(snap.first_response_at - opened) if snap.first_response_at else None,
            time_to_resolution=(snap.resolved_at - opened) if snap.resolved_at else None,
            policy_version=snap.policy_version,
        )

    # ------------------------------------------------------------------ the contract's handlers
    # Defined here, not in ticket.py, so that their definitions are built once per worker process;
    # `TicketEscalation` inherits them and the sandbox only re-creates the small subclass per ticket.
    # Each action is a signal and an update with the same name and payload (the contract).
    @workflow.signal(name="acknowledge")
    async def acknowledge_signal(self, a: Acknowledge) -> None:
        await self._signal("acknowledge", a)

    @workflow.update(name="acknowledge")
    async def acknowledge(self, a: Acknowledge) -> TicketStatus:
        return await self._update("acknowledge", a)

    @acknowledge.validator
    def _v_acknowledge(self, a: Acknowledge) -> None:
        self._validate("acknowledge", a)

    @workflow.signal(name="reassign")
    async def reassign_signal(self, a: Reassign) -> None:
        await self._signal("reassign", a)

    @workflow.update(name="reassign")
    async def reassign(self, a: Reassign) -> TicketStatus:
        return await self._update("reassign", a)

    @reassign.validator
    def _v_reassign(self, a: Reassign) -> None:
        self._validate("reassign", a)

    @workflow.signal(name="escalate")
    async def escalate_signal(self, a: Escalate) -> None:
        await self._signal("escalate", a)

    @workflow.update(name="escalate")
    async def escalate(self, a: Escalate) -> TicketStatus:
        return await self._update("escalate", a)

    @escalate.validator
    def _v_escalate(self, a: Escalate) -> None:
        self._validate("escalate", a)

    @workflow.signal(name="pending_customer")
    async def pending_customer_signal(self, a: PendingCustomer) -> None:
        await self._signal("pending_customer", a)

    @workflow.update(name="pending_customer")
    async def pending_customer(self, a: PendingCustomer) -> TicketStatus:
        return await self._update("pending_customer", a)

    @pending_customer.validator
    def _v_pending_customer(self, a: PendingCustomer) -> None:
        self._validate("pending_customer", a)

    @workflow.signal(name="customer_replied")
    async def customer_replied_signal(self, a: CustomerReplied) -> None:
        await self._signal("customer_replied", a)

    @workflow.update(name="customer_replied")
    async def customer_replied(self, a: CustomerReplied) -> TicketStatus:
        return await self._update("customer_replied", a)

    @customer_replied.validator
    def _v_customer_replied(self, a: CustomerReplied) -> None:
        self._validate("customer_replied", a)

    @workflow.signal(name="confirm_solved")
    async def confirm_solved_signal(self, a: ConfirmSolved) -> None:
        await self._signal("confirm_solved", a)

    @workflow.update(name="confirm_solved")
    async def confirm_solved(self, a: ConfirmSolved) -> TicketStatus:
        return await self._update("confirm_solved", a)

    @confirm_solved.validator
    def _v_confirm_solved(self, a: ConfirmSolved) -> None:
        self._validate("confirm_solved", a)

    @workflow.signal(name="change_priority")
    async def change_priority_signal(self, a: ChangePriority) -> None:
        await self._signal("change_priority", a)

    @workflow.update(name="change_priority")
    async def change_priority(self, a: ChangePriority) -> TicketStatus:
        return await self._update("change_priority", a)

    @change_priority.validator
    def _v_change_priority(self, a: ChangePriority) -> None:
        self._validate("change_priority", a)

    @workflow.signal(name="resolve")
    async def resolve_signal(self, a: Resolve) -> None:
        await self._signal("resolve", a)

    @workflow.update(name="resolve")
    async def resolve(self, a: Resolve) -> TicketStatus:
        return await self._update("resolve", a)

    @resolve.validator
    def _v_resolve(self, a: Resolve) -> None:
        self._validate("resolve", a)

    @workflow.signal(name="reopen")
    async def reopen_signal(self, a: Reopen) -> None:
        await self._signal("reopen", a)

    @workflow.update(name="reopen")
    async def reopen(self, a: Reopen) -> TicketStatus:
        return await self._update("reopen", a)

    @reopen.validator
    def _v_reopen(self, a: Reopen) -> None:
        self._validate("reopen", a)

    @workflow.signal(name="request_approval")
    async def request_approval_signal(self, a: RequestApproval) -> None:
        await self._signal("request_approval", a)

    @workflow.update(name="request_approval")
    async def request_approval(self, a: RequestApproval) -> TicketStatus:
        return await self._update("request_approval", a)

    @request_approval.validator
    def _v_request_approval(self, a: RequestApproval) -> None:
        self._validate("request_approval", a)

    @workflow.signal(name="decide_approval")
    async def decide_approval_signal(self, a: DecideApproval) -> None:
        await self._signal("decide_approval", a)

    @workflow.update(name="decide_approval")
    async def decide_approval(self, a: DecideApproval) -> TicketStatus:
        return await self._update("decide_approval", a)

    @decide_approval.validator
    def _v_decide_approval(self, a: DecideApproval) -> None:
        self._validate("decide_approval", a)

    # ------------------------------------------------------------------ queries
    @workflow.query(name="status")
    def status(self) -> TicketStatus:
        return self.current_status()

    @workflow.query(name="timeline")
    def timeline(self) -> Timeline:
        return self.current_timeline()
