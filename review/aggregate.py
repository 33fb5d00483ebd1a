"""Aggregation: the derived tickets of a period counted into a `Review`, grouped by one dimension
(rates, nearest-rank percentiles, time in tier, at-risk bands, a daily series).

Every metric is defined in docs/review.md ("Metrics: definitions"). Percentiles are nearest-rank: the p-th
of n sorted values is the value at rank ceil(p/100 * n).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from config.policy import Calendar
from review.business_time import Frozen, TicketCalendars
from review.derive import derive
from review.rows import TicketFacts
from review.ticket_review import Period, TicketReview

GroupBy = Literal["none", "department", "tier", "channel", "category", "priority", "policy_version"]
GROUP_BYS: tuple[str, ...] = ("none", "department", "tier", "channel", "category", "priority", "policy_version")
CLOCKS = ("first_response", "resolution")
BANDS = ("50-75", "75-90", "90-100", "breached")
TOP = 10


def percentile_rank(p: int, n: int) -> int:
    """The nearest rank of the p-th percentile of n values, ceil(p/100 * n), in whole numbers (the
    SQL review computes the same rank, `review/in_database.py`)."""
    return min(max(1, (p * n + 99) // 100), n)


def percentile(values: Sequence[float], p: int) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[percentile_rank(p, len(ordered)) - 1]


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
    humans = [t for t in items if t.reached_person]  # an untouched ticket did not reach a person
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


def check_period(group_by: str, since: datetime, until: datetime) -> None:
    if group_by not in GROUP_BYS:
        raise ValueError(f"group_by: unknown dimension {group_by!r} (known: {', '.join(GROUP_BYS)})")
    if until <= since:
        raise ValueError("until must be after since")


def at_risk(derived: Iterable[TicketReview], limit: int) -> tuple[dict[str, int], list[AtRiskTicket]]:
    """Open tickets per band of SLA used, and the `limit` most at risk."""
    risky = sorted(
        (t for t in derived if t.is_open and t.at_risk is not None),
        key=lambda t: (-(t.at_risk.used if t.at_risk else 0), t.ticket_id),
    )
    bands = Counter(t.at_risk.band for t in risky if t.at_risk)
    listed = []
    for t in risky[:limit]:
        assert t.at_risk is not None
        holder = next((p for p in reversed(t.periods)), None)
        listed.append(
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
    return {b: bands.get(b, 0) for b in BANDS}, listed


def series_of(days: Mapping[date, tuple[int, int, int]], since: datetime, until: datetime) -> list[DayPoint]:
    """The daily series from (opened, breached, escalated) per UTC day: a point per day, or for a
    period over 400 days only the days with tickets."""
    first_day, last_day = since.astimezone(UTC).date(), (until - timedelta(microseconds=1)).astimezone(UTC).date()
    if (last_day - first_day).days <= 400:
        day_list = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
    else:
        day_list = sorted(days)
    series = []
    for day in day_list:
        opened, breached, escalated = days.get(day, (0, 0, 0))
        series.append(
            DayPoint(
                day=day,
                opened=opened,
                breached=breached,
                escalated=escalated,
                breach_rate=breached / opened if opened else None,
                escalation_rate=escalated / opened if opened else None,
            )
        )
    return series


def ranked(counts: Mapping[str, int]) -> list[Ranked]:
    """The TOP most frequent, ties by name."""
    return [Ranked(name=k, count=v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]]


def review(
    tickets: Iterable[TicketFacts],
    calendars: Mapping[str, Calendar],
    *,
    since: datetime,
    until: datetime,
    now: datetime,
    group_by: str = "none",
    at_risk_limit: int = 200,
    frozen: Frozen | None = None,
) -> Review:
    """The review of the tickets opened in [since, until), grouped; at-risk counts every ticket open
    at `now`. Business time on each ticket's frozen calendars (`frozen`), else on `calendars`.
    (The same review, counted in the database: `review/in_database.py`.)"""
    check_period(group_by, since, until)
    cals = TicketCalendars(calendars, frozen)
    derived = [derive(t, cals.business(t.policy_version, t.opened_at), now) for t in tickets]
    in_period = [t for t in derived if since <= t.opened_at < until]
    grouped: dict[str, list[TicketReview]] = defaultdict(list)
    for t in in_period:
        grouped[t.group_key(group_by)].append(t)
    bands, at_risk_tickets = at_risk(derived, at_risk_limit)
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
    days: dict[date, list[TicketReview]] = defaultdict(list)
    for t in in_period:
        days[t.opened_at.astimezone(UTC).date()].append(t)
    counts = {
        day: (len(ts), sum(1 for t in ts if t.breaches), sum(1 for t in ts if t.escalations))
        for day, ts in days.items()
    }
    return Review(
        generated_at=now,
        since=since,
        until=until,
        group_by=group_by,
        overall=_group("all", in_period),
        groups=[_group(k, v) for k, v in sorted(grouped.items())] if group_by != "none" else [],
        at_risk=bands,
        at_risk_tickets=at_risk_tickets,
        time_in_tier=time_in_tier,
        reasons=ranked(Counter(e.reason for t in in_period for e in t.escalations)),
        ladder_steps=ranked(Counter(r for t in in_period for r in t.ladder_rules)),
        series=series_of(counts, since, until),
    )
