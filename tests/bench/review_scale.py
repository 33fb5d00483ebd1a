"""Stored tickets at a year's scale, and the review timed over them (`./dev bench --review N`).

The timelines are the ticket's own: the simulator runs the workflow's pure core (`decide`, the same
rows a worker records, `tests/test_simulate.py`) under the shipped default policy, for a few hundred
templates (routes, priorities, and what agents do: answer fast or late, escalate either way, wait on
the customer, reassign, reopen, leave it untouched). Each template is copied to many lives shifted
by whole weeks across the year (weekdays kept), and written with the store's own row builders.
What would happen after today is not stored: the lives opened lately are still running.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import yaml
from sqlalchemy import insert
from temporalio.client import Client

from config.policy import Policy, parse_policy
from config.snapshots import ticket_policy
from store.models import EventRow, TicketRow
from store.repository import Store, _event_rows, _summary_row
from workflows.messages import StoreBatch
from workflows.models import Ticket
from workflows.recording import Recorder, ticket_record
from workflows.simulation import Simulation

POLICY = Path(__file__).resolve().parents[2] / "config" / "policies" / "default.yaml"
NOW = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)  # the data's "today"
ANN, BOB = {"id": "ann", "role": "agent"}, {"id": "bob", "role": "agent"}
LEE = {"id": "lee.lead", "role": "lead"}
H, M = timedelta(hours=1), timedelta(minutes=1)
Script = list[tuple[timedelta, str, dict[str, Any]]]

SCENARIOS: dict[str, Script] = {
    "quick": [(5 * M, "acknowledge", {"actor": ANN}), (2 * H, "resolve", {"actor": ANN, "resolution": "done"})],
    "late": [(3 * H, "acknowledge", {"actor": ANN}), (30 * H, "resolve", {"actor": ANN, "resolution": "done"})],
    "untouched": [(50 * H, "resolve", {"actor": LEE, "resolution": "finally"})],
    "hierarchical": [
        (10 * M, "acknowledge", {"actor": ANN}),
        (H, "escalate", {"actor": ANN, "kind": "hierarchical", "reason": "needs a specialist"}),
        (2 * H, "acknowledge", {"actor": LEE}),
        (6 * H, "resolve", {"actor": LEE, "resolution": "fixed"}),
    ],
    "functional": [
        (10 * M, "acknowledge", {"actor": ANN}),
        (H, "escalate", {"actor": LEE, "kind": "functional", "department": "billing", "reason": "a refund"}),
        (3 * H, "acknowledge", {"actor": BOB}),
        (8 * H, "resolve", {"actor": BOB, "resolution": "refunded"}),
    ],
    "paused": [
        (10 * M, "acknowledge", {"actor": ANN}),
        (30 * M, "pending_customer", {"actor": ANN}),
        (5 * H, "customer_replied", {"note": "here it is"}),
        (7 * H, "resolve", {"actor": ANN, "resolution": "done"}),
    ],
    "reopened": [
        (15 * M, "acknowledge", {"actor": ANN}),
        (3 * H, "resolve", {"actor": ANN, "resolution": "done"}),
        (26 * H, "reopen", {"actor": ANN, "reason": "not fixed"}),
        (30 * H, "resolve", {"actor": ANN, "resolution": "fixed now"}),
    ],
    "forgotten": [(2 * H, "acknowledge", {"actor": ANN})],  # never resolved: still running, breached
    "reassigned": [
        (20 * M, "acknowledge", {"actor": ANN}),
        (H, "reassign", {"actor": LEE, "to_agent": "bob", "reason": "expert"}),
        (5 * H, "resolve", {"actor": BOB, "resolution": "done"}),
    ],
}
WEIGHTS = {"quick": 40, "late": 15, "untouched": 5, "hierarchical": 10, "functional": 8, "paused": 10}
WEIGHTS |= {"reopened": 5, "reassigned": 7, "forgotten": 1}
CATEGORIES = ["general", "general", "billing", "technical", "how-to", "account"]
CHANNELS = ["email", "email", "web", "chat", "phone", "social_public"]
PRIORITIES = ["low", "normal", "normal", "normal", "high", "urgent"]


class Template:
    """One simulated life: its summary row and timeline rows, opened at `opened`."""

    def __init__(self, summary: dict[str, Any], events: list[dict[str, Any]], opened: datetime) -> None:
        self.summary, self.events, self.opened = summary, events, opened


@functools.cache
def _source() -> Policy:
    return parse_policy(yaml.safe_load(POLICY.read_text()), POLICY.name)


def simulate(rnd: random.Random, opened: datetime, scenario: str, n: int) -> Template:
    """One life under the shipped policy, followed until its workflow would complete (or 40 days)."""
    until = opened + timedelta(days=40)
    source = _source()
    version = source.version_label(POLICY)
    tid = f"Y-{n}"
    ticket = Ticket.model_validate(
        {
            "ticket_id": tid,
            "subject": "year",
            "customer": {"id": f"c{n}", "segment": rnd.choice(["standard", "standard", "vip"])},
            "opened_at": opened,
            "priority": rnd.choice(PRIORITIES),
            "channel": rnd.choice(CHANNELS),
            "category": rnd.choice(CATEGORIES),
        }
    )
    sim = Simulation.open(ticket_policy(source, opened.year), version, ticket, workflow_id=f"ticket-{tid}", life=tid)
    sim.run([(opened + after, name, data) for after, name, data in SCENARIOS[scenario]], until)
    recorder = Recorder(None, 1)
    recorder.record_events(sim.timeline, None, None, sim.state, version, sim.now)
    for i, (after, name, data) in enumerate(SCENARIOS[scenario]):  # each action as it arrived
        if opened + after <= until:
            recorder.record_action(name, data, "update", f"k{i}", sim.state, version, opened + after)
    record = ticket_record(ticket, sim.state, tid, f"ticket-{tid}", opened, version, True, True, sim.finished_at)
    batch = StoreBatch(record=record, first_seq=0, events=recorder.pending)
    return Template(_summary_row(batch, sim.now), _event_rows(batch, sim.now), opened)


def _shift(value: Any, by: timedelta) -> Any:
    if isinstance(value, datetime):
        return value + by
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            return (datetime.fromisoformat(value) + by).isoformat()
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: _shift(v, by) for k, v in value.items()}
    if isinstance(value, list):
        return [_shift(v, by) for v in value]
    return value


def lives(
    n: int, now: datetime, seed: int = 7, templates: int = 400
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """`n` lives: copies of `templates` lives opened 1 to 8 days before `now`, moved back 0 to 51
    weeks; what happens after `now` is not stored yet (those opened lately are still running)."""
    rnd = random.Random(seed)
    names, weights = list(WEIGHTS), list(WEIGHTS.values())
    base = now - timedelta(days=8)
    made = [
        simulate(rnd, base + timedelta(minutes=rnd.randrange(7 * 24 * 60)), rnd.choices(names, weights)[0], i)
        for i in range(templates)
    ]
    for i in range(n):
        t = made[i % len(made)]
        by = -timedelta(weeks=rnd.randrange(52))
        life = f"{t.summary['life_id']}-{i}"
        tid = f"{t.summary['ticket_id']}-{i}"
        summary = _shift(t.summary, by) | {"life_id": life, "ticket_id": tid, "workflow_id": f"ticket-{tid}"}
        events = [_shift(e, by) | {"life_id": life, "ticket_id": tid} for e in t.events if e["at"] + by <= now]
        summary["events_stored"] = max((e["seq"] for e in events), default=-1) + 1
        if summary["closed_at"] is not None and summary["closed_at"] > now:
            summary["closed_at"] = None
        yield summary, events


def fill(
    store: Store,
    n: int,
    now: datetime = NOW,
    *,
    seed: int = 7,
    templates: int = 400,
    report: Callable[[str], None] = print,
) -> int:
    """Write `n` lives to an empty store; returns the number of event rows written."""
    store.migrate()
    events = 0
    summaries: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    began = time.monotonic()

    def flush() -> None:
        with store.engine.begin() as conn:
            conn.execute(insert(TicketRow), summaries)
            conn.execute(insert(EventRow), rows)
        summaries.clear()
        rows.clear()

    for summary, timeline in lives(n, now, seed, templates):
        summaries.append(summary)
        rows.extend(timeline)
        events += len(timeline)
        if len(summaries) >= 2000:
            flush()
    if summaries:
        flush()
    report(f"  stored: {n} lives, {events} event rows (timeline and actions) in {time.monotonic() - began:.0f}s")
    return events


def _timed(label: str, args: list[str], env: dict[str, str]) -> None:
    began = time.monotonic()
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    took = time.monotonic() - began
    tickets = json.loads(done.stdout)["overall"]["tickets"] if done.returncode == 0 else done.stderr.strip()[-200:]
    print(f"  {label}: {took:.2f}s ({tickets} tickets)", flush=True)


async def bench(n: int, database: str) -> None:
    """Fill a store with `n` lives, then time `escalations review` and `GET /review` over 30 days
    and a year, the first time (every life derived) and again; and check the numbers against the
    Python derivation over a 7-day sample."""
    from api.auth import new_key_entry
    from api.server import build_server
    from config.settings import Settings
    from review.aggregate import review
    from review.in_database import review_from_store
    from review.query import calendars_of, frozen_calendars, load_facts
    from tests.pg import start_postgres
    from tests.ports import free_port

    folder = Path(tempfile.mkdtemp(prefix="review-bench-"))
    server = start_postgres() if database == "postgresql" else None
    if database == "postgresql" and server is None:
        raise SystemExit("no PostgreSQL binaries found")
    url = server.new_database() if server else f"sqlite:///{folder / 'store.db'}"
    try:
        print(f"review at scale: {n} lives on {database}", flush=True)
        store = Store(url)
        fill(store, n)
        env = dict(os.environ, ESCALATIONS_STORE_URL=url, ESCALATIONS_POLICY_PATH=str(POLICY))
        cli = [sys.executable, "-m", "cli.main", "review", "--by", "department", "--json", "--since"]
        for days, when in (("30d", "first"), ("366d", "first"), ("30d", "again"), ("366d", "again")):
            _timed(f"escalations review --since {days} --by department ({when})", [*cli, days], env)
        key, entry = new_key_entry("lead", ["lead"])
        settings = Settings(_env_file=None, policy_path=POLICY, api_port=free_port(), api_keys=entry, store_url=url)
        api = build_server(settings, cast(Client, None))  # GET /review reads the store only
        task = asyncio.create_task(api.serve())
        while not api.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=300) as http:
            for period in ("30d", "366d", "30d", "366d"):
                began = time.monotonic()
                answer = await http.get(
                    "/review", params={"since": period, "by": "department"}, headers={"X-API-Key": key}
                )
                took = time.monotonic() - began
                got = answer.json()["overall"]["tickets"] if answer.status_code == 200 else answer.text[:200]
                print(
                    f"  GET /review?since={period}&by=department: {took:.2f}s ({got} tickets)",
                    flush=True,
                )
        api.should_exit = True
        await task
        current = calendars_of(POLICY)
        since = NOW - timedelta(days=7)
        counted = review_from_store(store, current, since=since, until=NOW, now=NOW, group_by="department")
        derived = review(
            load_facts(store, since, NOW),
            current,
            since=since,
            until=NOW,
            now=NOW,
            group_by="department",
            frozen=frozen_calendars(store),
        )
        same = counted.model_dump(exclude={"generated_at"}) == derived.model_dump(exclude={"generated_at"})
        print(
            f"  7-day sample ({counted.overall.tickets} tickets): SQL "
            f"{'equals' if same else 'DIFFERS FROM'} the Python derivation",
            flush=True,
        )
        store.dispose()
    finally:
        if server is not None:
            server.destroy()
