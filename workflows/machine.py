"""The ticket's life as a state machine: one table, one pure decision function.

Nothing here imports Temporal. `decide(state, policy, ticket, input, ctx)` takes the carried state,
the ticket's frozen policy, one input (an agent action, the passing of time, or the outcome of a
delivery) and the context (the time, the ticket's ids, which patches are on), and returns a
`Decision`: the new state, the timeline events, and the effects to run as data (outbox entries).
The workflow (`workflows/runner.py`) applies decisions and runs effects; it decides nothing.

## Which action each state takes

`TABLE` below is the whole answer: a cell is `APPLIED` (then the policy's guards in
`workflows/guards.py` judge roles, reasons and limits) or `refused(reason)`. Every refusal, whether
by the table, a guard or an undecodable payload, leaves the state as it was, is counted and is
recorded on the timeline with the field and the reason.

Timer events are not refusable; where they can happen:
- ladder steps and breaches: on running clocks (open, acknowledged; never while pending_customer,
  whose clocks are paused, nor once resolved, whose clocks are stopped);
- end of the self-service wait: in self_service (the ticket enters its route's tier);
- approval deadline: any state with a pending approval (escalates one tier, CCs the head);
- end of the reopen window: resolved (the workflow completes once its notices are settled).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal, cast

from pydantic import ValidationError

import workflows.guards as guards
import workflows.notices as notices
import workflows.routing as routing
import workflows.sla as sla
from activities.models import Person, ReassignInput
from config.policy import (
    CcAction,
    EscalateAction,
    LadderStep,
    NotifyAction,
    Policy,
    ReassignAction,
    Recipient,
    Role,
)
from workflows.guards import Rejected
from workflows.models import (
    ACTIONS,
    Acknowledge,
    Actor,
    Approval,
    ChangePriority,
    ClockName,
    ConfirmSolved,
    CustomerReplied,
    DecideApproval,
    DiscardNotices,
    Escalate,
    EscalationKind,
    Message,
    PendingCustomer,
    Reassign,
    Redeliver,
    Reopen,
    RequestApproval,
    Resolve,
    RouteDecision,
    State,
    Ticket,
    TimelineEvent,
)
from workflows.state import MAX_KEYS, MAX_OUTBOX, MAX_VISITED, Notice, TicketState

REUSED_KEY = "this key was used for another body of this action; a retry must send the same body"

SS, OPEN, ACK, PENDING, RESOLVED = (
    State.self_service,
    State.open,
    State.acknowledged,
    State.pending_customer,
    State.resolved,
)


@dataclass(frozen=True)
class Cell:
    applied: bool
    note: str


APPLIED = Cell(True, "")


def applied(note: str) -> Cell:
    return Cell(True, note)


def refused(reason: str) -> Cell:
    return Cell(False, reason)


_RESOLVED = refused("the ticket is resolved; reopen it first")

# state ->      self_service | open | acknowledged | pending_customer | resolved
TABLE: dict[str, dict[State, Cell]] = {
    "acknowledge": {
        SS: applied("leaves Tier 0 for its route's tier, then acknowledged"),
        OPEN: APPLIED,
        ACK: refused("already acknowledged"),
        PENDING: refused("already acknowledged; the ticket waits on the customer"),
        RESOLVED: _RESOLVED,
    },
    "reassign": {
        SS: applied("leaves Tier 0 for its route's tier, then reassigned"),
        OPEN: APPLIED,
        ACK: APPLIED,
        PENDING: APPLIED,
        RESOLVED: _RESOLVED,
    },
    "escalate": {
        SS: applied("leaves Tier 0: hierarchical to the route's tier, functional to the department"),
        OPEN: APPLIED,
        ACK: APPLIED,
        PENDING: applied("the new owners' clocks run: the ticket is open again"),
        RESOLVED: _RESOLVED,
    },
    "pending_customer": {
        SS: refused("a self-service ticket already waits on the customer"),
        OPEN: APPLIED,
        ACK: APPLIED,
        PENDING: refused("already waiting on the customer"),
        RESOLVED: _RESOLVED,
    },
    "customer_replied": {
        SS: applied("the customer still needs help: leaves Tier 0"),
        OPEN: applied("recorded; the clocks were running already"),
        ACK: applied("recorded; the clocks were running already"),
        PENDING: applied("the clocks resume with their remaining business time"),
        RESOLVED: _RESOLVED,
    },
    "confirm_solved": {
        SS: applied("resolved by self-service"),
        OPEN: refused("only a ticket in Tier 0 self-service can be confirmed solved by the customer"),
        ACK: refused("only a ticket in Tier 0 self-service can be confirmed solved by the customer"),
        PENDING: refused("only a ticket in Tier 0 self-service can be confirmed solved by the customer"),
        RESOLVED: refused("the ticket is resolved already"),
    },
    "change_priority": {
        SS: APPLIED,
        OPEN: APPLIED,
        ACK: APPLIED,
        PENDING: APPLIED,
        RESOLVED: _RESOLVED,
    },
    "resolve": {
        SS: APPLIED,
        OPEN: APPLIED,
        ACK: APPLIED,
        PENDING: APPLIED,
        RESOLVED: refused("the ticket is resolved already"),
    },
    "reopen": {
        SS: refused("only a resolved ticket can be reopened"),
        OPEN: refused("only a resolved ticket can be reopened"),
        ACK: refused("only a resolved ticket can be reopened"),
        PENDING: refused("only a resolved ticket can be reopened"),
        RESOLVED: applied("within the reopen window: the ticket's tier (Tier 0: the route's tier), clocks anew"),
    },
    "request_approval": {
        SS: refused("no agent owns a Tier 0 self-service ticket yet; take it on first"),
        OPEN: APPLIED,
        ACK: APPLIED,
        PENDING: APPLIED,
        RESOLVED: _RESOLVED,
    },
    "decide_approval": {SS: APPLIED, OPEN: APPLIED, ACK: APPLIED, PENDING: APPLIED, RESOLVED: APPLIED},
    "redeliver": {SS: APPLIED, OPEN: APPLIED, ACK: APPLIED, PENDING: APPLIED, RESOLVED: APPLIED},
    "discard_notices": {SS: APPLIED, OPEN: APPLIED, ACK: APPLIED, PENDING: APPLIED, RESOLVED: APPLIED},
}

SYSTEM = Actor(id="escalation-policy", role=Role.system)
CUSTOMER = "customer"


# ---------------------------------------------------------------------- inputs and outputs
@dataclass(frozen=True)
class Ctx:
    """What a decision may know besides the state: the time, the ticket's ids, the patches in force."""

    now: datetime
    workflow_id: str
    life: str  # the first run id of this ticket's life: unique per life, stable across continue-as-new
    patched: Callable[[str], bool] = field(default=lambda _patch_id: True)


