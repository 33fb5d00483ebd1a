"""Derivation: one ticket's timeline rows walked once into a `TicketReview`, what every metric counts.

Each row kind has its handler (`_HANDLERS`); the walk keeps the state between rows (running clocks,
pauses, the ownership period). Business time is counted on the calendar the ticket was routed
with, looked up in the calendars given; a calendar that is not there any more counts wall time.

The rows one decision writes share an instant, and their order must not matter: the workflow
writes a new tier's `sla_started` rows before its `tier_entered` row, a breach is dated at its
deadline. So a clock is closed only by what closes it (its own restart, an acknowledgement, the
resolution), a breach is matched to its clock run by deadline, and what depends on the whole walk
(breach magnitudes, a period's SLA target) is settled at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from review.business_time import Business
from review.rows import (
    SYSTEM_ACTOR,
    EventRow,
    TicketFacts,
    agent_of,
    normalise_reason,
    parse_time,
    tier_number,
)
from review.ticket_review import AtRisk, Breach, ClockRun, Escalation, Period, TicketReview
from workflows.durations import parse_duration


def derive(ticket: TicketFacts, business: Business, now: datetime) -> TicketReview:
    """Walk a ticket's rows once and derive everything the metrics count. A closed life (its
    workflow completed) is derived as of its closing: its numbers never change after."""
    if ticket.closed_at is not None:
        now = min(now, ticket.closed_at)
    walk = _Walk(_opening(ticket, now), business)
    for e in ticket.events:
        handler = _HANDLERS.get(e.kind)
        if handler is not None:
            handler(walk, e)
        if agent_of(e.actor):
            walk.review.reached_person = True
    walk.finish(now)
    if ticket.closed_at is not None:
        walk.review.is_open, walk.review.at_risk = False, None
    return walk.review


def _opening(ticket: TicketFacts, now: datetime) -> TicketReview:
    """The ticket as it was opened and routed, before any other row."""
    events = ticket.events
    opened = next((e for e in events if e.kind == "ticket_opened"), None)
    routed = next((e for e in events if e.kind == "routed"), None)
    rd = routed.detail if routed else {}
    opened_at = (
        ticket.opened_at
        or (parse_time(opened.detail.get("opened_at")) if opened else None)
        or (events[0].at if events else now)
    )
    return TicketReview(
        ticket_id=ticket.ticket_id,
        opened_at=opened_at,
        channel=ticket.channel,
        category=ticket.category,
        priority=str(rd.get("priority") or ticket.priority or "unknown"),
        policy_version=str(
            (opened.detail.get("policy_version") if opened else None) or ticket.policy_version or "unknown"
        ),
        department=str(rd.get("department") or "unknown"),
        tier=0 if rd.get("self_service") else tier_number(rd.get("tier")),
        calendar=rd.get("calendar"),
    )


class _Walk:
    """The state between rows: running clocks, pauses, the period that holds the ticket."""

    def __init__(self, review: TicketReview, business: Business) -> None:
        self.review = review
        self.business = business
        self.cal = review.calendar
        self.clocks: dict[str, ClockRun] = {}  # the running (or paused) run of each clock
        self.runs: list[ClockRun] = []  # every run, closed ones too, in the order they started
        self.pause_start: datetime | None = None
        self.pauses: list[tuple[datetime, datetime]] = []
        self.human_start: datetime | None = None
        self.current: Period | None = None

    # -------------------------------------------------------------------- state changes
    def close_clock(self, name: str, at: datetime) -> None:
        run = self.clocks.pop(name, None)
        if run is None:
            return
        if run.running_since is not None:
            run.segments.append((run.running_since, max(at, run.running_since)))
            run.running_since = None

    def close_all_clocks(self, at: datetime) -> None:
        for name in list(self.clocks):
            self.close_clock(name, at)

    def settle_breach(self, run: ClockRun) -> None:
        if run.breach is None:
            return
        d = run.breach.deadline
        run.breach.past = sum(
            (self.business.between(self.cal, max(s, d), e) for s, e in run.segments if e > d), timedelta(0)
        )

    def end_pause(self, at: datetime) -> None:
        if self.pause_start is not None:
            self.pauses.append((self.pause_start, max(at, self.pause_start)))
            self.pause_start = None

    def open_period(self, tier: int, department: str, at: datetime) -> None:
        self.close_period(at)
        self.current = Period(tier=tier, department=department, start=at)
        self.review.periods.append(self.current)

    def close_period(self, at: datetime) -> None:
        if self.current is not None and self.current.end is None:
            self.current.end = max(at, self.current.start)
        self.current = None

    def net(self, start: datetime, end: datetime) -> timedelta:
        return _net(self.business, self.cal, start, end, self.pauses)

    # -------------------------------------------------------------------- rows
    def self_service_offered(self, e: EventRow) -> None:
        self.review.self_service = True
        self.open_period(0, self.review.department, e.at)

    def tier_entered(self, e: EventRow) -> None:
        # No clock closes here: entering a tier restarts both clocks, each with its own row.
        review = self.review
        self.end_pause(e.at)
        tier = tier_number(e.detail.get("tier"))
        start = e.at
        if self.human_start is None:
            # The first tier's clocks start when the ticket opened (unless it went through Tier 0).
            start = e.at if review.self_service else min(review.opened_at, e.at)
            self.human_start = start
            review.tier = tier
        self.open_period(tier, str(e.detail.get("department") or review.department), start)
        review.is_open = True

    def sla_started(self, e: EventRow) -> None:
        d = e.detail
        name = str(d.get("clock"))
        self.close_clock(name, e.at)
        review = self.review
        start = e.at
        if name not in review.clocks_started:
            # The first tier's clocks start when the ticket opened (unless it went through Tier 0),
            # whether this row comes before or after its `tier_entered`.
            if self.human_start is not None:
                start = min(self.human_start, e.at)
            elif not review.self_service:
                start = min(review.opened_at, e.at)
        run = ClockRun(
            name=name,
            target=parse_duration(d.get("target")),
            deadline=parse_time(d.get("deadline")),
            running_since=start,
            started=start,
        )
        self.clocks[name] = run
        self.runs.append(run)
        review.clocks_started.add(name)

    def sla_paused(self, e: EventRow) -> None:
        for run in self.clocks.values():
            if run.running_since is not None:
                run.segments.append((run.running_since, e.at))
                run.running_since = None
                if run.deadline is not None:
                    run.remaining_at_pause = self.business.between(self.cal, e.at, run.deadline)
        self.pause_start = self.pause_start or e.at

    def sla_resumed(self, e: EventRow) -> None:
        self.end_pause(e.at)
        raw = e.detail.get("deadlines")
        deadlines: dict[str, Any] = raw if isinstance(raw, dict) else {}
        for name, run in self.clocks.items():
            if run.running_since is None:
                run.running_since = e.at
                run.remaining_at_pause = None
                run.deadline = parse_time(deadlines.get(name)) or run.deadline

    def priority_changed(self, e: EventRow) -> None:
        after_change = e.detail.get("deadlines_after")
        for name, value in after_change.items() if isinstance(after_change, dict) else []:
            if name in self.clocks:
                self.clocks[name].deadline = parse_time(value)

    def acknowledged(self, e: EventRow) -> None:
        self.close_clock("first_response", e.at)
        who = agent_of(e.actor)
        if who:
            self.review.assignees.add(who)
        if self.review.first_response is None and self.human_start is not None:
            self.review.first_response = self.net(self.human_start, e.at)

    def sla_breached(self, e: EventRow) -> None:
        name = str(e.detail.get("clock"))
        review, current = self.review, self.current
        holder = current or Period(tier=review.tier, department=review.department, start=e.at)
        breach = Breach(clock=name, deadline=e.at, tier=holder.tier, department=holder.department)
        if current is not None:
            current.breaches += 1
        review.breaches.append(breach)
        run = self.run_breached(name, parse_time(e.detail.get("deadline")) or e.at)
        if run is not None:
            run.breach = breach

    def run_breached(self, name: str, deadline: datetime) -> ClockRun | None:
        """The run of `name` that had this deadline (restarted or not since), else the latest one
        started by then."""
        runs = [r for r in reversed(self.runs) if r.name == name]
        exact = next((r for r in runs if r.deadline == deadline), None)
        return exact or next((r for r in runs if r.started is None or r.started <= deadline), None)

    def ladder_step(self, e: EventRow) -> None:
        self.review.ladder_rules.append(str(e.detail.get("rule") or "?"))

    def escalated(self, e: EventRow) -> None:
        d = e.detail
        review = self.review
        esc_kind = str(d.get("kind") or "hierarchical")
        if esc_kind == "functional":
            holder_dept = str(d.get("from_department") or review.department)
        else:
            holder_dept = str(d.get("department") or review.department)
        review.escalations.append(
            Escalation(
                at=e.at,
                kind=esc_kind,
                trigger=_trigger_of(e),
                reason=normalise_reason(d.get("reason")),
                department=holder_dept,
            )
        )
        if esc_kind == "functional":
            self.end_pause(e.at)
            # Out of a pause, the new department's clocks run on (the workflow resumes them without
            # an `sla_resumed` row): from here, with the time they had left.
            for run in self.clocks.values():
                if run.running_since is None and run.remaining_at_pause is not None:
                    run.running_since = e.at
                    run.deadline = self.business.add(self.cal, e.at, run.remaining_at_pause)
                    run.remaining_at_pause = None
            to = str(d.get("to_department") or "")
            current = self.current
            if current is not None and to and current.tier > 0 and to != current.department:
                self.open_period(current.tier, to, e.at)

    def reassigned(self, e: EventRow) -> None:
        before, after = e.detail.get("from") or {}, e.detail.get("to") or {}
        if not isinstance(after, dict):
            return
        if after.get("agent"):
            self.review.assignees.add(str(after["agent"]))
        dept = after.get("department")
        current = self.current
        if current is not None and dept and isinstance(before, dict) and dept != before.get("department"):
            self.open_period(current.tier, str(dept), e.at)

    def resolved(self, e: EventRow) -> None:
        review = self.review
        self.close_all_clocks(e.at)
        self.end_pause(e.at)
        if self.current is not None and self.current.tier == 0 and e.actor == "customer":
            review.deflected = True
        self.close_period(e.at)
        review.is_open = False
        if not review.resolved_once and self.human_start is not None:
            review.resolution = self.net(self.human_start, e.at)
        review.resolved_once = True

    def reopened(self, e: EventRow) -> None:
        self.review.reopens += 1
        self.review.is_open = True

    # -------------------------------------------------------------------- end
    def finish(self, now: datetime) -> None:
        """Still open: settle the clocks, the pause and the periods at `now`."""
        review = self.review
        for run in self.clocks.values():
            if run.running_since is not None:
                run.segments.append((run.running_since, max(now, run.running_since)))
        for run in self.runs:
            self.settle_breach(run)
        if review.is_open:
            review.at_risk = _at_risk(self.clocks, self.business, self.cal, now)
        if self.pause_start is not None:
            self.pauses.append((self.pause_start, max(now, self.pause_start)))
        review.paused = sum((b - a for a, b in self.pauses), timedelta(0))
        review.reached_person = review.reached_person or bool(review.assignees)
        for p in review.periods:
            p.business = self.net(p.start, p.end or now)
            # The SLA of the period: the resolution clock's run that was counting when it began.
            counting = [
                r for r in self.runs if r.name == "resolution" and r.started is not None and r.started <= p.start
            ]
            if counting:
                p.resolution_target = counting[-1].target


_HANDLERS: dict[str, Callable[[_Walk, EventRow], None]] = {
    "self_service_offered": _Walk.self_service_offered,
    "tier_entered": _Walk.tier_entered,
    "sla_started": _Walk.sla_started,
    "sla_paused": _Walk.sla_paused,
    "sla_resumed": _Walk.sla_resumed,
    "priority_changed": _Walk.priority_changed,
    "acknowledged": _Walk.acknowledged,
    "sla_breached": _Walk.sla_breached,
    "ladder_step": _Walk.ladder_step,
    "escalated": _Walk.escalated,
    "reassigned": _Walk.reassigned,
    "resolved": _Walk.resolved,
    "reopened": _Walk.reopened,
}


def _trigger_of(e: EventRow) -> str:
    """What made an escalation: a ladder step, the policy (system), or a person."""
    rule = e.detail.get("rule")
    if isinstance(rule, str) and rule.startswith("ladders."):
        return "ladder"
    if e.actor == SYSTEM_ACTOR:
        return "policy"
    return "manual"


def _net(
    business: Business, cal: str | None, start: datetime, end: datetime, pauses: Iterable[tuple[datetime, datetime]]
) -> timedelta:
    """Business time in [start, end] less the business time paused (waiting on the customer) inside it."""
    total = business.between(cal, start, end)
    for a, b in pauses:
        lo, hi = max(a, start), min(b, end)
        if hi > lo:
            total -= business.between(cal, lo, hi)
    return max(total, timedelta(0))


def _at_risk(clocks: Mapping[str, ClockRun], business: Business, cal: str | None, now: datetime) -> AtRisk | None:
    worst: AtRisk | None = None
    for run in clocks.values():
        if run.target is None or run.target <= timedelta(0):
            continue
        if run.running_since is not None and run.deadline is not None:
            if now >= run.deadline:
                used = 1.0 + business.between(cal, run.deadline, now) / run.target
            else:
                used = 1.0 - business.between(cal, now, run.deadline) / run.target
        elif run.remaining_at_pause is not None:
            used = 1.0 - run.remaining_at_pause / run.target
        else:
            continue
        if run.breach is not None:
            used = max(used, 1.0)
        band = band_of(used)
        if band is None:
            continue
        if worst is None or used > worst.used:
            worst = AtRisk(clock=run.name, used=used, deadline=run.deadline, band=band)
    return worst


def band_of(used: float) -> str | None:
    if used >= 1.0:
        return "breached"
    if used >= 0.9:
        return "90-100"
    if used >= 0.75:
        return "75-90"
    if used >= 0.5:
        return "50-75"
    return None


# The rows a derivation reads: those with a handler, the opening and routing rows, and any row a
# person acted in (`reached_person`, `rows.PERSON_ROLES`). The review loads only these (notification rows are most
# of a long ticket's timeline and change no number).
READ_KINDS: frozenset[str] = frozenset(_HANDLERS) | {"ticket_opened", "routed"}
