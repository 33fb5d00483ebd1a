"""The review on rows the real workflow recorded, not generated ones.

Three tickets run by the real worker on the time-skipping server write their rows to a SQLite
record store: one untouched (breached, escalated by its ladder, breached again in tier 2, at risk),
one paused, resolved and reopened (breached after the reopen), one acknowledged and reassigned
(open, well within its SLA). Each metric is checked against a count made from the ticket's own
timeline and status, breach magnitudes and at-risk bands included; and the review does not change
when the rows one decision wrote at one instant come in another order.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from config.policy import Calendar
from review.aggregate import review
from review.business_time import Business
from review.derive import band_of, derive
from review.in_database import review_from_store
from review.query import frozen_calendars, load_facts
from review.rows import EventRow, TicketFacts
from store.repository import Store
from tests.helpers import ticket
from tests.receiver import Receiver
from workflows.models import TicketStatus, TimelineEvent

ALWAYS = {"always": Calendar(always_open=True)}
ANN = {"id": "ann", "role": "agent"}
LEE = {"id": "lee", "role": "lead"}
STOPS = {"first_response": ("acknowledged", "resolved"), "resolution": ("resolved",)}


def breach_magnitudes(events: list[TimelineEvent], now: datetime) -> list[tuple[str, timedelta]]:
    """Per breach, by hand: from its deadline until its clock stopped (acknowledged, resolved, or
    restarted by a new `sla_started`), or until now, less the time paused in between (24x7 calendar)."""
    out = []
    for i, e in enumerate(events):
        if e.kind != "sla_breached":
            continue
        clock, deadline = e.detail["clock"], datetime.fromisoformat(e.detail["deadline"])
        later = events[i + 1 :]
        end = next(
            (x.at for x in later if x.kind in STOPS[clock] or (x.kind == "sla_started" and x.detail["clock"] == clock)),
            now,
        )
        paused, since = timedelta(0), None
        for x in events:
            if x.kind == "sla_paused":
                since = x.at
            elif x.kind == "sla_resumed" and since is not None:
                paused += max(min(x.at, end) - max(since, deadline), timedelta(0))
                since = None
        out.append((clock, end - deadline - paused))
    return sorted(out)


def at_risk_by_hand(status: TicketStatus, now: datetime) -> tuple[str, float] | None:
    """The largest share of an SLA target used on a running clock, and its band."""
    worst: tuple[str, float] | None = None
    for c in status.clocks:
        if c.state != "running" or c.deadline is None:
            continue
        left = c.deadline - now
        used = 1.0 - left / c.target
        if c.breached:
            used = max(used, 1.0)
        band = band_of(used)
        if band is not None and (worst is None or used > worst[1]):
            worst = (band, used)
    return worst


def shuffled_within_instants(facts: TicketFacts, rnd: random.Random) -> TicketFacts:
    """The same rows, those that share an instant in another order."""
    groups: dict[datetime, list[Any]] = defaultdict(list)
    order: list[datetime] = []
    for e in facts.events:
        if e.at not in groups:
            order.append(e.at)
        groups[e.at].append(e)
    events = []
    for at in order:
        rows = groups[at]
        rnd.shuffle(rows)
        events += rows
    return facts.model_copy(update={"events": events})


async def test_every_metric_of_real_tickets_matches_their_own_timelines(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    async with make_harness(ts_env, receiver, store_url=url) as h:
        untouched, reopened, reassigned = ticket(priority="urgent"), ticket(priority="urgent"), ticket()
        for t in (untouched, reopened, reassigned):
            await h.tickets.open(t)
        began = await ts_env.get_current_time()
        plan: list[tuple[timedelta, Any, str, dict[str, Any]]] = [
            (timedelta(minutes=10), reopened, "acknowledge", {"actor": ANN}),
            (timedelta(minutes=20), reassigned, "acknowledge", {"actor": ANN}),
            (timedelta(hours=1), reopened, "pending_customer", {"actor": ANN}),
            (timedelta(hours=1), reassigned, "reassign", {"actor": LEE, "to_agent": "bob", "reason": "expert"}),
            (timedelta(hours=3), reopened, "customer_replied", {"note": "here"}),
            (timedelta(hours=4), reopened, "resolve", {"actor": ANN, "resolution": "done"}),
            (timedelta(hours=5), reopened, "reopen", {"actor": ANN, "reason": "not fixed"}),
        ]
        for after, t, name, payload in plan:
            now = await ts_env.get_current_time()
            if began + after > now:
                await ts_env.sleep(began + after - now)
            await h.tickets.act(t.ticket_id, name, payload)
        await ts_env.sleep(began + timedelta(hours=8, minutes=40) - await ts_env.get_current_time())
        timelines = {
            t.ticket_id: (await h.tickets.timeline(t.ticket_id)).events for t in (untouched, reopened, reassigned)
        }
        statuses = {t.ticket_id: await h.tickets.status(t.ticket_id) for t in (untouched, reopened, reassigned)}
        now = await ts_env.get_current_time()
        # Every row in the store: the last batch goes after the store's short wait (workflow time).
        await ts_env.sleep(timedelta(minutes=1))
        store = Store(url)
        want_rows = {tid: len(events) for tid, events in timelines.items()}
        for _ in range(100):
            facts = {f.ticket_id: f for f in load_facts(store, began - timedelta(hours=1), now)}
            if all(len(facts.get(tid, TicketFacts(ticket_id=tid)).events) >= n for tid, n in want_rows.items()):
                break
            await asyncio.sleep(0.1)

    business = Business(ALWAYS)
    derived = {tid: derive(f, business, now) for tid, f in facts.items()}
    assert set(derived) == set(timelines)
    for tid, events in timelines.items():
        d = derived[tid]
        kinds = [e.kind for e in events]
        assert len(d.breaches) == kinds.count("sla_breached"), tid
        assert sorted((b.clock, b.past) for b in d.breaches) == breach_magnitudes(events, now), tid
        by_hand = at_risk_by_hand(statuses[tid], now)
        got = (d.at_risk.band, d.at_risk.used) if d.at_risk else None
        assert (got and got[0]) == (by_hand and by_hand[0]), tid
        if got and by_hand:
            assert abs(got[1] - by_hand[1]) < 1e-6, tid
        assert len(d.escalations) == kinds.count("escalated"), tid
        assert d.reopens == kinds.count("reopened"), tid
        ack = next((e.at for e in events if e.kind == "acknowledged"), None)
        assert d.first_response == (ack - d.opened_at if ack else None), tid
        assert all(p.resolution_target is not None for p in d.periods), tid  # "share of SLA" for every period
    a, b, c = (derived[t.ticket_id] for t in (untouched, reopened, reassigned))
    assert [x.band for x in (a.at_risk, b.at_risk) if x] == ["breached", "breached"] and c.at_risk is None
    assert len(a.breaches) == 3 and [e.trigger for e in a.escalations] == ["ladder"]
    b_rows = timelines[reopened.ticket_id]
    resumed = next(e.at for e in b_rows if e.kind == "sla_resumed")
    waited = resumed - next(e.at for e in b_rows if e.kind == "sla_paused")
    assert b.paused == waited and abs(waited - timedelta(hours=2)) < timedelta(seconds=1)
    assert b.reopens == 1 and len(b.breaches) == 1
    assert (a.reached_person, b.reached_person, c.reached_person) == (False, True, True)
    assert c.assignees == {"ann", "bob"}

    overall = review(facts.values(), ALWAYS, since=began - timedelta(hours=1), until=now, now=now).overall
    assert overall.tickets == 3 and overall.open_now == 3
    assert overall.breaches["first_response"].breached.count == 2  # untouched and reopened
    assert overall.handoffs.assignees_per_ticket == 1.5  # over the two tickets a person touched
    assert overall.reopened.rate == 1.0

    # The order of the rows one decision wrote at one instant does not change any number.
    base = review(facts.values(), ALWAYS, since=began - timedelta(hours=1), until=now, now=now)
    for seed in range(20):
        rnd = random.Random(seed)
        moved = [shuffled_within_instants(f, rnd) for f in facts.values()]
        again = review(moved, ALWAYS, since=began - timedelta(hours=1), until=now, now=now)
        assert again.model_dump(exclude={"generated_at"}) == base.model_dump(exclude={"generated_at"}), seed
    # The worker recorded the calendars the tickets' policy version froze (the review counts on them).
    version = next(iter(facts.values())).policy_version
    assert version and (version, began.year) in frozen_calendars(store)
    # Counted in the database (each life's derivation stored, aggregates in SQL): the same review.
    for _ in range(2):  # deriving the lives, then from what is stored
        counted = review_from_store(store, ALWAYS, since=began - timedelta(hours=1), until=now, now=now)
        assert counted.model_dump(exclude={"generated_at"}) == base.model_dump(exclude={"generated_at"})
    store.dispose()


def test_a_functional_escalation_out_of_a_pause_runs_the_clocks_on() -> None:
    """The workflow's own rows (its decisions, through the simulator): paused, then escalated to
    another department, which resumes the clocks without an `sla_resumed` row and acknowledges.
    The review sees the resolution clock running again, at the deadline the ticket itself holds."""
    import yaml as yaml_

    from config.policy import parse_policy
    from config.snapshots import ticket_policy
    from tests.conftest import policy_doc
    from workflows.models import ClockName
    from workflows.simulation import Simulation

    opened = datetime(2035, 5, 14, 8, 0, tzinfo=UTC)
    source = parse_policy(yaml_.safe_load(yaml_.safe_dump(policy_doc())), "p.yaml")
    t = ticket(priority="urgent", opened_at=opened.isoformat())  # resolution 8 h
    sim = Simulation.open(ticket_policy(source, 2035), "test", t)
    escalate = {"actor": LEE, "kind": "functional", "department": "billing", "reason": "a refund"}
    actions = [
        (opened + timedelta(minutes=10), "acknowledge", {"actor": ANN}),
        (opened + timedelta(minutes=20), "pending_customer", {"actor": ANN}),
        (opened + timedelta(hours=1), "escalate", escalate),
        (opened + timedelta(hours=1, minutes=10), "acknowledge", {"actor": {"id": "bob", "role": "agent"}}),
    ]
    now = opened + timedelta(hours=7, minutes=30)
    sim.run(actions, until=now)
    kinds = [e.kind for e in sim.timeline]
    assert "sla_paused" in kinds and "escalated" in kinds and "sla_resumed" not in kinds, kinds
    deadline = sim.state.clocks[ClockName.resolution].deadline
    assert deadline is not None and deadline > now
    rows = [EventRow(at=e.at, kind=e.kind, actor=e.actor, detail=e.detail) for e in sim.timeline]
    d = derive(TicketFacts(ticket_id=t.ticket_id, opened_at=opened, events=rows), Business(ALWAYS), now)
    assert d.at_risk is not None and d.at_risk.clock == "resolution" and d.at_risk.deadline == deadline
    assert abs(d.at_risk.used - (1 - (deadline - now) / timedelta(hours=8))) < 1e-9
    assert d.at_risk.band == "75-90"
