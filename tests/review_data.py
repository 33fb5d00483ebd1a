"""A generated set of tickets whose review answers are known by construction.

Each ticket's timeline rows are written the way the workflow writes them (same kinds, details,
actors and order), from a few drawn parameters; `Expected` keeps its own tally of what the review
must say, counted from the parameters, not from the rows. All on the always-open calendar, so
business time is wall time (business calendars have their own known-answer test).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from review.rows import EventRow, TicketFacts

DEPARTMENTS = ("billing", "support", "technical")
CHANNELS = ("email", "chat", "web")
CATEGORIES = ("billing", "account", "outage")
FR_TARGET = timedelta(hours=4)
RES_TARGET = timedelta(days=1)
T2_FR, T2_RES = timedelta(hours=1), timedelta(hours=12)
SYSTEM = "system:escalation-policy"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=30)


@dataclass
class Expected:
    tickets: Counter[str] = field(default_factory=Counter)  # department -> tickets opened in the period
    fr_started: Counter[str] = field(default_factory=Counter)
    fr_breached: Counter[str] = field(default_factory=Counter)
    fr_past: list[float] = field(default_factory=list)  # seconds, every breach
    res_started: Counter[str] = field(default_factory=Counter)
    res_breached: Counter[str] = field(default_factory=Counter)
    res_past: list[float] = field(default_factory=list)
    escalated: Counter[str] = field(default_factory=Counter)
    functional: int = 0
    hierarchical: int = 0
    ladder: int = 0
    manual: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    ladder_steps: Counter[str] = field(default_factory=Counter)
    first_response: list[float] = field(default_factory=list)
    resolution: list[float] = field(default_factory=list)
    paused: list[float] = field(default_factory=list)
    offered: int = 0
    deflected: int = 0
    resolved: int = 0
    reopened: int = 0
    resolved_humans: int = 0
    resolved_first_tier: int = 0
    at_risk: Counter[str] = field(default_factory=Counter)  # band -> open tickets
    multi_department: int = 0
    humans: int = 0
    by_policy: Counter[str] = field(default_factory=Counter)
    time_in_tier: dict[tuple[int, str], list[float]] = field(default_factory=lambda: defaultdict(list))


class _Rows:
    def __init__(self) -> None:
        self.rows: list[EventRow] = []

    def add(self, at: datetime, what: str, actor: str | None = SYSTEM, /, **detail: Any) -> None:
        self.rows.append(EventRow(at=at, kind=what, actor=actor, detail=detail))


def _clocks(r: _Rows, at: datetime, start: datetime, fr: timedelta, res: timedelta) -> None:
    r.add(
        at, "sla_started", clock="first_response", target=str(fr), calendar="always", deadline=(start + fr).isoformat()
    )
    r.add(at, "sla_started", clock="resolution", target=str(res), calendar="always", deadline=(start + res).isoformat())


def generate(n: int = 300, seed: int = 8) -> tuple[list[TicketFacts], Expected]:
    """`n` tickets opened in the 30 days before NOW, plus open tickets at known shares of their SLA."""
    rnd = random.Random(seed)
    ex = Expected()
    tickets: list[TicketFacts] = []
    for i in range(n):
        dept = DEPARTMENTS[i % 3]
        policy = "v1" if i % 2 else "v2"
        opened = SINCE + timedelta(minutes=rnd.randrange(0, 28 * 24 * 60))
        r = _Rows()
        r.add(
            opened, "ticket_opened", "source:test", policy_version=policy, source="test", opened_at=opened.isoformat()
        )
        self_service = rnd.random() < 0.1
        r.add(
            opened,
            "routed",
            route="r",
            reason="matched",
            tier=1,
            department=dept,
            calendar="always",
            priority="normal",
            self_service=self_service,
        )
        ex.tickets[dept] += 1
        ex.by_policy[policy] += 1
        start = opened
        if self_service:
            ex.offered += 1
            r.add(opened, "self_service_offered", kb_url="https://kb", until=(opened + timedelta(hours=2)).isoformat())
            ex.time_in_tier[(0, dept)]
            if rnd.random() < 0.5:
                solved = opened + timedelta(minutes=rnd.randrange(5, 100))
                r.add(solved, "resolved", "customer", resolution="solved by self-service")
                ex.deflected += 1
                ex.resolved += 1
                ex.time_in_tier[(0, dept)].append((solved - opened).total_seconds())
                tickets.append(_facts(i, r, dept))
                continue
            start = opened + timedelta(hours=2)
            r.add(start, "self_service_expired")
            ex.time_in_tier[(0, dept)].append((start - opened).total_seconds())
        ex.humans += 1
        r.add(start, "tier_entered", tier=1, department=dept, queue=f"{dept}-t1", why="initial route")
        _clocks(r, start, start, FR_TARGET, RES_TARGET)
        ex.fr_started[dept] += 1
        ex.res_started[dept] += 1
        fr = timedelta(minutes=rnd.randrange(10, 400))
        fr_breach = fr > FR_TARGET
        if fr_breach:
            r.add(start + FR_TARGET, "sla_breached", clock="first_response", deadline=(start + FR_TARGET).isoformat())
            r.add(
                start + FR_TARGET,
                "ladder_step",
                rule="ladders.first_response[1] (fr-breach)",
                clock="first_response",
                reason="first_response SLA after breach",
            )
            ex.fr_breached[dept] += 1
            ex.fr_past.append((fr - FR_TARGET).total_seconds())
            ex.ladder_steps["ladders.first_response[1] (fr-breach)"] += 1
        agent = f"a{rnd.randrange(5)}"
        r.add(start + fr, "acknowledged", f"agent:{agent}")
        ex.first_response.append(fr.total_seconds())
        cursor = start + fr
        paused = timedelta(0)
        if rnd.random() < 0.2:
            paused = timedelta(minutes=rnd.randrange(30, 600))
            r.add(cursor + timedelta(minutes=1), "sla_paused", f"agent:{agent}")
            r.add(
                cursor + timedelta(minutes=1) + paused,
                "sla_resumed",
                "customer",
                deadlines={"resolution": (start + RES_TARGET + paused).isoformat()},
            )
            cursor += timedelta(minutes=1) + paused
            ex.paused.append(paused.total_seconds())
        ticket_paused = paused
        roll = rnd.random()
        tier, holder = 1, dept
        period_start = start
        escalated_at: datetime | None = None
        if roll < 0.1:  # manual hierarchical escalation to tier 2
            escalated_at = cursor + timedelta(minutes=5)
            ex.time_in_tier[(1, dept)].append((escalated_at - period_start - paused).total_seconds())
            r.add(escalated_at, "tier_entered", tier=2, department=dept, queue=f"{dept}-t2", why="hierarchical")
            _clocks(r, escalated_at, escalated_at, T2_FR, T2_RES)
            r.add(
                escalated_at,
                "escalated",
                "lead:lee",
                kind="hierarchical",
                from_tier=1,
                to_tier=2,
                department=dept,
                rule=None,
                reason="Needs a specialist",
            )
            r.add(escalated_at + timedelta(minutes=3), "acknowledged", "agent:t2")
            ex.hierarchical += 1
            ex.manual += 1
            ex.reasons["needs a specialist"] += 1
            tier, period_start, paused = 2, escalated_at, timedelta(0)
        elif roll < 0.18:  # ladder hierarchical escalation
            escalated_at = cursor + timedelta(minutes=7)
            ex.time_in_tier[(1, dept)].append((escalated_at - period_start - paused).total_seconds())
            rule = "ladders.resolution[2] (res-escalate)"
            r.add(
                escalated_at,
                "ladder_step",
                rule=rule,
                clock="resolution",
                reason="resolution SLA after breach (repeat 1)",
            )
            r.add(escalated_at, "tier_entered", tier=2, department=dept, queue=f"{dept}-t2", why="hierarchical")
            _clocks(r, escalated_at, escalated_at, T2_FR, T2_RES)
            r.add(
                escalated_at,
                "escalated",
                SYSTEM,
                kind="hierarchical",
                from_tier=1,
                to_tier=2,
                department=dept,
                rule=rule,
                reason="resolution SLA after breach (repeat 1)",
            )
            r.add(escalated_at + timedelta(minutes=3), "acknowledged", "agent:t2")
            ex.hierarchical += 1
            ex.ladder += 1
            ex.reasons["resolution sla after breach"] += 1
            ex.ladder_steps[rule] += 1
            tier, period_start, paused = 2, escalated_at, timedelta(0)
        elif roll < 0.25:  # functional escalation to another department
            escalated_at = cursor + timedelta(minutes=9)
            other = DEPARTMENTS[(i + 1) % 3]
            ex.time_in_tier[(1, dept)].append((escalated_at - period_start - paused).total_seconds())
            r.add(
                escalated_at,
                "sla_started",
                clock="first_response",
                target=str(FR_TARGET),
                calendar="always",
                deadline=(escalated_at + FR_TARGET).isoformat(),
            )
            r.add(
                escalated_at,
                "escalated",
                "agent:" + agent,
                kind="functional",
                from_department=dept,
                to_department=other,
                tier=1,
                reason="Billing question",
            )
            r.add(escalated_at + timedelta(minutes=2), "acknowledged", "agent:other")
            ex.functional += 1
            ex.manual += 1
            ex.reasons["billing question"] += 1
            ex.multi_department += 1
            holder, period_start, paused = other, escalated_at, timedelta(0)
        if escalated_at is not None:
            ex.escalated[dept] += 1
        # Resolve (85 %), breach the resolution clock when past its deadline (first tier only).
        if rnd.random() < 0.85:
            if escalated_at is not None and tier == 2:
                resolved_at = escalated_at + timedelta(minutes=rnd.randrange(10, 600))
            else:
                resolved_at = cursor + timedelta(minutes=rnd.randrange(10, 2000))
            if tier == 1:
                deadline = start + RES_TARGET + ticket_paused
                if resolved_at > deadline:
                    r.add(deadline, "sla_breached", clock="resolution", deadline=deadline.isoformat())
                    ex.res_breached[dept] += 1
                    ex.res_past.append((resolved_at - deadline).total_seconds())
                    r.add(
                        deadline,
                        "ladder_step",
                        rule="ladders.resolution[1] (res-breach)",
                        clock="resolution",
                        reason="resolution SLA after breach",
                    )
                    ex.ladder_steps["ladders.resolution[1] (res-breach)"] += 1
            r.add(resolved_at, "resolved", f"agent:{agent}", resolution="done")
            ex.time_in_tier[(tier, holder)].append((resolved_at - period_start - paused).total_seconds())
            ex.resolution.append((resolved_at - start - _all_paused(r)).total_seconds())
            ex.resolved += 1
            ex.resolved_humans += 1
            if tier == 1:
                ex.resolved_first_tier += 1
            if rnd.random() < 0.1:
                r.add(resolved_at + timedelta(hours=1), "reopened", f"agent:{agent}", reason="came back")
                r.add(
                    resolved_at + timedelta(hours=1),
                    "tier_entered",
                    tier=tier,
                    department=holder,
                    queue="q",
                    why="reopened",
                )
                _clocks(r, resolved_at + timedelta(hours=1), resolved_at + timedelta(hours=1), FR_TARGET, RES_TARGET)
                r.add(resolved_at + timedelta(hours=2), "acknowledged", f"agent:{agent}")
                r.add(resolved_at + timedelta(hours=3), "resolved", f"agent:{agent}", resolution="done again")
                ex.time_in_tier[(tier, holder)].append(timedelta(hours=2).total_seconds())
                ex.reopened += 1
        else:
            # Still open: resolution clock running since `start` (or the escalation): it may be at risk or breached.
            res_start = escalated_at if tier == 2 and escalated_at else start
            target = T2_RES if tier == 2 else RES_TARGET
            deadline = res_start + target + (ticket_paused if tier == 1 else timedelta(0))
            if deadline < NOW:
                r.add(deadline, "sla_breached", clock="resolution", deadline=deadline.isoformat())
                ex.res_breached[dept] += 1
                ex.res_past.append((NOW - deadline).total_seconds())
                r.add(
                    deadline,
                    "ladder_step",
                    rule="ladders.resolution[1] (res-breach)",
                    clock="resolution",
                    reason="resolution SLA after breach",
                )
                ex.ladder_steps["ladders.resolution[1] (res-breach)"] += 1
                ex.at_risk["breached"] += 1
            else:
                used = 1 - (deadline - NOW) / target
                band = _band(used)
                if band:
                    ex.at_risk[band] += 1
            ex.time_in_tier[(tier, holder)].append((NOW - period_start - paused).total_seconds())
        tickets.append(_facts(i, r, dept))
    # Open tickets at known shares of their first-response target, opened before the period.
    for j, minutes in enumerate([60, 150, 150, 200, 200, 200, 230, 230, 300, 500]):
        opened = NOW - timedelta(minutes=minutes)
        r = _Rows()
        r.add(opened, "ticket_opened", "source:test", policy_version="v1", source="test", opened_at=opened.isoformat())
        r.add(
            opened, "routed", route="r", reason="m", tier=1, department="support", calendar="always", priority="urgent"
        )
        r.add(opened, "tier_entered", tier=1, department="support", queue="support-t1", why="initial route")
        _clocks(r, opened, opened, FR_TARGET, RES_TARGET)
        if opened + FR_TARGET < NOW:
            r.add(opened + FR_TARGET, "sla_breached", clock="first_response", deadline=(opened + FR_TARGET).isoformat())
        used = minutes / (FR_TARGET.total_seconds() / 60)
        band = _band(used)
        if band:
            ex.at_risk[band] += 1
        tickets.append(TicketFacts(ticket_id=f"OPEN-{j}", channel="chat", category="outage", events=r.rows))
    return tickets, ex


def _all_paused(r: _Rows) -> timedelta:
    total = timedelta(0)
    start: datetime | None = None
    for e in r.rows:
        if e.kind == "sla_paused":
            start = e.at
        elif e.kind == "sla_resumed" and start is not None:
            total += e.at - start
            start = None
    return total


def _band(used: float) -> str | None:
    if used >= 1:
        return "breached"
    if used >= 0.9:
        return "90-100"
    if used >= 0.75:
        return "75-90"
    if used >= 0.5:
        return "50-75"
    return None


def _facts(i: int, r: _Rows, dept: str) -> TicketFacts:
    rows = sorted(r.rows, key=lambda e: e.at)  # stable: same-instant rows keep their order
    return TicketFacts(
        ticket_id=f"G-{i:04d}",
        channel=CHANNELS[i % 3],
        category=CATEGORIES[i % 3],
        events=rows,
    )


def store_batch(facts: TicketFacts, life_id: str) -> Any:
    """The generated ticket as the record store's activity would write it (summary row + timeline rows)."""
    from workflows.messages import StoreBatch, StoredEvent, TicketRecord

    ev = facts.events
    routed = next(e for e in ev if e.kind == "routed").detail
    opened = next(e for e in ev if e.kind == "ticket_opened")
    resolved = [e for e in ev if e.kind == "resolved"]
    reopened = [e for e in ev if e.kind == "reopened"]
    is_resolved = bool(resolved) and (not reopened or resolved[-1].at > reopened[-1].at)
    last_tier = [e for e in ev if e.kind == "tier_entered"]
    record = TicketRecord(
        life_id=life_id,
        ticket_id=facts.ticket_id,
        workflow_id=f"ticket-{facts.ticket_id}",
        opened_at=opened.at,
        channel=facts.channel,
        category=facts.category,
        priority=str(routed.get("priority")),
        segment="standard",
        policy_version=str(opened.detail.get("policy_version")),
        state="resolved" if is_resolved else "open",
        tier=int(last_tier[-1].detail["tier"]) if last_tier else 0,
        department=str(routed.get("department")),
        current_priority=str(routed.get("priority")),
        resolved_at=resolved[-1].at if is_resolved else None,
        closed_at=resolved[-1].at + timedelta(days=7) if is_resolved else None,
        ticket={
            "ticket_id": facts.ticket_id,
            "subject": "generated",
            "channel": facts.channel,
            "category": facts.category,
            "priority": str(routed.get("priority")),
            "customer": {"id": "c-1"},
            "opened_at": opened.at.isoformat(),
        },
    )
    events = [
        StoredEvent(
            seq=i,
            stream="timeline",
            at=e.at,
            kind=e.kind,
            actor=e.actor,
            rule=e.detail.get("rule"),
            clock=e.detail.get("clock"),
            deadline=e.detail.get("deadline"),
            reason=e.detail.get("reason"),
            policy_version=str(opened.detail.get("policy_version")),
            data=e.detail,
        )
        for i, e in enumerate(ev)
    ]
    return StoreBatch(record=record, first_seq=0, events=events)
