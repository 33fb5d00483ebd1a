"""Review metrics over stored tickets: pure functions, no database and no Temporal import.

Input: each ticket's summary facts (`TicketFacts`: channel, category, ...) and its timeline rows
(`EventRow`: the workflow's own timeline events as the record store keeps them, in order). Output:
a `Review` for a period, grouped by one dimension. Every metric is defined in docs/review.md
("Metrics: definitions"); the docstrings here say the same in code terms.

Business time is counted on the calendar the ticket was routed with (`routed.calendar`), looked up
in the `calendars` given (the policy in force); a calendar that is not there any more counts wall
time. Percentiles are nearest-rank: p-th of n sorted values is the value at rank ceil(p/100 * n).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from config.policy import Calendar
from workflows.clock import CalendarError, business_time_between

GroupBy = Literal["none", "department", "tier", "channel", "category", "priority", "policy_version"]
GROUP_BYS: tuple[str, ...] = ("none", "department", "tier", "channel", "category", "priority", "policy_version")
CLOCKS = ("first_response", "resolution")
SYSTEM_ACTOR = "system:escalation-policy"
BANDS = ("50-75", "75-90", "90-100", "breached")
TOP = 10


# ---------------------------------------------------------------------------------- inputs
class EventRow(BaseModel):
    """One row of a ticket's timeline (the workflow's own account), as stored."""

    model_config = ConfigDict(extra="ignore")

    at: AwareDatetime
    kind: str
    actor: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class TicketFacts(BaseModel):
    """A stored ticket: what the summary knows plus its timeline rows in the order they happened."""

    model_config = ConfigDict(extra="ignore")

    ticket_id: str
    channel: str = "unknown"
    category: str = "unknown"
    priority: str | None = Field(default=None, description="None: the routed priority from the timeline")
    opened_at: AwareDatetime | None = None
    events: list[EventRow] = Field(default_factory=list)


# ---------------------------------------------------------------------------------- helpers
def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


_DURATION = re.compile(r"^(?:(?P<days>-?\d+) days?, )?(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d(?:\.\d+)?)$")


_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: Any) -> timedelta | None:
    """`str(timedelta)` as the workflow writes it ('1 day, 2:00:00', '0:30:00'), ISO 8601 ('PT4H',
    'P1DT2H') as the exported timeline writes it, or seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return timedelta(seconds=float(text))
    if not isinstance(text, str):
        return None
    iso = _ISO_DURATION.match(text.strip())
    if iso and text.strip() not in ("P", "PT"):
        return timedelta(
            days=float(iso["d"] or 0),
            hours=float(iso["h"] or 0),
            minutes=float(iso["m"] or 0),
            seconds=float(iso["s"] or 0),
        )
    m = _DURATION.match(text.strip())
    if not m:
        return None
    return timedelta(days=int(m["days"] or 0), hours=int(m["h"]), minutes=int(m["m"]), seconds=float(m["s"]))


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _int(value: Any) -> int:
    """A tier number from a stored row; anything unreadable counts as 0."""
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _agent_of(actor: str | None) -> str | None:
    if not actor or ":" not in actor:
        return None
    role, _, ident = actor.partition(":")
    return ident if role in ("agent", "lead", "manager") and ident else None


_REPEAT = re.compile(r" \(repeat \d+\)|; \d+ earlier reminder\(s\) missed.*$")


def normalise_reason(reason: Any) -> str:
    text = _REPEAT.sub("", str(reason or "")).strip()
    return (text[:200] or "(no reason given)").lower()


class Business:
    """Business time on a named calendar; wall time for a calendar it does not know."""

    def __init__(self, calendars: Mapping[str, Calendar]) -> None:
        self._calendars = calendars

    def between(self, calendar: str | None, start: datetime, end: datetime) -> timedelta:
        if end <= start:
            return timedelta(0)
        cal = self._calendars.get(calendar or "")
        if cal is None:
            return end - start
        try:
            return business_time_between(cal, start, end)
        except CalendarError:
            return end - start


# ---------------------------------------------------------------------------------- per ticket
@dataclass
class Period:
    """An ownership period: the ticket held by one tier and department."""

    tier: int
    department: str
    start: datetime
    end: datetime | None = None
    resolution_target: timedelta | None = None
    business: timedelta = timedelta(0)
    breaches: int = 0


