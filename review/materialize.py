"""Each life's derivation kept in the store (`review_tickets`, `review_items`), so that a review over
a year counts in SQL instead of walking two million rows in Python.

A life is derived again when the store holds more of its events than its row was derived from, when
its row was derived on other calendars (the policy in force changed, or its version's frozen ones
were recorded since) or by another `DERIVATION`, and at every review while its workflow still runs
(its clocks run on: `now` changes its numbers). Running lives opened outside the period are derived
in memory only ("at risk now"). Only the review writes these tables: losing them loses nothing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from review.business_time import TicketCalendars
from review.derive import derive
from review.query import load_lives
from review.rows import TicketFacts
from review.ticket_review import TicketReview
from store.models import TicketRow
from store.repository import Store
from store.review_models import ReviewItemRow, ReviewTicketRow

CHUNK = 500  # lives derived and written per transaction (ids per IN (...): under SQLite's old 999 limit)
# Bump when `review.derive` changes what it counts: every stored derivation is then made again.
DERIVATION = "1"
_ONE_AT_A_TIME = threading.Lock()  # one refresh per process; across processes see `_write`


def basis_of(calendars: TicketCalendars, policy_version: str | None, opened_at: datetime | None) -> str:
    frozen = calendars.frozen_for(policy_version, opened_at) is not None
    return f"{DERIVATION}:frozen" if frozen else f"{DERIVATION}:current:{calendars.current_digest}"


def ticket_row(facts: TicketFacts, t: TicketReview, basis: str, now: datetime) -> dict[str, Any]:
    """The `review_tickets` row of a derived life: what `review.aggregate._group` counts of it."""
    hierarchical = any(e.kind == "hierarchical" for e in t.escalations)
    breached_clocks = {b.clock for b in t.breaches}
    return {
        "life_id": facts.life_id,
        "derived_from": facts.events_stored,
        "final": facts.closed_at is not None and facts.closed_at <= now,
        "basis": basis,
        "opened_at": t.opened_at,
        "opened_day": t.opened_at.astimezone(UTC).date().isoformat(),
        "ticket_id": t.ticket_id[:200],
        "department": t.group_key("department")[:200],
        "tier": t.group_key("tier")[:8],
        "channel": t.group_key("channel")[:64],
        "category": t.group_key("category")[:100],
        "priority": t.group_key("priority")[:32],
        "policy_version": t.group_key("policy_version")[:200],
        "is_open": t.is_open,
        "reached_person": t.reached_person,
        "resolved_once": t.resolved_once,
        "reopened": t.reopens > 0,
        "first_tier": t.reached_person and t.resolved_once and not hierarchical,
        "self_service": t.self_service,
        "deflected": t.deflected,
        "fr_started": "first_response" in t.clocks_started,
        "fr_breached": "first_response" in t.clocks_started and "first_response" in breached_clocks,
        "res_started": "resolution" in t.clocks_started,
        "res_breached": "resolution" in t.clocks_started and "resolution" in breached_clocks,
        "breached": bool(t.breaches),
        "escalations": len(t.escalations),
        "functional": any(e.kind == "functional" for e in t.escalations),
        "hierarchical": hierarchical,
        "ladder": any(e.trigger == "ladder" for e in t.escalations),
        "manual": any(e.trigger == "manual" for e in t.escalations),
        "departments": len(t.departments),
        "assignees": len(t.assignees),
        "first_response_s": t.first_response.total_seconds() if t.first_response is not None else None,
        "resolution_s": t.resolution.total_seconds() if t.resolution is not None else None,
        "paused_s": t.paused.total_seconds() if t.paused.total_seconds() > 0 else None,
    }


def item_rows(life_id: str, t: TicketReview) -> list[dict[str, Any]]:
    """The `review_items` rows of a derived life: its breaches, escalations, periods, ladder steps."""
    items: list[dict[str, Any]] = []
    for b in t.breaches:
        items.append({"kind": "breach", "sub": b.clock[:32], "seconds": b.past.total_seconds()})
    for e in t.escalations:
        items.append({"kind": "escalation", "label": e.reason, "sub": e.kind[:32], "trigger": e.trigger[:16]})
    for p in t.periods:
        share = p.business / p.resolution_target if p.resolution_target else None
        items.append(
            {
                "kind": "period",
                "tier": p.tier,
                "department": p.department[:200],
                "seconds": p.business.total_seconds(),
                "share": share,
                "breaches": p.breaches,
            }
        )
    for rule in t.ladder_rules:
        items.append({"kind": "ladder", "label": rule})
    full = {"label": None, "sub": None, "trigger": None, "tier": None, "department": None}
    full |= {"seconds": None, "share": None, "breaches": None}
    return [full | item | {"life_id": life_id, "n": n, "opened_at": t.opened_at} for n, item in enumerate(items)]


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def stale_lives(store: Store, calendars: TicketCalendars, since: datetime, until: datetime) -> list[str]:
    """Lives opened in [since, until) whose derivation is missing, not final, behind its events, or
    made on other calendars or by another `DERIVATION`."""
    rt, t = ReviewTicketRow, TicketRow
    frozen, current = f"{DERIVATION}:frozen", f"{DERIVATION}:current:{calendars.current_digest}"
    behind = [rt.life_id.is_(None), rt.final.is_(False), rt.derived_from != t.events_stored]
    behind.append(rt.basis.not_in([frozen, current]))
    for version, year in calendars.frozen_keys:  # recorded since those lives were derived on today's
        years = and_(
            t.opened_at >= datetime(year - 1, 1, 1, tzinfo=UTC), t.opened_at < datetime(year + 2, 1, 1, tzinfo=UTC)
        )
        behind.append(and_(rt.basis == current, t.policy_version == version, years))
    with Session(store.engine) as session:
        return list(
            session.scalars(
                select(t.life_id)
                .outerjoin(rt, rt.life_id == t.life_id)
                .where(t.opened_at >= since, t.opened_at < until, or_(*behind))
            )
        )


def _running_outside(store: Store, since: datetime, until: datetime) -> list[str]:
    t = TicketRow
    outside = or_(t.opened_at < since, t.opened_at >= until)
    with Session(store.engine) as session:
        return list(session.scalars(select(t.life_id).where(t.closed_at.is_(None), outside)))


def _write(store: Store, ids: list[str], tickets: list[dict[str, Any]], items: list[dict[str, Any]]) -> None:
    """Replace these lives' rows. Another process writing the same lives at once (the command and
    the API) may insert first: then the rows are replaced once more, after its commit."""
    for attempt in range(3):
        try:
            with store.engine.begin() as conn:
                conn.execute(delete(ReviewItemRow).where(ReviewItemRow.life_id.in_(ids)))
                conn.execute(delete(ReviewTicketRow).where(ReviewTicketRow.life_id.in_(ids)))
                if tickets:
                    conn.execute(insert(ReviewTicketRow), tickets)
                if items:
                    conn.execute(insert(ReviewItemRow), items)
            return
        except IntegrityError:
            if attempt == 2:
                raise


# The rows of running lives, kept between reviews in this process (an API serves many): a life's
# stored events only grow, so its rows are good while its `events_stored` is the same.
_RUNNING_ROWS_MAX = 200_000
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_running_facts: OrderedDict[tuple[str, str], TicketFacts] = OrderedDict()


def _load(store: Store, ids: list[str]) -> list[TicketFacts]:
    """These lives' facts, those of running lives from the cache when still current."""
    with Session(store.engine) as session:
        stored = dict(
            session.execute(select(TicketRow.life_id, TicketRow.events_stored).where(TicketRow.life_id.in_(ids))).all()
        )
    where = str(store.url)
    kept = {
        life: facts
        for life in ids
        if (facts := _running_facts.get((where, life))) is not None and facts.events_stored == stored.get(life)
    }
    loaded = load_lives(store, [life for life in ids if life not in kept])
    for facts in loaded:
        if facts.closed_at is None and facts.life_id is not None:
            _running_facts[(where, facts.life_id)] = facts
            _running_facts.move_to_end((where, facts.life_id))
    rows = sum(len(f.events) for f in _running_facts.values())
    while rows > _RUNNING_ROWS_MAX and _running_facts:
        rows -= len(_running_facts.popitem(last=False)[1].events)
    return sorted([*kept.values(), *loaded], key=lambda f: (f.opened_at or _EARLIEST, f.life_id or ""))


def refresh(
    store: Store, calendars: TicketCalendars, since: datetime, until: datetime, now: datetime
) -> list[TicketReview]:
    """Derive and store every stale life of the period (see `stale_lives`); returns the derivations
    of every life still running (the review's "at risk now" reads them), those outside the period
    derived in memory only."""
    running: list[TicketReview] = []
    with _ONE_AT_A_TIME:
        for chunk in _chunks(stale_lives(store, calendars, since, until)):
            facts = _load(store, list(chunk))
            derived = [(f, derive(f, calendars.business(f.policy_version, f.opened_at), now)) for f in facts]
            running += [t for f, t in derived if f.closed_at is None]
            tickets = [ticket_row(f, t, basis_of(calendars, f.policy_version, f.opened_at), now) for f, t in derived]
            items = [row for f, t in derived for row in item_rows(str(f.life_id), t)]
            _write(store, [str(f.life_id) for f in facts], tickets, items)
    for chunk in _chunks(_running_outside(store, since, until)):
        for f in _load(store, list(chunk)):
            running.append(derive(f, calendars.business(f.policy_version, f.opened_at), now))
    return running