@dataclass(frozen=True)
class Action:
    """An agent action as it arrived: `data` is the decoded JSON value, or `Undecodable`."""

    input: ClassVar[str] = "action"
    name: str
    data: Any
    via: Literal["signal", "update"] = "update"
    key: str | None = None  # idempotency key (the update id); a repeat applies nothing
    # The body's fingerprint sent with the key: the key again with another
    # body is refused, not answered as if it had been applied.
    digest: str | None = None


@dataclass(frozen=True)
class Undecodable:
    error: str
    undecodable: ClassVar[bool] = True


@dataclass(frozen=True)
class Tick:
    """Time has passed: do whatever is due at `ctx.now`."""

    input: ClassVar[str] = "tick"


@dataclass(frozen=True)
class Delivery:
    """The outcome of one try of an outbox entry."""

    input: ClassVar[str] = "delivery"
    key: str
    ok: bool
    error: str | None = None
    final: bool = False  # the receiver refused for good (4xx): no more automatic tries
    retry_after: timedelta | None = None  # the receiver asked for a pause (429 Retry-After)
    detail: dict[str, Any] = field(default_factory=dict)


Input = Action | Tick | Delivery


@dataclass(frozen=True)
class Refusal:
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@dataclass
class Decision:
    state: TicketState
    events: list[TimelineEvent]
    effects: list[Notice]
    refusal: Refusal | None = None
    duplicate: bool = False