@dataclass
class Breach:
    clock: str
    deadline: datetime
    tier: int
    department: str
    past: timedelta = timedelta(0)  # business time past the deadline while the clock ran on


@dataclass
class Escalation:
    at: datetime
    kind: str  # functional | hierarchical
    trigger: str  # ladder | manual | policy
    reason: str
    department: str  # the department that held the ticket (and escalated it)


@dataclass
class _ClockRun:
    name: str
    target: timedelta | None
    deadline: datetime | None
    running_since: datetime | None
    segments: list[tuple[datetime, datetime]] = field(default_factory=list)
    remaining_at_pause: timedelta | None = None
    breach: Breach | None = None


@dataclass
class AtRisk:
    clock: str
    used: float  # share of the SLA target used, 1.0 or more: breached
    deadline: datetime | None
    band: str


@dataclass
class TicketReview:
    """What the metrics need to know about one ticket, derived from its rows."""

    ticket_id: str
    opened_at: datetime
    channel: str
    category: str
    priority: str
    policy_version: str
    department: str  # at routing
    tier: int  # the first human tier (0 while only self-service)
    calendar: str | None
    is_open: bool = True
    resolved_once: bool = False
    reopens: int = 0
    self_service: bool = False
    deflected: bool = False
    clocks_started: set[str] = field(default_factory=set)
    first_response: timedelta | None = None
    resolution: timedelta | None = None
    paused: timedelta = timedelta(0)
    periods: list[Period] = field(default_factory=list)
    breaches: list[Breach] = field(default_factory=list)
    escalations: list[Escalation] = field(default_factory=list)
    ladder_rules: list[str] = field(default_factory=list)
    assignees: set[str] = field(default_factory=set)
    at_risk: AtRisk | None = None

    @property
    def departments(self) -> set[str]:
        return {p.department for p in self.periods if p.tier > 0} or {self.department}

    def group_key(self, by: str) -> str:
        if by == "none":
            return "all"
        value = self.tier if by == "tier" else getattr(self, by)
        return str(value)


