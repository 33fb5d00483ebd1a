"""The thin layer between the record store and the pure metrics: read rows, build `TicketFacts`.

Reads the store's tables (`store.models`) with SQLAlchemy: the lives opened in the period plus the
lives still running now (for "at risk now"), and their `timeline` event rows; and the calendars
each policy version froze (business time), with the policy in force for versions not recorded.
Synchronous, like the store; async callers run it in a thread.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from config.policy import Calendar, PolicyError, load_policy_file
from review.business_time import Frozen
from review.derive import READ_KINDS
from review.rows import PERSON_ROLES, EventRow, TicketFacts
from review.spikes import daily_counts
from store.models import EventRow as StoredEventRow
from store.models import TicketRow
from store.repository import Store
from store.review_models import PolicyCalendarsRow

CHUNK = 500  # life ids per IN (...) query: well under every database's parameter limit


_CALENDARS: dict[tuple[str, int, int], dict[str, Calendar]] = {}


def calendars_of(policy_path: Path) -> dict[str, Calendar]:
    """The calendars of the policy in force (read again when the file changes); none (wall time)
    when it cannot be read."""
    try:
        stat = policy_path.stat()
    except OSError:
        return {}
    key = (str(policy_path), stat.st_mtime_ns, stat.st_size)
    found = _CALENDARS.get(key)
    if found is None:
        try:
            found = dict(load_policy_file(policy_path).calendars)
        except PolicyError:
            found = {}
        _CALENDARS.clear()  # one policy file per process: keep only its newest reading
        _CALENDARS[key] = found
    return found


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


_TICKET_COLUMNS = (
    TicketRow.life_id,
    TicketRow.ticket_id,
    TicketRow.channel,
    TicketRow.category,
    TicketRow.priority,
    TicketRow.opened_at,
    TicketRow.policy_version,
    TicketRow.closed_at,
    TicketRow.events_stored,
)


# Only the rows a derivation reads (`review.derive.READ_KINDS`, and rows a person acted in).
_READ = or_(
    StoredEventRow.kind.in_(sorted(READ_KINDS)), *(StoredEventRow.actor.like(f"{role}:%") for role in PERSON_ROLES)
)


def _facts(session: Session, tickets: Sequence[Any]) -> list[TicketFacts]:
    """The facts of these lives, with the `timeline` event rows a derivation reads, in order."""
    rows: dict[str, list[EventRow]] = defaultdict(list)
    for chunk in _chunks([t.life_id for t in tickets]):
        found = session.execute(
            select(
                StoredEventRow.life_id,
                StoredEventRow.at,
                StoredEventRow.kind,
                StoredEventRow.actor,
                StoredEventRow.data,
            )
            .where(StoredEventRow.life_id.in_(chunk), StoredEventRow.stream == "timeline", _READ)
            .order_by(StoredEventRow.life_id, StoredEventRow.seq)
        )
        for life_id, at, kind, actor, data in found:  # typed by the store's columns: no validation
            detail = data if isinstance(data, dict) else {}
            rows[life_id].append(EventRow.model_construct(at=at, kind=kind, actor=actor, detail=detail))
    return [
        TicketFacts(
            ticket_id=t.ticket_id,
            life_id=t.life_id,
            channel=t.channel,
            category=t.category,
            priority=t.priority,
            opened_at=t.opened_at,
            policy_version=t.policy_version,
            closed_at=t.closed_at,
            events_stored=t.events_stored,
            events=rows.get(t.life_id, []),
        )
        for t in tickets
    ]


def load_facts(store: Store, since: datetime, until: datetime, *, open_now: bool = True) -> list[TicketFacts]:
    """Lives opened in [since, until), and (with `open_now`) every life whose workflow still runs."""
    opened_in = and_(TicketRow.opened_at >= since, TicketRow.opened_at < until)
    with Session(store.engine) as session:
        tickets = session.execute(
            select(*_TICKET_COLUMNS)
            .where(or_(opened_in, TicketRow.closed_at.is_(None)) if open_now else opened_in)
            .order_by(TicketRow.opened_at, TicketRow.life_id)
        ).all()
        return _facts(session, tickets)


def load_lives(store: Store, life_ids: Sequence[str]) -> list[TicketFacts]:
    """These lives (in the order of their opening)."""
    with Session(store.engine) as session:
        tickets: list[Any] = []
        for chunk in _chunks(list(life_ids)):
            tickets += session.execute(select(*_TICKET_COLUMNS).where(TicketRow.life_id.in_(chunk))).all()
        tickets.sort(key=lambda t: (t.opened_at, t.life_id))
        return _facts(session, tickets)


def frozen_calendars(store: Store) -> Frozen:
    """The calendars each policy version froze, per holiday year (`policy_calendars`); a row that no
    longer reads as calendars is left out (its tickets count on the policy in force)."""
    out: dict[tuple[str, int], dict[str, Calendar]] = {}
    with Session(store.engine) as session:
        for row in session.execute(select(PolicyCalendarsRow)).scalars():
            try:
                out[(row.policy_version, row.year)] = {
                    str(name): Calendar.model_validate(value) for name, value in dict(row.calendars).items()
                }
            except (ValueError, TypeError):
                continue
    return out


def counts_from_store(
    store: Store, calendars: Mapping[str, Calendar], *, day_start: datetime, baseline_days: int, now: datetime
) -> dict[tuple[str, object, str], int]:
    """Daily escalations and breaches per department over the baseline and the day being checked.

    Tickets opened up to 90 days before the window count too (a breach falls due long after opening)."""
    since = day_start - timedelta(days=baseline_days + 90)
    facts = load_facts(store, since, now, open_now=True)
    return dict(daily_counts(facts, calendars, now, frozen_calendars(store)))  # type: ignore[arg-type]