# ---------------------------------------------------------------------- the decision function
def parse_action(name: str, data: Any) -> Message | Refusal:
    """The action's payload as its model, or a refusal naming the field and the reason."""
    model = ACTIONS.get(name)
    if model is None:
        return Refusal("action", f"unknown action {name[:100]!r} (known: {', '.join(sorted(ACTIONS))})")
    if getattr(data, "undecodable", False):
        return Refusal("payload", f"not decodable as JSON: {cast(Undecodable, data).error[:300]}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return Refusal("payload", f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        place = ".".join(str(part) for part in first["loc"]) or "payload"
        return Refusal(place, first["msg"].removeprefix("Value error, ")[:300])


def open_ticket(policy: Policy, policy_version: str, ticket: Ticket, ctx: Ctx) -> Decision:
    """Route a new ticket and start its clocks (or its Tier 0 self-service wait)."""
    decision = routing.route_ticket(policy, ticket)
    state = TicketState(
        route=decision,
        state=OPEN,
        tier=decision.tier,
        department=decision.department,
        priority=decision.priority,
        tier_entered_at=ctx.now,
    )
    d = _Decider(state, policy, ticket, ctx)
    d.open(decision, policy_version)
    return d.result()


def decide(state: TicketState, policy: Policy, ticket: Ticket, event: Input, ctx: Ctx) -> Decision:
    """Apply one input. Never raises: an unexpected error refuses the input, records it and counts it."""
    d = _Decider(_copy(state), policy, ticket, ctx)
    # Dispatch on a class attribute, not isinstance: the workflow sandbox may hand us proxied classes.
    try:
        if event.input == "action":
            d.act(cast(Action, event))
        elif event.input == "tick":
            d.tick()
        else:
            d.delivery(cast(Delivery, event))
        return d.result()
    except Exception as exc:  # the promise: a bug refuses, records and counts; it never wedges a ticket
        return _internal_error(state, policy, event, ctx, exc)


def _copy(state: TicketState) -> TicketState:
    """A private copy to decide on (a failed decision leaves the original untouched). A dump and
    validate round trip: five times faster than `deepcopy`, which crawls inside the sandbox."""
    return TicketState.model_validate(state.model_dump())


def _internal_error(state: TicketState, policy: Policy, event: Input, ctx: Ctx, exc: Exception) -> Decision:
    safe = _copy(state)
    safe.internal_errors += 1
    what = cast(Action, event).name if event.input == "action" else event.input
    detail: dict[str, Any] = {"input": what, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    refusal = None
    if event.input == "action":
        safe.refused += 1
        refusal = Refusal("internal", f"the ticket could not decide on {what} ({type(exc).__name__}); recorded")
        detail["via"] = cast(Action, event).via
    elif event.input == "tick":
        # Make progress anyway: what was due is marked done, so the same bug does not spin.
        detail["skipped"] = _skip_due(safe, policy, ctx.now)
    elif event.input == "delivery":
        outcome = cast(Delivery, event)
        safe.outbox = [n for n in safe.outbox if n.key != outcome.key] if outcome.ok else safe.outbox
    return Decision(safe, [TimelineEvent(at=ctx.now, kind="internal_error", detail=detail)], [], refusal)


def _skip_due(state: TicketState, policy: Policy, now: datetime) -> list[str]:
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


def check(state: TicketState, policy: Policy, name: str, action: Message, now: datetime) -> Refusal | None:
    """Would the ticket take this (already parsed) action now? Pure; mutates nothing."""
    cell = TABLE[name][state.state]
    if not cell.applied:
        return Refusal("state", cell.note)
    try:
        guards.check(name, state, policy, action, now)
    except Rejected as exc:
        return Refusal(exc.field, exc.reason)
    return None


# ---------------------------------------------------------------------- timing (pure queries)
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
        items += sla.pending(clock, policy.calendars[clock.calendar], _steps(state, policy, name))
    return sorted(items, key=lambda d: d.at)


def _steps(state: TicketState, policy: Policy, clock: ClockName) -> list[LadderStep]:
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


def backoff(policy: Policy, attempts: int) -> timedelta:
    """Wait before try `attempts + 1`: 10 s doubling, at most the policy's `retry_max_interval`."""
    base = timedelta(seconds=10) * (2 ** min(attempts - 1, 20))
    longest: timedelta = policy.notifications.retry_max_interval
    return base if base < longest else longest


def _from_to(before: Any, after: Any) -> dict[str, Any]:
    return {"from": before, "to": after}


# ---------------------------------------------------------------------- the decider
class _Decider:
    """Applies one input to a private copy of the state, collecting events and effects."""

    def __init__(self, state: TicketState, policy: Policy, ticket: Ticket, ctx: Ctx) -> None:
        self.s = state
        self.policy = policy
        self.ticket = ticket
        self.ctx = ctx
        self.now = ctx.now
        self.events: list[TimelineEvent] = []
        self.effects: list[Notice] = []
        self.refusal: Refusal | None = None
        self.duplicate = False

    def result(self) -> Decision:
        return Decision(self.s, self.events, self.effects, self.refusal, self.duplicate)

    def record(
        self, what: str, /, *, by: Actor | str | None = None, when: datetime | None = None, **detail: Any
    ) -> None:
        who = f"{by.role.value}:{by.id}" if isinstance(by, Actor) else by
        self.events.append(TimelineEvent(at=when or self.now, kind=what, actor=who, detail=detail))

    # ------------------------------------------------------------------ opening
    def open(self, decision: RouteDecision, policy_version: str) -> None:
        opened_at = self.ticket.opened_at or self.now
        self.record(
            "ticket_opened",
            by=f"source:{self.ticket.source}",
            policy_version=policy_version,
            source=self.ticket.source,
            opened_at=opened_at.isoformat(),
        )
        self.record("routed", by=SYSTEM, **decision.model_dump(mode="json"))
        route = routing.route_named(self.policy, decision.route)
        if route.self_service is not None:
            self.s.state = SS
            self.s.tier = 0
            self.s.self_service_until = self.now + route.self_service.wait
            self.record(
                "self_service_offered",
                by=SYSTEM,
                kb_url=route.self_service.kb_url,
                until=self.s.self_service_until.isoformat(),
            )
            customer = self.ticket.customer
            self.notify(
                "ticket.self_service",
                reason="self-service answer offered",
                recipients=[Person(role="customer", id=customer.id, email=customer.email)],
                data={"kb_url": route.self_service.kb_url},
            )
            return
        self.enter_tier(decision.tier, decision.department, start=opened_at, why="initial route")

    # ------------------------------------------------------------------ actions
    def act(self, action: Action) -> None:
        parsed = parse_action(action.name, action.data)
        if isinstance(parsed, Refusal):
            return self.refuse(action, parsed, None)
        if action.key is not None and action.key in self.s.applied_keys:
            first = self.s.applied_digests.get(action.key)
            if action.digest is not None and first is not None and first != action.digest:
                reused = Refusal("idempotency_key", REUSED_KEY)
                return self.refuse(action, reused, getattr(parsed, "actor", None))
            self.duplicate = True  # applied before under this key: the answer is the status, nothing changes
            return None
        if action.key is not None and action.key in self.s.refused_keys:
            # Refused before under this id: the same answer again
            # (another body under the key: the key's misuse), recorded once, counted once.
            field_name, reason, digest = [*self.s.refused_keys[action.key], "", "", ""][:3]
            if action.digest is not None and digest and digest != action.digest:
                field_name, reason = "idempotency_key", REUSED_KEY
            self.refusal = Refusal(field_name, reason)
            self.duplicate = True
            return None
        refusal = check(self.s, self.policy, action.name, parsed, self.now)
        if refusal is not None:
            return self.refuse(action, refusal, getattr(parsed, "actor", None))
        getattr(self, f"do_{action.name}")(parsed)
        if action.key is not None:
            self.s.applied_keys = [*self.s.applied_keys, action.key][-MAX_KEYS:]
            if action.digest is not None or self.s.applied_digests:
                digests = {**self.s.applied_digests, **({action.key: action.digest} if action.digest else {})}
                self.s.applied_digests = {k: v for k, v in digests.items() if k in self.s.applied_keys}
        return None

    def refuse(self, action: Action, refusal: Refusal, actor: Actor | None) -> None:
        # Only the count changes: everything else the action might have done is discarded.
        self.refusal = refusal
        self.events.clear()
        self.effects.clear()
        self.s.refused += 1
        if action.key is not None and action.via == "update":
            kept = {k: v for k, v in self.s.refused_keys.items() if k != action.key}
            kept[action.key] = [refusal.field, refusal.reason, action.digest or ""]
            self.s.refused_keys = dict(list(kept.items())[-MAX_KEYS:])
        self.record(
            "action_rejected",
            by=actor,
            action=action.name[:100],
            field=refusal.field,
            reason=refusal.reason,
            via=action.via,
        )

    def do_acknowledge(self, a: Acknowledge) -> None:
        if self.s.state == SS:
            self.leave_self_service(f"acknowledged by {a.actor.id}")
        clock = self.s.clocks.get(ClockName.first_response)
        if clock is not None:
            self.s.clocks[ClockName.first_response] = sla.stop(clock, self.calendar(), self.now)
        self.s.state = ACK
        self.s.assignee = self.s.assignee or a.actor.id
        self.s.first_response_at = self.s.first_response_at or self.now
        self.record("acknowledged", by=a.actor, note=a.note)

    def do_reassign(self, a: Reassign) -> None:
        if self.s.state == SS:
            self.leave_self_service(f"reassigned by {a.actor.id}")
        self.reassign(a.actor, to_agent=a.to_agent, to_queue=a.to_queue, reason=a.reason or "")

    def do_escalate(self, a: Escalate) -> None:
        if a.kind == EscalationKind.functional:
            assert a.department is not None  # the guard refuses a functional escalation without one
            self.escalate_functional(a.department, a.actor, a.reason)
        else:
            target = guards.hierarchical_target(self.s, self.policy, a.to_tier)
            self.escalate_hierarchical(target, a.actor, reason=a.reason, rule=None)

    def do_pending_customer(self, a: PendingCustomer) -> None:
        cal = self.calendar()
        self.s.clocks = {name: sla.pause(c, cal, self.now) for name, c in self.s.clocks.items()}
        self.s.resume_state = self.s.state
        self.s.state = PENDING
        self.record("sla_paused", by=a.actor, note=a.note)

    def do_customer_replied(self, a: CustomerReplied) -> None:
        if self.s.state == SS:
            self.record("customer_replied", by=CUSTOMER, note=a.note, effect="leaves self-service")
            self.leave_self_service("the customer still needs help")
            return
        if self.s.state != PENDING:
            self.record("customer_replied", by=CUSTOMER, note=a.note, effect="none: the clocks were running")
            return
        cal = self.calendar()
        self.s.clocks = {name: sla.resume(c, cal, self.now) for name, c in self.s.clocks.items()}
        self.s.state = self.s.resume_state or ACK
        self.s.resume_state = None
        deadlines = {
            n.value: c.deadline.isoformat() for n, c in self.s.clocks.items() if c.deadline and sla.is_running(c)
        }
        self.record("sla_resumed", by=CUSTOMER, note=a.note, deadlines=deadlines)

    def do_confirm_solved(self, a: ConfirmSolved) -> None:
        self.s.self_service_until = None
        self.resolve(CUSTOMER, "solved by self-service" + (f": {a.note}" if a.note else ""))

    def do_change_priority(self, a: ChangePriority) -> None:
        s = self.s
        before = {n.value: c.deadline.isoformat() if c.deadline else None for n, c in s.clocks.items()}
        old = s.priority
        s.priority = a.priority
        if s.tier > 0:
            targets = routing.targets_for(self.policy, s.route.route, self.ticket.customer.segment, s.tier, a.priority)
            cal = self.calendar()
            s.clocks = {
                n: sla.retarget(c, cal, getattr(targets, n.value)) if c.stopped_at is None else c
                for n, c in s.clocks.items()
            }
        after = {n.value: c.deadline.isoformat() if c.deadline else None for n, c in s.clocks.items()}
        self.record(
            "priority_changed",
            by=a.actor,
            **_from_to(old.value, a.priority.value),
            reason=a.reason,
            deadlines_before=before,
            deadlines_after=after,
        )

    def do_resolve(self, a: Resolve) -> None:
        self.resolve(a.actor, a.resolution)

    def do_reopen(self, a: Reopen) -> None:
        s = self.s
        s.resolved_at = None
        s.reopens += 1
        self.record("reopened", by=a.actor, reason=a.reason)
        tier = s.tier if s.tier > 0 else s.route.tier
        self.enter_tier(tier, s.department, why=f"reopened: {a.reason}")
        self.notify(
            "ticket.reopened", reason=a.reason, recipients=notices.recipients(self.policy, s, [Recipient.queue])
        )

    def do_request_approval(self, a: RequestApproval) -> None:
        s = self.s
        approval = Approval(
            id=f"apr-{len(s.approvals) + 1}",
            kind=a.kind,
            amount=a.amount,
            requested_by=a.actor.id,
            reason=a.reason[:500],
            requested_at=self.now,
            deadline=self.now + self.policy.approvals.timeout,
        )
        if guards.within_authority(self.policy, a):
            approval.status, approval.decided_by = "approved", a.actor.id
            s.approvals.append(approval)
            self.record(
                "approval_granted",
                by=a.actor,
                approval_id=approval.id,
                within_authority=True,
                amount=a.amount,
                kind=a.kind,
            )
            return
        s.approvals.append(approval)
        self.record("approval_requested", by=a.actor, **approval.model_dump(mode="json"))
        self.notify(
            "approval.requested",
            reason=a.reason,
            rule="permissions.authority_limit",
            recipients=notices.department_head(self.policy, s.department),
            data={
                "approval_id": approval.id,
                "kind": a.kind,
                "amount": a.amount,
                "deadline": approval.deadline.isoformat(),
            },
        )

    def do_decide_approval(self, a: DecideApproval) -> None:
        approval = next(x for x in self.s.approvals if x.id == a.approval_id)
        approval.status = "approved" if a.approved else "rejected"
        approval.decided_by = a.actor.id
        self.record(f"approval_{approval.status}", by=a.actor, approval_id=approval.id, note=a.note)

    def do_redeliver(self, a: Redeliver) -> None:
        keys = []
        for notice in self.s.outbox:
            if notice.status == "pending":
                continue
            notice.status = "undelivered"
            notice.next_attempt_at = self.now
            notice.give_up_at = self.now + self.policy.notifications.retry_for
            keys.append(notice.key)
        self.record("redelivery_requested", by=a.actor, reason=a.reason, notices=keys)

    def do_discard_notices(self, a: DiscardNotices) -> None:
        gone = [n for n in self.s.outbox if n.status == "failed"]
        self.s.outbox = [n for n in self.s.outbox if n.status != "failed"]
        self.s.dropped += len(gone)
        self.record(
            "notifications_discarded",
            by=a.actor,
            reason=a.reason,
            notices=[{"key": n.key, "type": n.type, "endpoint": n.endpoint, "error": n.last_error} for n in gone],
        )

    # ------------------------------------------------------------------ time passing
    def tick(self) -> None:
        """Do everything that is due now, in time order; an escalation re-plans what follows."""
        s = self.s
        for _ in range(100):  # bounded: each pass fires at least one item or stops
            if s.state == SS and s.self_service_until and self.now >= s.self_service_until:
                self.record("self_service_expired", by=SYSTEM)
                self.leave_self_service("no confirmation from the customer in time")
                continue
            expired = [a for a in s.approvals if a.status == "pending" and self.now >= a.deadline]
            if expired:
                self.approval_timed_out(expired[0])
                continue
            due = [d for d in pending_steps(s, self.policy) if d.at <= self.now]
            if not due:
                return
            self.fire(due[0])

    def fire(self, due: sla.Due) -> None:
        s = self.s
        clock = s.clocks[due.clock]
        if due.step is None:
            # Recorded at its deadline, even when the worker only got to it later.
            s.clocks[due.clock] = clock.model_copy(update={"breached_at": due.at})
            s.breaches += 1
            self.record(
                "sla_breached",
                by=SYSTEM,
                when=due.at,
                clock=due.clock.value,
                deadline=due.at.isoformat(),
                noticed_at=self.now.isoformat(),
            )
            return
        step = due.step
        times = 1
        if step.repeat is not None:
            # After an outage, the repeats that fell due meanwhile collapse into one notice.
            times = 1 + int((self.now - due.at) / step.repeat.interval)
            if step.repeat.count is not None:
                times = min(times, step.repeat.count + 1 - clock.fired.get(step.id, 0))
            times = max(times, 1)
        fired = clock.fired.get(step.id, 0) + times
        s.clocks[due.clock] = clock.model_copy(update={"fired": {**clock.fired, step.id: fired}})
        steps: list[LadderStep] = getattr(self.policy.ladders, due.clock.value)
        rule = f"ladders.{due.clock.value}[{steps.index(step)}] ({step.id})"
        when = f"at {step.at_percent:g}% of target" if step.is_warning else "after breach"
        reason = f"{due.clock.value} SLA {when}" + (f" (repeat {fired - 1})" if fired > 1 else "")
        missed = times - 1
        if missed:
            reason += f"; {missed} earlier reminder(s) missed while the worker was away"
        self.record("ladder_step", by=SYSTEM, rule=rule, clock=due.clock.value, reason=reason, missed=missed)
        for action in step.actions:
            self.ladder_action(action, step, rule, reason, missed)

    def ladder_action(self, action: object, step: LadderStep, rule: str, reason: str, missed: int) -> None:
        s = self.s
        if isinstance(action, NotifyAction):
            kind = "sla.warning" if step.is_warning else "sla.breached"
            data = {"missed": missed} if missed else None
            recipients = notices.recipients(self.policy, s, action.roles)
            self.notify(kind, reason=reason, rule=rule, recipients=recipients, data=data)
        elif isinstance(action, ReassignAction):
            queue = routing.queue_for(self.policy, s.department, s.tier)
            if s.queue == queue and s.assignee is None:
                self.record("reassign_skipped", by=SYSTEM, rule=rule, reason=f"already unassigned in {queue}")
                return
            self.reassign(SYSTEM, to_agent=None, to_queue=queue, reason=reason, rule=rule)
        elif isinstance(action, EscalateAction):
            target = self.policy.next_tier(s.tier)
            if target is None:
                self.record("escalation_skipped", by=SYSTEM, rule=rule, reason="already at the top tier")
                return
            self.escalate_hierarchical(target, SYSTEM, reason=reason, rule=rule)
        elif isinstance(action, CcAction):
            self.cc_head(reason=reason, rule=rule)

    def approval_timed_out(self, approval: Approval) -> None:
        approval.status = "timed_out"
        reason = f"{approval.kind} approval {approval.id} not decided by {approval.deadline.isoformat()}"
        self.record("approval_timed_out", by=SYSTEM, approval_id=approval.id, reason=reason)
        target = self.policy.next_tier(self.s.tier) if self.s.tier > 0 else self.s.route.tier
        if target is not None:
            self.escalate_hierarchical(target, SYSTEM, reason=reason, rule="approvals.timeout")
        self.cc_head(reason=reason, rule="approvals.timeout")

    # ------------------------------------------------------------------ deliveries
    def delivery(self, outcome: Delivery) -> None:
        notice = next((n for n in self.s.outbox if n.key == outcome.key), None)
        if notice is None:
            return
        tries = notice.attempts + 1
        info: dict[str, Any] = {"key": notice.key, "type": notice.type, "endpoint": notice.endpoint, "attempts": tries}
        if outcome.ok:
            self.s.outbox = [n for n in self.s.outbox if n.key != notice.key]
            self.s.delivered += 1
            if notice.activity == "reassign":
                kind = "helpdesk_skipped" if outcome.detail.get("outcome") == "skipped" else "helpdesk_updated"
            else:
                kind = "notification_delivered"
            self.record(kind, **info, **outcome.detail)
            return
        notice.attempts = tries
        notice.last_error = (outcome.error or "unknown error")[:500]
        if outcome.final or self.now >= notice.give_up_at:
            notice.status = "failed"
            why = "refused by the receiver" if outcome.final else "retry window over"
            self.record("notification_failed", **info, error=notice.last_error, why=why, redeliver="redeliver action")
            return
        first = notice.status == "pending"
        notice.status = "undelivered"
        wait = backoff(self.policy, tries)
        if outcome.retry_after is not None and outcome.retry_after > wait:
            wait = min(outcome.retry_after, timedelta(hours=1))
        notice.next_attempt_at = self.now + wait
        if first:
            self.record(
                "notification_undelivered",
                **info,
                error=notice.last_error,
                retrying_until=notice.give_up_at.isoformat(),
            )

    def _bound_outbox(self) -> None:
        """Keep the carried outbox bounded: past `MAX_OUTBOX`, the oldest given-up notices go first,
        then the oldest still being retried. Never silently: recorded, counted, and logged."""
        excess = len(self.s.outbox) - MAX_OUTBOX
        if excess <= 0:
            return
        order = {"failed": 0, "undelivered": 1, "pending": 2}
        oldest = sorted(self.s.outbox, key=lambda n: (order[n.status], n.created_at))
        drop = {n.key for n in oldest[:excess]}
        self.s.outbox = [n for n in self.s.outbox if n.key not in drop]
        self.s.dropped += len(drop)
        self.record(
            "notifications_dropped",
            keys=sorted(drop),
            why=f"more than {MAX_OUTBOX} notices undelivered; the receiver has been failing for long",
        )

    # ------------------------------------------------------------------ state changes
    def calendar(self) -> Any:
        return self.policy.calendars[self.s.route.calendar]

    def visit(self, tier: int | None = None, department: str | None = None) -> None:
        s = self.s
        if tier is not None:
            s.tiers_visited = [*s.tiers_visited, tier][-MAX_VISITED:]
        if department is not None and (not s.departments_visited or s.departments_visited[-1] != department):
            s.departments_visited = [*s.departments_visited, department][-MAX_VISITED:]

    def enter_tier(self, tier: int, department: str, *, start: datetime | None = None, why: str) -> None:
        """Put the ticket in a tier and department; both clocks start over for the new owners."""
        s = self.s
        start = min(start or self.now, self.now)
        s.tier, s.department = tier, department
        s.tier_entered_at = self.now
        s.state = OPEN
        s.resume_state = None
        s.assignee = None
        s.queue = routing.queue_for(self.policy, department, tier)
        self.visit(tier, department)
        self.start_clock(ClockName.first_response, start)
        self.start_clock(ClockName.resolution, start)
        self.record("tier_entered", by=SYSTEM, tier=tier, department=department, queue=s.queue, why=why)

    def start_clock(self, name: ClockName, start: datetime) -> None:
        s = self.s
        calendar = s.route.calendar
        targets = routing.targets_for(self.policy, s.route.route, self.ticket.customer.segment, s.tier, s.priority)
        target: timedelta = getattr(targets, name.value)
        clock = sla.start_clock(name, calendar, self.policy.calendars[calendar], target, start)
        s.clocks[name] = clock
        self.record(
            "sla_started",
            by=SYSTEM,
            clock=name.value,
            target=str(target),
            calendar=calendar,
            deadline=clock.deadline.isoformat() if clock.deadline else None,
        )

    def leave_self_service(self, why: str, department: str | None = None, tier: int | None = None) -> None:
        s = self.s
        s.self_service_until = None
        self.enter_tier(tier or s.route.tier, department or s.route.department, why=why)

    def escalate_hierarchical(self, tier: int, actor: Actor, *, reason: str, rule: str | None) -> None:
        s = self.s
        before = s.tier
        s.escalations += 1
        self.enter_tier(tier, s.department, why=f"hierarchical escalation: {reason}")
        self.record(
            "escalated",
            by=actor,
            kind="hierarchical",
            from_tier=before,
            to_tier=tier,
            department=s.department,
            rule=rule,
            reason=reason,
        )
        self.notify(
            "ticket.escalated",
            reason=reason,
            rule=rule,
            recipients=notices.recipients(self.policy, s, [Recipient.queue, Recipient.team_lead]),
            data={"kind": "hierarchical", "from_tier": before, "to_tier": tier, "actor": actor.id},
        )

    def escalate_functional(self, department: str, actor: Actor, reason: str) -> None:
        """To another department at the same tier: it must respond anew; the resolution clock runs on.

        From Tier 0 the ticket enters the department at its route's tier, with both clocks."""
        s = self.s
        before = s.department
        s.escalations += 1
        if s.state == SS:
            self.leave_self_service(f"functional escalation: {reason}", department=department)
        else:
            s.department = department
            self.visit(department=department)
            s.queue = routing.queue_for(self.policy, department, s.tier)
            s.assignee = None
            if s.state == PENDING:  # the new department's clock runs: the ticket is open for them
                cal = self.calendar()
                s.clocks = {name: sla.resume(c, cal, self.now) for name, c in s.clocks.items()}
                s.resume_state = None
            s.state = OPEN
            self.start_clock(ClockName.first_response, self.now)
        self.record(
            "escalated",
            by=actor,
            kind="functional",
            from_department=before,
            to_department=department,
            tier=s.tier,
            reason=reason,
        )
        self.notify(
            "ticket.escalated",
            reason=reason,
            recipients=notices.recipients(self.policy, s, [Recipient.queue, Recipient.team_lead]),
            data={"kind": "functional", "from_department": before, "to_department": department, "actor": actor.id},
        )

    def reassign(
        self, actor: Actor, *, to_agent: str | None, to_queue: str | None, reason: str, rule: str | None = None
    ) -> None:
        s = self.s
        before = {"agent": s.assignee, "queue": s.queue, "department": s.department}
        if to_queue:
            s.queue = to_queue
            s.department = guards.department_of_queue(self.policy, to_queue) or s.department
            self.visit(department=s.department)
        s.assignee = to_agent
        after = {"agent": s.assignee, "queue": s.queue, "department": s.department}
        if after == before:
            self.record("reassign_skipped", by=actor, rule=rule, reason="nothing to change")
            return
        self.record("reassigned", by=actor, reason=reason, rule=rule, **_from_to(before, after))
        self.notify(
            "ticket.reassigned",
            reason=reason,
            rule=rule,
            recipients=notices.recipients(self.policy, s, [Recipient.assignee]),
            data={"from": before, "to": after},
        )
        s.notice_seq += 1
        key = f"{self.ctx.workflow_id}:{self.ctx.life}:reassign:{s.notice_seq}"
        request = ReassignInput(
            idempotency_key=key,
            ticket_id=self.ticket.ticket_id,
            workflow_id=self.ctx.workflow_id,
            queue=s.queue,
            agent=s.assignee,
            reason=reason,
        )
        self.enqueue(
            Notice(
                key=key,
                activity="reassign",
                type="helpdesk.reassign",
                endpoint="helpdesk",
                reassign=request,
                created_at=self.now,
                next_attempt_at=self.now,
                give_up_at=self.now + self.policy.notifications.retry_for,
            )
        )

    def resolve(self, actor: Actor | str, resolution: str) -> None:
        s = self.s
        cal = self.calendar()
        s.clocks = {n: sla.stop(c, cal, self.now) for n, c in s.clocks.items()}
        s.state = RESOLVED
        s.resume_state = None
        s.resolved_at = self.now
        s.self_service_until = None
        self.record("resolved", by=actor, resolution=resolution)
        self.notify(
            "ticket.resolved", reason=resolution, recipients=notices.recipients(self.policy, s, [Recipient.assignee])
        )

    def cc_head(self, *, reason: str, rule: str | None) -> None:
        cc = notices.department_head(self.policy, self.s.department)
        if cc:
            self.event("ticket.cc", "cc_department_heads", reason=reason, rule=rule, cc=cc)

    def notify(
        self,
        kind: str,
        *,
        reason: str,
        rule: str | None = None,
        recipients: list[Person] | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.event(kind, "notify", reason=reason, rule=rule, recipients=recipients, data=data)

    def event(self, kind: str, activity: Literal["notify", "cc_department_heads"], **fields: Any) -> None:
        s = self.s
        s.notice_seq += 1
        running = [c.deadline for c in s.clocks.values() if c.deadline and c.stopped_at is None]
        fields["deadline"] = min(running, default=None)
        event = notices.build_event(
            event_id=notices.event_id(self.ctx.workflow_id, self.ctx.life, s.notice_seq),
            workflow_id=self.ctx.workflow_id,
            ticket=self.ticket,
            snap=s,
            type=kind,
            now=self.now,
            **fields,
        )
        # Endpoints by name only (resolved from settings by the activity), and people's channels.
        planned, skipped = notices.plan(self.policy, event, activity)
        for item in planned:
            self.enqueue(
                Notice(
                    key=item.key,
                    activity=cast(Literal["notify", "cc_department_heads"], item.activity),
                    type=kind,
                    endpoint=item.endpoint,
                    deliver=item.deliver,
                    created_at=self.now,
                    next_attempt_at=self.now,
                    give_up_at=self.now + self.policy.notifications.retry_for,
                )
            )
        for left_out in skipped:
            self.record("notification_skipped", type=kind, event_id=event.id, **left_out)

    def enqueue(self, notice: Notice) -> None:
        self.s.outbox.append(notice)
        self.effects.append(notice)
        self._bound_outbox()