def derive(ticket: TicketFacts, business: Business, now: datetime) -> TicketReview:
    """Walk a ticket's rows once and derive everything the metrics count."""
    events = ticket.events
    opened = next((e for e in events if e.kind == "ticket_opened"), None)
    routed = next((e for e in events if e.kind == "routed"), None)
    rd = routed.detail if routed else {}
    opened_at = (
        ticket.opened_at
        or (_parse_time(opened.detail.get("opened_at")) if opened else None)
        or (events[0].at if events else now)
    )
    review = TicketReview(
        ticket_id=ticket.ticket_id,
        opened_at=opened_at,
        channel=ticket.channel,
        category=ticket.category,
        priority=str(rd.get("priority") or ticket.priority or "unknown"),
        policy_version=str((opened.detail.get("policy_version") if opened else None) or "unknown"),
        department=str(rd.get("department") or "unknown"),
        tier=0 if rd.get("self_service") else _int(rd.get("tier")),
        calendar=rd.get("calendar"),
    )
    cal = review.calendar
    clocks: dict[str, _ClockRun] = {}
    pause_start: datetime | None = None
    pauses: list[tuple[datetime, datetime]] = []
    human_start: datetime | None = None
    current: Period | None = None

    def close_clock(name: str, at: datetime) -> None:
        run = clocks.pop(name, None)
        if run is None:
            return
        if run.running_since is not None:
            run.segments.append((run.running_since, max(at, run.running_since)))
            run.running_since = None
        _settle_breach(run)

    def _settle_breach(run: _ClockRun) -> None:
        if run.breach is None:
            return
        d = run.breach.deadline
        run.breach.past = sum((business.between(cal, max(s, d), e) for s, e in run.segments if e > d), timedelta(0))

    def end_pause(at: datetime) -> None:
        nonlocal pause_start
        if pause_start is not None:
            pauses.append((pause_start, max(at, pause_start)))
            pause_start = None

    def open_period(tier: int, department: str, at: datetime) -> None:
        nonlocal current
        close_period(at)
        current = Period(tier=tier, department=department, start=at)
        review.periods.append(current)

    def close_period(at: datetime) -> None:
        nonlocal current
        if current is not None and current.end is None:
            current.end = max(at, current.start)
        current = None

    for e in events:
        d = e.detail
        kind = e.kind
        if kind == "self_service_offered":
            review.self_service = True
            open_period(0, review.department, e.at)
        elif kind == "tier_entered":
            for name in list(clocks):
                close_clock(name, e.at)
            end_pause(e.at)
            tier = _int(d.get("tier"))
            start = e.at
            if human_start is None:
                # The first tier's clocks start when the ticket opened (unless it went through Tier 0).
                start = e.at if review.self_service else min(opened_at, e.at)
                human_start = start
                review.tier = tier
            open_period(tier, str(d.get("department") or review.department), start)
            review.is_open = True
        elif kind == "sla_started":
            name = str(d.get("clock"))
            close_clock(name, e.at)
            start = human_start if (human_start is not None and name not in review.clocks_started) else e.at
            run = _ClockRun(
                name=name,
                target=parse_duration(d.get("target")),
                deadline=_parse_time(d.get("deadline")),
                running_since=min(start, e.at) if start else e.at,
            )
            clocks[name] = run
            review.clocks_started.add(name)
            if name == "resolution" and current is not None:
                current.resolution_target = run.target
        elif kind == "sla_paused":
            for run in clocks.values():
                if run.running_since is not None:
                    run.segments.append((run.running_since, e.at))
                    run.running_since = None
                    if run.deadline is not None:
                        run.remaining_at_pause = business.between(cal, e.at, run.deadline)
            pause_start = pause_start or e.at
        elif kind == "sla_resumed":
            end_pause(e.at)
            raw = d.get("deadlines")
            deadlines: dict[str, Any] = raw if isinstance(raw, dict) else {}
            for name, run in clocks.items():
                if run.running_since is None:
                    run.running_since = e.at
                    run.remaining_at_pause = None
                    run.deadline = _parse_time(deadlines.get(name)) or run.deadline
        elif kind == "priority_changed":
            after_change = d.get("deadlines_after")
            for name, value in after_change.items() if isinstance(after_change, dict) else []:
                if name in clocks:
                    clocks[name].deadline = _parse_time(value)
        elif kind == "acknowledged":
            close_clock("first_response", e.at)
            who = _agent_of(e.actor)
            if who:
                review.assignees.add(who)
            if review.first_response is None and human_start is not None:
                review.first_response = _net(business, cal, human_start, e.at, pauses)
        elif kind == "sla_breached":
            name = str(d.get("clock"))
            holder = current or Period(tier=review.tier, department=review.department, start=e.at)
            breach = Breach(clock=name, deadline=e.at, tier=holder.tier, department=holder.department)
            if current is not None:
                current.breaches += 1
            review.breaches.append(breach)
            if name in clocks:
                clocks[name].breach = breach
        elif kind == "ladder_step":
            review.ladder_rules.append(str(d.get("rule") or "?"))
        elif kind == "escalated":
            esc_kind = str(d.get("kind") or "hierarchical")
            rule = d.get("rule")
            if isinstance(rule, str) and rule.startswith("ladders."):
                trigger = "ladder"
            elif e.actor == SYSTEM_ACTOR:
                trigger = "policy"
            else:
                trigger = "manual"
            if esc_kind == "functional":
                holder_dept = str(d.get("from_department") or review.department)
            else:
                holder_dept = str(d.get("department") or review.department)
            review.escalations.append(
                Escalation(
                    at=e.at,
                    kind=esc_kind,
                    trigger=trigger,
                    reason=normalise_reason(d.get("reason")),
                    department=holder_dept,
                )
            )
            if esc_kind == "functional":
                end_pause(e.at)
                to = str(d.get("to_department") or "")
                if current is not None and to and current.tier > 0 and to != current.department:
                    open_period(current.tier, to, e.at)
        elif kind == "reassigned":
            before, after = d.get("from") or {}, d.get("to") or {}
            if isinstance(after, dict):
                if after.get("agent"):
                    review.assignees.add(str(after["agent"]))
                dept = after.get("department")
                if current is not None and dept and isinstance(before, dict) and dept != before.get("department"):
                    open_period(current.tier, str(dept), e.at)
        elif kind == "resolved":
            for name in list(clocks):
                close_clock(name, e.at)
            end_pause(e.at)
            if current is not None and current.tier == 0 and e.actor == "customer":
                review.deflected = True
            close_period(e.at)
            review.is_open = False
            if not review.resolved_once and human_start is not None:
                review.resolution = _net(business, cal, human_start, e.at, pauses)
            review.resolved_once = True
        elif kind == "reopened":
            review.reopens += 1
            review.is_open = True

    # Still open: settle at `now`.
    for run in clocks.values():
        if run.running_since is not None:
            run.segments.append((run.running_since, max(now, run.running_since)))
        _settle_breach(run)
    if review.is_open:
        review.at_risk = _at_risk(clocks, business, cal, now)
    if pause_start is not None:
        pauses.append((pause_start, max(now, pause_start)))
    review.paused = sum((b - a for a, b in pauses), timedelta(0))
    for p in review.periods:
        end = p.end or now
        p.business = _net(business, cal, p.start, end, pauses)
    return review


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


