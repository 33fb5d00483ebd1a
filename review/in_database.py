"""The review counted in the database: the same `Review` as `review.aggregate.review`, from each
life's stored derivation (`review.materialize`), with SQL that runs on SQLite and PostgreSQL.

SQL counts, sums and ranks (nearest-rank percentiles with window functions, the rank in whole
numbers as `aggregate.percentile_rank`); Python builds the models, sorts group keys and ranked
reasons (a database orders text by its own collation), and derives the lives still running, whose
numbers change with `now` ("at risk now" is theirs).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import SQLColumnExpression, and_, case, func, or_, select
from sqlalchemy.orm import Session

from config.policy import Calendar
from review.aggregate import (
    CLOCKS,
    ClockBreaches,
    Escalations,
    GroupMetrics,
    Handoffs,
    Review,
    Spread,
    TierRow,
    at_risk,
    check_period,
    ranked,
    rate,
    series_of,
)
from review.business_time import TicketCalendars
from review.materialize import refresh
from review.query import frozen_calendars
from store.repository import Store
from store.review_models import ReviewItemRow as Item
from store.review_models import ReviewTicketRow as Life

Key = tuple[Any, ...]


def _yes(condition: SQLColumnExpression[Any]) -> SQLColumnExpression[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _spreads(
    session: Session,
    keys: Sequence[SQLColumnExpression[Any]],
    value: SQLColumnExpression[Any],
    where: SQLColumnExpression[Any],
) -> dict[Key, Spread]:
    """Per key: how many values, and their nearest-rank p50 and p90."""
    order = func.row_number().over(partition_by=list(keys) or None, order_by=value)
    n = func.count().over(partition_by=list(keys) or None)
    ranked_values = (
        select(*(k.label(f"k{i}") for i, k in enumerate(keys)), value.label("v"), order.label("rn"), n.label("n"))
        .where(where, value.is_not(None))
        .subquery()
    )
    r50, r90 = (ranked_values.c.n * 50 + 99) // 100, (ranked_values.c.n * 90 + 99) // 100
    found: dict[Key, dict[str, Any]] = defaultdict(dict)
    columns = [ranked_values.c[f"k{i}"] for i in range(len(keys))]
    query = select(*columns, ranked_values.c.n, ranked_values.c.rn, ranked_values.c.v, r50, r90).where(
        or_(ranked_values.c.rn == r50, ranked_values.c.rn == r90)
    )
    for row in session.execute(query):
        *key, count, rn, v, at50, at90 = row
        entry = found[tuple(key)]
        entry["n"] = count
        if rn == at50:
            entry["p50"] = v
        if rn == at90:
            entry["p90"] = v
    return {k: Spread(n=e["n"], p50=e.get("p50"), p90=e.get("p90")) for k, e in found.items()}


def _count_by(
    session: Session,
    keys: Sequence[SQLColumnExpression[Any]],
    by: SQLColumnExpression[Any],
    where: SQLColumnExpression[Any],
) -> dict[Key, dict[str, int]]:
    out: dict[Key, dict[str, int]] = defaultdict(dict)
    for *key, name, count in session.execute(select(*keys, by, func.count()).where(where).group_by(*keys, by)):
        out[tuple(key)][str(name)] = count
    return out


def _groups(
    session: Session, key: SQLColumnExpression[Any] | None, period: SQLColumnExpression[Any]
) -> dict[str, GroupMetrics]:
    """`aggregate._group` in SQL, per value of `key` (None: one group, "all")."""
    keys = [key] if key is not None else []
    counts = select(
        *keys,
        func.count(),
        _yes(Life.is_open),
        *(_yes(c) for c in (Life.fr_started, Life.fr_breached, Life.res_started, Life.res_breached)),
        _yes(Life.escalations > 0),
        *(_yes(c) for c in (Life.functional, Life.hierarchical, Life.ladder, Life.manual)),
        func.coalesce(func.sum(Life.escalations), 0),
        _yes(Life.reached_person),
        func.coalesce(func.sum(case((Life.reached_person, Life.departments), else_=0)), 0),
        func.coalesce(func.sum(case((Life.reached_person, Life.assignees), else_=0)), 0),
        _yes(and_(Life.reached_person, Life.departments > 1)),
        _yes(and_(Life.reached_person, Life.resolved_once)),
        _yes(Life.first_tier),
        _yes(Life.resolved_once),
        _yes(and_(Life.resolved_once, Life.reopened)),
        _yes(Life.self_service),
        _yes(and_(Life.self_service, Life.deflected)),
    ).where(period)
    if keys:
        counts = counts.group_by(*keys)
    joined = and_(Item.life_id == Life.life_id, period)
    fr = _spreads(session, keys, Life.first_response_s, period)
    res = _spreads(session, keys, Life.resolution_s, period)
    paused = _spreads(session, keys, Life.paused_s, period)
    past = {
        c: _spreads(session, keys, Item.seconds, and_(joined, Item.kind == "breach", Item.sub == c)) for c in CLOCKS
    }
    escalated = and_(joined, Item.kind == "escalation")
    by_kind, by_trigger = (
        _count_by(session, keys, Item.sub, escalated),
        _count_by(session, keys, Item.trigger, escalated),
    )
    none = Spread(n=0, p50=None, p90=None)
    out: dict[str, GroupMetrics] = {}
    for row in session.execute(counts):
        k: Key = tuple(row[: len(keys)])
        (n, open_now, fr_n, fr_hit, res_n, res_hit, esc, func_, hier, ladder, manual, total) = row[
            len(keys) : len(keys) + 12
        ]
        (humans, depts, people, multi, resolved_humans, first_tier, resolved, reopened, offered, deflected) = row[
            len(keys) + 12 :
        ]
        name = str(k[0]) if keys else "all"
        out[name] = GroupMetrics(
            key=name,
            tickets=n,
            open_now=open_now,
            breaches={
                "first_response": ClockBreaches(
                    breached=rate(fr_hit, fr_n), past_deadline=past["first_response"].get(k, none)
                ),
                "resolution": ClockBreaches(
                    breached=rate(res_hit, res_n), past_deadline=past["resolution"].get(k, none)
                ),
            },
            escalations=Escalations(
                escalated=rate(esc, n),
                functional=rate(func_, n),
                hierarchical=rate(hier, n),
                ladder=rate(ladder, n),
                manual=rate(manual, n),
                total=total,
                by_kind=dict(sorted(by_kind.get(k, {}).items())),
                by_trigger=dict(sorted(by_trigger.get(k, {}).items())),
            ),
            handoffs=Handoffs(
                departments_per_ticket=depts / humans if humans else None,
                assignees_per_ticket=people / humans if humans else None,
                more_than_one_department=rate(multi, humans),
            ),
            resolved_in_first_tier=rate(first_tier, resolved_humans),
            reopened=rate(reopened, resolved),
            tier0_deflection=rate(deflected, offered),
            first_response=fr.get(k, none),
            resolution=res.get(k, none),
            paused_seconds=paused.get(k, none),
        )
    return out


def _time_in_tier(session: Session, period: SQLColumnExpression[Any]) -> list[TierRow]:
    periods = and_(Item.kind == "period", period)
    keys = [Item.tier, Item.department]
    seconds, shares = _spreads(session, keys, Item.seconds, periods), _spreads(session, keys, Item.share, periods)
    rows = session.execute(
        select(Item.tier, Item.department, func.count(), func.coalesce(func.sum(Item.breaches), 0))
        .where(periods)
        .group_by(Item.tier, Item.department)
    ).all()
    none = Spread(n=0, p50=None, p90=None)
    return [
        TierRow(
            tier=tier,
            department=dept,
            periods=count,
            business_seconds=seconds.get((tier, dept), none),
            share_of_sla=shares.get((tier, dept), none),
            breaches=breaches,
        )
        for tier, dept, count, breaches in sorted(rows, key=lambda r: (r[0], r[1]))
    ]


def review_from_store(
    store: Store,
    calendars: Mapping[str, Calendar],
    *,
    since: datetime,
    until: datetime,
    now: datetime,
    group_by: str = "none",
    at_risk_limit: int = 200,
) -> Review:
    """The review of the lives opened in [since, until), grouped by one dimension, counted in the
    database; at-risk counts every life still running at `now`. Derives the lives whose stored
    derivation is missing or behind first (a first review over a year derives them all, once)."""
    check_period(group_by, since, until)
    cals = TicketCalendars(calendars, frozen_calendars(store))
    running = refresh(store, cals, since, until, now)
    in_period = and_(Life.opened_at >= since, Life.opened_at < until)
    item_in_period = and_(Item.opened_at >= since, Item.opened_at < until)
    bands, at_risk_tickets = at_risk(running, at_risk_limit)
    with Session(store.engine) as session:
        overall = _groups(session, None, in_period)["all"]
        groups = _groups(session, getattr(Life, group_by), in_period) if group_by != "none" else {}
        days = session.execute(
            select(Life.opened_day, func.count(), _yes(Life.breached), _yes(Life.escalations > 0))
            .where(in_period)
            .group_by(Life.opened_day)
        ).all()
        reasons = _count_by(session, [], Item.label, and_(item_in_period, Item.kind == "escalation")).get((), {})
        steps = _count_by(session, [], Item.label, and_(item_in_period, Item.kind == "ladder")).get((), {})
        time_in_tier = _time_in_tier(session, item_in_period)
    series: dict[date, tuple[int, int, int]] = {date.fromisoformat(d): (n, b, e) for d, n, b, e in days}
    return Review(
        generated_at=now,
        since=since,
        until=until,
        group_by=group_by,
        overall=overall,
        groups=[groups[k] for k in sorted(groups)],
        at_risk=bands,
        at_risk_tickets=at_risk_tickets,
        time_in_tier=time_in_tier,
        reasons=ranked(reasons),
        ladder_steps=ranked(steps),
        series=series_of(series, since, until),
    )
