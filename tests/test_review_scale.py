"""The review counted in the database equals the Python derivation, on SQLite and PostgreSQL.

The stored lives are the ticket's own decisions (`tests/bench/review_scale.py`: the workflow's
pure core under the shipped policy, copied across the year, 1 % still running), the same data
`./dev bench --review N` times at 100,000 lives. Compared field by field: every group-by, a
30-day page and a year, before and after the derivations are stored, after a life gets more
events, and with a policy version whose frozen calendars differ from the policy in force.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from config.policy import Calendar
from review.aggregate import GROUP_BYS, Review, review
from review.business_time import TicketCalendars
from review.in_database import review_from_store
from review.materialize import stale_lives
from review.query import calendars_of, frozen_calendars, load_facts
from store.models import TicketRow
from store.repository import Store
from store.review_models import ReviewTicketRow
from tests.bench.review_scale import POLICY, fill

CURRENT = calendars_of(POLICY)
NOW = datetime(2026, 12, 1, tzinfo=UTC)  # the data's "today": the same lives on every run


def python_review(store: Store, days: int, by: str) -> Review:
    since = NOW - timedelta(days=days)
    facts = load_facts(store, since, NOW)
    return review(facts, CURRENT, since=since, until=NOW, now=NOW, group_by=by, frozen=frozen_calendars(store))


def same(a: Review, b: Review) -> bool:
    return a.model_dump(exclude={"generated_at"}) == b.model_dump(exclude={"generated_at"})


def test_the_review_in_sql_is_the_python_review(store_url: str) -> None:
    store = Store(store_url)
    fill(store, 800, NOW, templates=150, report=lambda _: None)
    for days, by in [(30, "none"), (365, "none"), *((365, b) for b in GROUP_BYS[1:]), (30, "department")]:
        since = NOW - timedelta(days=days)
        got = review_from_store(store, CURRENT, since=since, until=NOW, now=NOW, group_by=by)
        assert same(got, python_review(store, days, by)), (days, by)
    year = review_from_store(store, CURRENT, since=NOW - timedelta(days=365), until=NOW, now=NOW)
    o = year.overall
    assert o.tickets == 800 and o.open_now > 0 and sum(year.at_risk.values()) > 0
    assert o.breaches["first_response"].breached.count > 0 and o.breaches["first_response"].past_deadline.p50
    assert o.escalations.by_kind.keys() == {"functional", "hierarchical"} and o.reopened.count > 0
    assert year.time_in_tier and year.reasons and year.ladder_steps and o.paused_seconds.n > 0
    with Session(store.engine) as session:
        assert session.scalar(select(func.count()).select_from(ReviewTicketRow)) == 800
        final = session.scalar(select(func.count()).where(ReviewTicketRow.final.is_(True)))
        assert final == session.scalar(select(func.count()).where(TicketRow.closed_at.is_not(None)))

    # A closed life whose stored events grow (a late batch) is derived again.
    with store.engine.begin() as conn:
        life = conn.execute(select(TicketRow.life_id).where(TicketRow.closed_at.is_not(None)).limit(1)).scalar_one()
        conn.execute(update(ReviewTicketRow).where(ReviewTicketRow.life_id == life).values(escalations=99))
        conn.execute(
            update(TicketRow).where(TicketRow.life_id == life).values(events_stored=TicketRow.events_stored + 1)
        )
    assert same(
        review_from_store(store, CURRENT, since=NOW - timedelta(days=365), until=NOW, now=NOW),
        python_review(store, 365, "none"),
    )

    # Derived again only what must be: the running lives; every life once today's calendars change.
    year_ago = NOW - timedelta(days=365)
    running = sum(1 for t in store.tickets() if t.closed_at is None)
    assert len(stale_lives(store, TicketCalendars(CURRENT), year_ago, NOW)) == running
    changed = {name: Calendar(always_open=True) for name in CURRENT}
    assert len(stale_lives(store, TicketCalendars(changed), year_ago, NOW)) == 800

    # Each ticket counts business time on the calendars its policy version froze, not today's.
    version = store.tickets()[0].policy_version
    frozen = {name: Calendar(always_open=True).model_dump(mode="json") for name in CURRENT}
    for holiday_year in range(NOW.year - 1, NOW.year + 1):
        store.record_calendars(version, holiday_year, frozen)
        store.record_calendars(version, holiday_year, {})  # a second write changes nothing
    assert frozen_calendars(store)[(version, NOW.year)]["berlin-office"].always_open
    on_frozen = review_from_store(store, CURRENT, since=NOW - timedelta(days=365), until=NOW, now=NOW)
    assert same(on_frozen, python_review(store, 365, "none"))
    assert on_frozen.overall.first_response.p90 != o.first_response.p90  # wall time now, not office hours
    store.dispose()


def test_store_derive_derives_each_life_once_and_the_running_ones_again(tmp_path: Path) -> None:
    """`escalations store derive` (run after an upgrade so the first review is fast): every life the
    first time, then only those still running (their numbers move with the clock)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    fill(store, 300, datetime.now(UTC), templates=60, report=lambda _: None)
    running = sum(1 for t in store.tickets() if t.closed_at is None)
    store.dispose()
    env = dict(os.environ, ESCALATIONS_STORE_URL=url, ESCALATIONS_POLICY_PATH=str(POLICY))
    counts = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "store", "derive", "--json"], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        counts.append(json.loads(done.stdout)["derived"])
    assert counts == [300, running] and 0 < running < 300
    bad = subprocess.run(
        [sys.executable, "-m", "cli.main", "store", "derive", "--since", "9x"], env=env, capture_output=True, text=True
    )
    assert bad.returncode != 0 and "--since" in bad.stderr