def _at_risk(clocks: Mapping[str, _ClockRun], business: Business, cal: str | None, now: datetime) -> AtRisk | None:
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


# ---------------------------------------------------------------------------------- outputs
class Rate(BaseModel):
    count: int
    of: int
    rate: float | None = Field(description="count / of; null when of is 0")


def rate(count: int, of: int) -> Rate:
    return Rate(count=count, of=of, rate=(count / of) if of else None)


class Spread(BaseModel):
    """Durations in seconds (business time unless the name says otherwise)."""

    n: int
    p50: float | None
    p90: float | None


def spread(values: Sequence[timedelta]) -> Spread:
    secs = [v.total_seconds() for v in values]
    return Spread(n=len(secs), p50=percentile(secs, 50), p90=percentile(secs, 90))


class ClockBreaches(BaseModel):
    breached: Rate = Field(description="tickets whose clock breached at least once / tickets whose clock started")
    past_deadline: Spread = Field(description="business seconds past the deadline, per breach")


class Escalations(BaseModel):
    escalated: Rate = Field(description="tickets escalated at least once / tickets")
    functional: Rate
    hierarchical: Rate
    ladder: Rate = Field(description="tickets escalated by a ladder step")
    manual: Rate = Field(description="tickets escalated by a person")
    total: int = Field(description="escalations (a ticket can have several)")
    by_kind: dict[str, int]
    by_trigger: dict[str, int]


class Handoffs(BaseModel):
    departments_per_ticket: float | None
    assignees_per_ticket: float | None
    more_than_one_department: Rate


class GroupMetrics(BaseModel):
    key: str
    tickets: int = Field(description="tickets opened in the period")
    open_now: int
    breaches: dict[str, ClockBreaches]
    escalations: Escalations
    handoffs: Handoffs
    resolved_in_first_tier: Rate
    reopened: Rate
    tier0_deflection: Rate
    first_response: Spread
    resolution: Spread
    paused_seconds: Spread = Field(description="wall-clock seconds waiting on the customer, per ticket that paused")


class Ranked(BaseModel):
    name: str
    count: int


class TierRow(BaseModel):
    tier: int
    department: str
    periods: int
    business_seconds: Spread
    share_of_sla: Spread = Field(description="period business time / the tier's resolution target (as a ratio)")
    breaches: int = Field(description="breaches while this tier and department held the ticket")


class AtRiskTicket(BaseModel):
    ticket_id: str
    department: str
    tier: int
    priority: str
    clock: str
    used: float
    band: str
    deadline: AwareDatetime | None
    timeline: str


class DayPoint(BaseModel):
    day: date
    opened: int
    breached: int
    escalated: int
    breach_rate: float | None
    escalation_rate: float | None


class Review(BaseModel):
    generated_at: AwareDatetime
    since: AwareDatetime
    until: AwareDatetime
    group_by: str
    overall: GroupMetrics
    groups: list[GroupMetrics]
    at_risk: dict[str, int] = Field(description="open tickets now per band of SLA used")
    at_risk_tickets: list[AtRiskTicket]
    time_in_tier: list[TierRow]
    reasons: list[Ranked]
    ladder_steps: list[Ranked]
    series: list[DayPoint]


