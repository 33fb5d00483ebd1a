"""`policy backtest`: what would the stored tickets have looked like under another policy?

Each stored ticket life in the period is replayed through the workflow's own decisions
(`workflows/simulation.py`) under the proposed policy, at its real dates: opened with the ticket as
it opened (the store keeps it), then each agent action at the instant it came (the store keeps
every action as it arrived, accepted or not). Nothing is sent anywhere and no server is needed.
Then the review metrics of what happened (the stored timelines) and of the replay are printed side
by side per department (the department the ticket was first routed to, so both columns count the
same tickets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.policy import Calendar, Policy, load_policy_file
from config.snapshots import ticket_policy
from review.aggregate import review
from review.business_time import Business
from review.derive import derive
from review.rows import EventRow, TicketFacts
from store.models import EventRow as StoredEventRow
from store.models import TicketRow
from store.repository import Store
from workflows.models import ACTIONS, Ticket
from workflows.simulation import Simulation

MAX_TICKETS = 500
# Replay each ticket until this long after its last stored event (ladders may fire after it).
TAIL = timedelta(hours=1)
MAX_SPAN = timedelta(days=30)


@dataclass
class StoredAction:
    at: datetime
    name: str
    payload: dict[str, Any]
    via: str = "update"
    key: str | None = None  # its idempotency key: a client's retry under it applies nothing again


@dataclass
class StoredLife:
    life_id: str
    ticket: Ticket
    facts: TicketFacts  # what happened
    department: str  # routed to, as it happened
    actions: list[StoredAction] = field(default_factory=list)
    last_at: datetime | None = None
    started_at: datetime | None = None  # the workflow's start (its first decisions), if stored
    holiday_year: int | None = None  # the year its frozen policy expanded holidays for


def load_lives(
    store: Store, since: datetime, until: datetime, limit: int = MAX_TICKETS
) -> tuple[list[StoredLife], int]:
    """Lives opened in [since, until) that the store can replay (it kept the ticket as opened);
    returns them (oldest first, at most `limit`) and how many were skipped for lack of it."""
    with Session(store.engine) as session:
        rows = list(
            session.scalars(
                select(TicketRow)
                .where(TicketRow.opened_at >= since, TicketRow.opened_at < until)
                .order_by(TicketRow.opened_at, TicketRow.life_id)
            )
        )
        lives: list[StoredLife] = []
        skipped = 0
        for row in rows:
            if len(lives) >= limit:
                skipped += 1
                continue
            try:
                ticket = Ticket.model_validate(row.ticket or {})
            except ValidationError:
                skipped += 1
                continue
            events = list(
                session.scalars(
                    select(StoredEventRow).where(StoredEventRow.life_id == row.life_id).order_by(StoredEventRow.seq)
                )
            )
            timeline = [
                EventRow(at=e.at, kind=e.kind, actor=e.actor, detail=e.data if isinstance(e.data, dict) else {})
                for e in events
                if e.stream == "timeline"
            ]
            actions = []
            for e in events:
                if e.stream != "action" or not isinstance(e.data, dict):
                    continue
                name, payload = e.data.get("action"), e.data.get("payload")
                if isinstance(name, str) and name in ACTIONS and isinstance(payload, dict):
                    via, key = e.data.get("via"), e.data.get("key")
                    actions.append(
                        StoredAction(
                            at=e.at,
                            name=name,
                            payload=payload,
                            via="signal" if via == "signal" else "update",
                            key=key if isinstance(key, str) else None,
                        )
                    )
            facts = TicketFacts(
                ticket_id=row.ticket_id,
                channel=row.channel,
                category=row.category,
                priority=row.priority,
                opened_at=row.opened_at,
                events=timeline,
            )
            routed = next((e for e in timeline if e.kind == "routed"), None)
            opening = next((e for e in timeline if e.kind == "ticket_opened"), None)
            lives.append(
                StoredLife(
                    life_id=row.life_id,
                    ticket=ticket.model_copy(update={"opened_at": row.opened_at}),
                    facts=facts,
                    department=str((routed.detail.get("department") if routed else None) or row.department),
                    actions=actions,
                    last_at=max((e.at for e in events), default=row.opened_at),
                    started_at=opening.at if opening else None,
                    holiday_year=(ticket.opened_at or (opening.at if opening else row.opened_at)).year,
                )
            )
    return lives, skipped


def replay(lives: Sequence[StoredLife], policy_file: Path, now: datetime) -> list[TicketFacts]:
    """Each life under `policy_file`, from its opening to an hour after its last stored event (ladders
    may fire after it), never past `now` or 30 days: the replayed timelines."""
    source = load_policy_file(policy_file)
    label = source.version_label(policy_file)
    by_year: dict[int, Policy] = {}
    out: list[TicketFacts] = []
    for life in lives:
        opened = life.ticket.opened_at
        assert opened is not None
        # The workflow decides its opening at its start time (the clocks start at `opened_at`).
        start = life.started_at or opened
        year = life.holiday_year or opened.year
        policy = by_year.get(year) or by_year.setdefault(year, ticket_policy(source, year))
        sim = Simulation.open(policy, label, life.ticket, started_at=start, workflow_id=f"backtest-{life.life_id}")
        until = min(max(life.last_at or opened, opened) + TAIL, now, opened + MAX_SPAN)
        for action in sorted(life.actions, key=lambda a: a.at):
            if action.at > until:
                break
            sim.act(max(action.at, start), action.name, action.payload, key=action.key, via=action.via)
        sim.advance(until)
        events = [EventRow(at=e.at, kind=e.kind, actor=e.actor, detail=e.detail) for e in sim.timeline]
        out.append(life.facts.model_copy(update={"events": events}))
    return out


class Side(BaseModel):
    tickets: int
    breaches: int
    breached_tickets: int
    first_response_breach_rate: float | None
    resolution_breach_rate: float | None
    escalations: int
    escalated_tickets: int
    escalation_rate: float | None
    ladder_escalations: int
    manual_escalations: int
    resolved_in_first_tier_rate: float | None


class BacktestRow(BaseModel):
    department: str
    actual: Side
    proposed: Side

    @property
    def more_breaches(self) -> int:
        return self.proposed.breaches - self.actual.breaches

    @property
    def more_escalations(self) -> int:
        return self.proposed.escalations - self.actual.escalations


class Backtest(BaseModel):
    policy: str
    since: datetime
    until: datetime
    tickets: int
    skipped: int
    rows: list[BacktestRow]


def _side(
    facts: Sequence[TicketFacts], calendars: Mapping[str, Calendar], since: datetime, until: datetime, now: datetime
) -> Side:
    business = Business(calendars)
    derived = [derive(f, business, now) for f in facts]
    r = review(facts, calendars, since=since, until=until, now=now).overall
    return Side(
        tickets=len(facts),
        breaches=sum(len(d.breaches) for d in derived),
        breached_tickets=sum(1 for d in derived if d.breaches),
        first_response_breach_rate=r.breaches["first_response"].breached.rate,
        resolution_breach_rate=r.breaches["resolution"].breached.rate,
        escalations=sum(len(d.escalations) for d in derived),
        escalated_tickets=sum(1 for d in derived if d.escalations),
        escalation_rate=r.escalations.escalated.rate,
        ladder_escalations=sum(1 for d in derived for e in d.escalations if e.trigger == "ladder"),
        manual_escalations=sum(1 for d in derived for e in d.escalations if e.trigger == "manual"),
        resolved_in_first_tier_rate=r.resolved_in_first_tier.rate,
    )


def compare(
    lives: Sequence[StoredLife],
    replayed: Sequence[TicketFacts],
    calendars: Mapping[str, Calendar],
    *,
    policy: str,
    since: datetime,
    until: datetime,
    now: datetime,
    skipped: int = 0,
) -> Backtest:
    """Per department (as first routed in reality), and for all: actual against proposed."""
    departments = sorted({life.department for life in lives})
    rows = []
    for dept in [*departments, "all"]:
        idx = [i for i, life in enumerate(lives) if dept == "all" or life.department == dept]
        rows.append(
            BacktestRow(
                department=dept,
                actual=_side([lives[i].facts for i in idx], calendars, since, until, now),
                proposed=_side([replayed[i] for i in idx], calendars, since, until, now),
            )
        )
    return Backtest(policy=policy, since=since, until=until, tickets=len(lives), skipped=skipped, rows=rows)


def run_backtest(
    store: Store, policy_file: Path, since: datetime, until: datetime, now: datetime, limit: int
) -> Backtest:
    policy = load_policy_file(policy_file)  # PolicyError: the caller reports it (exit 2)
    lives, skipped = load_lives(store, since, until, limit)
    replayed = replay(lives, policy_file, now) if lives else []
    return compare(
        lives,
        replayed,
        dict(policy.calendars),
        policy=f"{policy.version}+{policy.fingerprint()}",
        since=since,
        until=until,
        now=now,
        skipped=skipped,
    )


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value * 100:.1f}%"
    return str(value)


def to_table(result: Backtest) -> str:
    metrics = [
        ("tickets", "tickets"),
        ("breaches", "breaches"),
        ("breached_tickets", "breached tickets"),
        ("first_response_breach_rate", "FR breach rate"),
        ("resolution_breach_rate", "RES breach rate"),
        ("escalations", "escalations"),
        ("escalated_tickets", "escalated tickets"),
        ("escalation_rate", "escalation rate"),
        ("ladder_escalations", "by ladder"),
        ("manual_escalations", "manual"),
        ("resolved_in_first_tier_rate", "resolved in first tier"),
    ]
    lines = [
        f"Backtest of {result.policy} on {result.tickets} stored tickets opened "
        f"{result.since:%Y-%m-%d %H:%M} to {result.until:%Y-%m-%d %H:%M} UTC"
        + (
            f" ({result.skipped} skipped: no ticket as opened in the store, or over the limit)"
            if result.skipped
            else ""
        ),
        "",
        f"{'department':<16}{'metric':<24}{'actual':>10}{'proposed':>10}{'change':>10}",
    ]
    for row in result.rows:
        for key, title in metrics:
            a, p = getattr(row.actual, key), getattr(row.proposed, key)
            if isinstance(a, int) and isinstance(p, int):
                change = f"{p - a:+d}"
            elif a is not None and p is not None:
                change = f"{(p - a) * 100:+.1f} pt"
            else:
                change = "-"
            lines.append(f"{row.department:<16}{title:<24}{_fmt(a):>10}{_fmt(p):>10}{change:>10}")
        lines.append(
            f"{row.department:<16}=> {row.more_breaches:+d} breaches, {row.more_escalations:+d} escalations"
            " under the proposed policy"
        )
        lines.append("")
    return "\n".join(lines)