def _group(key: str, items: Sequence[TicketReview]) -> GroupMetrics:
    n = len(items)
    breaches: dict[str, ClockBreaches] = {}
    for clock in CLOCKS:
        started = [t for t in items if clock in t.clocks_started]
        hit = [t for t in started if any(b.clock == clock for b in t.breaches)]
        past = [b.past for t in items for b in t.breaches if b.clock == clock]
        breaches[clock] = ClockBreaches(breached=rate(len(hit), len(started)), past_deadline=spread(past))

    def tickets_with(pred: Any) -> int:
        return sum(1 for t in items if any(pred(e) for e in t.escalations))

    all_esc = [e for t in items for e in t.escalations]
    escalations = Escalations(
        escalated=rate(sum(1 for t in items if t.escalations), n),
        functional=rate(tickets_with(lambda e: e.kind == "functional"), n),
        hierarchical=rate(tickets_with(lambda e: e.kind == "hierarchical"), n),
        ladder=rate(tickets_with(lambda e: e.trigger == "ladder"), n),
        manual=rate(tickets_with(lambda e: e.trigger == "manual"), n),
        total=len(all_esc),
        by_kind=dict(Counter(e.kind for e in all_esc)),
        by_trigger=dict(Counter(e.trigger for e in all_esc)),
    )
    humans = [t for t in items if t.tier > 0 or any(p.tier > 0 for p in t.periods)]
    handoffs = Handoffs(
        departments_per_ticket=statistics.fmean(len(t.departments) for t in humans) if humans else None,
        assignees_per_ticket=statistics.fmean(len(t.assignees) for t in humans) if humans else None,
        more_than_one_department=rate(sum(1 for t in humans if len(t.departments) > 1), len(humans)),
    )
    resolved_humans = [t for t in humans if t.resolved_once]
    first_tier = [t for t in resolved_humans if not any(e.kind == "hierarchical" for e in t.escalations)]
    resolved = [t for t in items if t.resolved_once]
    offered = [t for t in items if t.self_service]
    return GroupMetrics(
        key=key,
        tickets=n,
        open_now=sum(1 for t in items if t.is_open),
        breaches=breaches,
        escalations=escalations,
        handoffs=handoffs,
        resolved_in_first_tier=rate(len(first_tier), len(resolved_humans)),
        reopened=rate(sum(1 for t in resolved if t.reopens), len(resolved)),
        tier0_deflection=rate(sum(1 for t in offered if t.deflected), len(offered)),
        first_response=spread([t.first_response for t in items if t.first_response is not None]),
        resolution=spread([t.resolution for t in items if t.resolution is not None]),
        paused_seconds=spread([t.paused for t in items if t.paused > timedelta(0)]),
    )


def review(
    tickets: Iterable[TicketFacts],
    calendars: Mapping[str, Calendar],
    *,
    since: datetime,
    until: datetime,
    now: datetime,
    group_by: str = "none",
    at_risk_limit: int = 200,
) -> Review:
    """The review of the tickets opened in [since, until), grouped; at-risk counts every ticket open at `now`."""
    if group_by not in GROUP_BYS:
        raise ValueError(f"group_by: unknown dimension {group_by!r} (known: {', '.join(GROUP_BYS)})")
    if until <= since:
        raise ValueError("until must be after since")
    business = Business(calendars)
    derived = [derive(t, business, now) for t in tickets]
    in_period = [t for t in derived if since <= t.opened_at < until]
    grouped: dict[str, list[TicketReview]] = defaultdict(list)
    for t in in_period:
        grouped[t.group_key(group_by)].append(t)

    risky = sorted(
        (t for t in derived if t.is_open and t.at_risk is not None),
        key=lambda t: (-(t.at_risk.used if t.at_risk else 0), t.ticket_id),
    )
    bands = Counter(t.at_risk.band for t in risky if t.at_risk)
    at_risk_tickets = []
    for t in risky[:at_risk_limit]:
        assert t.at_risk is not None
        holder = next((p for p in reversed(t.periods)), None)
        at_risk_tickets.append(
            AtRiskTicket(
                ticket_id=t.ticket_id,
                department=holder.department if holder else t.department,
                tier=holder.tier if holder else t.tier,
                priority=t.priority,
                clock=t.at_risk.clock,
                used=round(t.at_risk.used, 4),
                band=t.at_risk.band,
                deadline=t.at_risk.deadline,
                timeline=f"/tickets/{t.ticket_id}/timeline?format=md",
            )
        )

    tiers: dict[tuple[int, str], list[Period]] = defaultdict(list)
    for t in in_period:
        for p in t.periods:
            tiers[(p.tier, p.department)].append(p)
    time_in_tier = [
        TierRow(
            tier=tier,
            department=dept,
            periods=len(ps),
            business_seconds=spread([p.business for p in ps]),
            share_of_sla=Spread(
                n=len(shares := [p.business / p.resolution_target for p in ps if p.resolution_target]),
                p50=percentile(shares, 50),
                p90=percentile(shares, 90),
            ),
            breaches=sum(p.breaches for p in ps),
        )
        for (tier, dept), ps in sorted(tiers.items())
    ]
    reasons = Counter(e.reason for t in in_period for e in t.escalations)
    steps = Counter(r for t in in_period for r in t.ladder_rules)

    days: dict[date, list[TicketReview]] = defaultdict(list)
    for t in in_period:
        days[t.opened_at.astimezone(UTC).date()].append(t)
    series = []
    first_day, last_day = since.astimezone(UTC).date(), (until - timedelta(microseconds=1)).astimezone(UTC).date()
    if (last_day - first_day).days <= 400:  # a point per day; longer periods list only days with tickets
        day_list = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
    else:
        day_list = sorted(days)
    for day in day_list:
        ts = days.get(day, [])
        breached = sum(1 for t in ts if t.breaches)
        escalated = sum(1 for t in ts if t.escalations)
        series.append(
            DayPoint(
                day=day,
                opened=len(ts),
                breached=breached,
                escalated=escalated,
                breach_rate=breached / len(ts) if ts else None,
                escalation_rate=escalated / len(ts) if ts else None,
            )
        )
    return Review(
        generated_at=now,
        since=since,
        until=until,
        group_by=group_by,
        overall=_group("all", in_period),
        groups=[_group(k, v) for k, v in sorted(grouped.items())] if group_by != "none" else [],
        at_risk={b: bands.get(b, 0) for b in BANDS},
        at_risk_tickets=at_risk_tickets,
        time_in_tier=time_in_tier,
        reasons=[Ranked(name=k, count=v) for k, v in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]],
        ladder_steps=[Ranked(name=k, count=v) for k, v in sorted(steps.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]],
        series=series,
    )


# ---------------------------------------------------------------------------------- spikes
class Spike(BaseModel):
    department: str
    day: date
    measure: Literal["escalations", "breaches"]
    count: int
    mean: float
    upper: float = Field(description="top of the normal band: mean + sigma x standard deviation, at least the floor")
    baseline_days: int


def daily_counts(
    tickets: Iterable[TicketFacts], calendars: Mapping[str, Calendar], now: datetime
) -> dict[tuple[str, date, str], int]:
    """(department, UTC day, measure) -> count of escalations (by the department that escalated) and
    breaches (by the department that held the ticket), by the day they happened."""
    business = Business(calendars)
    counts: Counter[tuple[str, date, str]] = Counter()
    for t in tickets:
        r = derive(t, business, now)
        for e in r.escalations:
            counts[(e.department, e.at.astimezone(UTC).date(), "escalations")] += 1
        for b in r.breaches:
            counts[(b.department, b.deadline.astimezone(UTC).date(), "breaches")] += 1
    return dict(counts)


def find_spikes(
    counts: Mapping[tuple[str, date, str], int],
    day: date,
    *,
    baseline_days: int = 28,
    sigma: float = 3.0,
    floor: int = 5,
) -> list[Spike]:
    """Departments whose escalations or breaches on `day` are above the normal band of the
    `baseline_days` before it: more than mean + sigma x (population) standard deviation, and at
    least `floor` (a quiet department's second escalation is not a spike)."""
    departments = sorted({k[0] for k in counts})
    spikes = []
    for dept in departments:
        for measure in ("escalations", "breaches"):
            today = counts.get((dept, day, measure), 0)
            if today < floor:
                continue
            history = [counts.get((dept, day - timedelta(days=i), measure), 0) for i in range(1, baseline_days + 1)]
            mean = statistics.fmean(history)
            upper = max(mean + sigma * statistics.pstdev(history), float(floor) - 0.5)
            if today > upper:
                spikes.append(
                    Spike(
                        department=dept,
                        day=day,
                        measure=measure,
                        count=today,
                        mean=round(mean, 3),
                        upper=round(upper, 3),
                        baseline_days=baseline_days,
                    )
                )
    return spikes
