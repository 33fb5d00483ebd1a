"""Backtest: stored tickets replayed through the real workflow under a proposed policy, with a
known difference from what happened."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from review.backtest import load_lives, run_backtest
from store.repository import Store
from tests.conftest import policy_doc
from workflows.messages import StoreBatch, StoredEvent, TicketRecord

REPO = Path(__file__).resolve().parent.parent
ANN = {"id": "ann", "role": "agent"}
LEE = {"id": "lee", "role": "lead"}


def stored_ticket(
    store: Store,
    life: str,
    ticket_id: str,
    category: str,
    dept: str,
    opened: datetime,
    timeline: list[tuple[timedelta, str, str | None, dict[str, Any]]],
    actions: list[tuple[timedelta, str, dict[str, Any]]],
) -> None:
    """A life as the store keeps it: the ticket as opened, its timeline rows (as it happened under
    the policy in force) and the actions as they came."""
    rows: list[tuple[datetime, str, str, str | None, dict[str, Any]]] = []
    for after, kind, actor, detail in timeline:
        rows.append((opened + after, "timeline", kind, actor, detail))
    for after, name, payload in actions:
        rows.append(
            (
                opened + after,
                "action",
                f"action.{name}",
                None,
                {"action": name, "via": "update", "key": None, "payload": payload},
            )
        )
    rows.sort(key=lambda r: (r[0], r[1] == "timeline"))  # an action comes before what it caused
    events = [
        StoredEvent(seq=i, stream=stream, at=at, kind=kind, actor=actor, data=data)
        for i, (at, stream, kind, actor, data) in enumerate(rows)
    ]
    record = TicketRecord(
        life_id=life,
        ticket_id=ticket_id,
        workflow_id=f"ticket-{ticket_id}",
        opened_at=opened,
        channel="email",
        category=category,
        priority="normal",
        segment="standard",
        policy_version="test",
        state="resolved",
        tier=1,
        department=dept,
        current_priority="normal",
        closed_at=opened + timedelta(days=1),
        ticket={
            "ticket_id": ticket_id,
            "subject": "s",
            "channel": "email",
            "category": category,
            "priority": "normal",
            "customer": {"id": "c-1"},
            "opened_at": opened.isoformat(),
        },
    )
    store.write(StoreBatch(record=record, first_seq=0, events=events))


def opening(dept: str, opened: datetime) -> list[tuple[timedelta, str, str | None, dict[str, Any]]]:
    zero = timedelta(0)
    return [
        (zero, "ticket_opened", "source:t", {"policy_version": "test", "opened_at": opened.isoformat()}),
        (
            zero,
            "routed",
            "system:escalation-policy",
            {"route": dept, "tier": 1, "department": dept, "calendar": "always", "priority": "normal"},
        ),
        (zero, "tier_entered", "system:escalation-policy", {"tier": 1, "department": dept}),
        (
            zero,
            "sla_started",
            "system:escalation-policy",
            {"clock": "first_response", "target": "8:00:00", "deadline": (opened + timedelta(hours=8)).isoformat()},
        ),
        (
            zero,
            "sla_started",
            "system:escalation-policy",
            {"clock": "resolution", "target": "3 days, 0:00:00", "deadline": (opened + timedelta(days=3)).isoformat()},
        ),
    ]


def fixture_set(store: Store) -> datetime:
    """Three tickets that went well under the policy in force (8 h to respond, 3 days to resolve)."""
    opened = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
    h = timedelta(hours=1)
    # BT-1 (billing): acknowledged after 2 h, resolved after 5 h.
    stored_ticket(
        store,
        "l1",
        "BT-1",
        "billing",
        "billing",
        opened,
        [
            *opening("billing", opened),
            (2 * h, "acknowledged", "agent:ann", {}),
            (5 * h, "resolved", "agent:ann", {"resolution": "done"}),
        ],
        [(2 * h, "acknowledge", {"actor": ANN}), (5 * h, "resolve", {"actor": ANN, "resolution": "done"})],
    )
    # BT-2 (billing): acknowledged after 30 min, resolved after 1 h.
    stored_ticket(
        store,
        "l2",
        "BT-2",
        "billing",
        "billing",
        opened + h,
        [
            *opening("billing", opened + h),
            (0.5 * h, "acknowledged", "agent:ann", {}),
            (h, "resolved", "agent:ann", {"resolution": "done"}),
        ],
        [(0.5 * h, "acknowledge", {"actor": ANN}), (h, "resolve", {"actor": ANN, "resolution": "done"})],
    )
    # BT-3 (support): acknowledged after 20 min, escalated by the lead after 1 h, resolved after 2 h.
    esc = {"actor": LEE, "kind": "hierarchical", "reason": "needs tier 2"}
    stored_ticket(
        store,
        "l3",
        "BT-3",
        "general",
        "support",
        opened + 2 * h,
        [
            *opening("support", opened + 2 * h),
            (timedelta(minutes=20), "acknowledged", "agent:ann", {}),
            (h, "tier_entered", "system:escalation-policy", {"tier": 2, "department": "support"}),
            (
                h,
                "escalated",
                "lead:lee",
                {
                    "kind": "hierarchical",
                    "from_tier": 1,
                    "to_tier": 2,
                    "department": "support",
                    "reason": "needs tier 2",
                },
            ),
            (2 * h, "resolved", "agent:ann", {"resolution": "done"}),
        ],
        [
            (timedelta(minutes=20), "acknowledge", {"actor": ANN}),
            (h, "escalate", esc),
            (2 * h, "resolve", {"actor": ANN, "resolution": "done"}),
        ],
    )
    return opened


async def test_backtest_shows_the_known_difference(tmp_path: Path) -> None:
    """Proposed: tier 1 normal tickets get 1 h to respond and 3 h to resolve. BT-1 then breaches
    both clocks and the resolution ladder escalates it; BT-2 and BT-3 stay within. Known answer:
    billing +2 breaches and +1 escalation, support unchanged."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    opened = fixture_set(store)
    doc = policy_doc()
    doc["sla"][1]["normal"] = {"first_response": "PT1H", "resolution": "PT3H"}
    proposed = tmp_path / "proposed.yaml"
    proposed.write_text(yaml.safe_dump(doc))
    since, until, now = opened - timedelta(hours=1), opened + timedelta(days=1), datetime.now(UTC)
    lives, skipped = load_lives(store, since, until)
    assert [life.ticket.ticket_id for life in lives] == ["BT-1", "BT-2", "BT-3"] and skipped == 0
    assert [len(life.actions) for life in lives] == [2, 2, 3]
    result = run_backtest(store, proposed, since, until, now, limit=10)
    rows = {r.department: r for r in result.rows}
    assert set(rows) == {"billing", "support", "all"}
    billing, support = rows["billing"], rows["support"]
    assert (billing.actual.breaches, billing.proposed.breaches) == (0, 2)
    assert (billing.actual.escalations, billing.proposed.escalations) == (0, 1)
    assert billing.proposed.ladder_escalations == 1 and billing.proposed.first_response_breach_rate == 0.5
    assert (support.actual.breaches, support.proposed.breaches) == (0, 0)
    assert (support.actual.escalations, support.proposed.escalations) == (1, 1)
    assert support.proposed.manual_escalations == 1
    assert rows["all"].more_breaches == 2 and rows["all"].more_escalations == 1
    store.dispose()

    # The command prints the same, side by side; a broken policy file is bad input (exit 2).
    env = {**os.environ, "ESCALATIONS_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}"}
    args = [
        sys.executable,
        "-m",
        "cli.main",
        "policy",
        "backtest",
        str(proposed),
        "--since",
        "7d",
        "--limit",
        "1",
        "--json",
    ]
    run = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr
    body = json.loads(run.stdout)
    by = {r["department"]: r for r in body["rows"]}
    assert body["tickets"] == 1 and body["skipped"] == 2  # --limit 1: BT-1 only
    assert by["billing"]["proposed"]["breaches"] - by["billing"]["actual"]["breaches"] == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\ntiers: []\n")
    run = await asyncio.to_thread(
        subprocess.run, [*args[:5], str(broken)], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert run.returncode == 2 and "broken.yaml" in run.stderr


async def test_backtest_of_a_ticket_the_real_workflow_stored(tmp_path: Path) -> None:
    """End to end: a ticket run by the real workflow and worker writes its record (timeline and
    actions) to the store; the backtest replays exactly those actions under the proposed policy."""
    import httpx
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from config.settings import Settings
    from workers.connection import binary, register_search_attributes
    from workers.worker import build_worker
    from workflows.models import WORKFLOW_TYPE, Acknowledge, Resolve, Ticket, workflow_id_for

    current, proposed = tmp_path / "current.yaml", tmp_path / "proposed.yaml"
    current.write_text(yaml.safe_dump(policy_doc()))
    doc = policy_doc()
    doc["sla"][1]["normal"] = {"first_response": "PT1H", "resolution": "PT3H"}
    proposed.write_text(yaml.safe_dump(doc))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=str(binary("temporal-test-server"))
    )
    try:
        await register_search_attributes(env.client, "default")
        settings = Settings(_env_file=None, policy_path=current, store_url=url)
        async with httpx.AsyncClient() as http, build_worker(env.client, settings, http, task_queue="bt-e2e"):
            ticket = Ticket(ticket_id="E2E-1", subject="x", category="billing", customer={"id": "c"})
            handle = await env.client.start_workflow(
                WORKFLOW_TYPE, ticket, id=workflow_id_for("E2E-1"), task_queue="bt-e2e"
            )
            await env.sleep(timedelta(hours=2))
            await handle.execute_update("acknowledge", Acknowledge.model_validate({"actor": ANN}))
            await env.sleep(timedelta(hours=3))
            await handle.execute_update("resolve", Resolve.model_validate({"actor": ANN, "resolution": "done"}))
            await env.sleep(timedelta(hours=1))
            await asyncio.sleep(3)  # the last batch reaches the store
            await handle.terminate("test over")
    finally:
        await env.shutdown()
    store = Store(url)
    now = datetime.now(UTC) + timedelta(days=1)
    lives, _ = load_lives(store, now - timedelta(days=3), now)
    assert [a.name for life in lives for a in life.actions] == ["acknowledge", "resolve"]
    result = run_backtest(store, proposed, now - timedelta(days=3), now, now, limit=5)
    billing = next(r for r in result.rows if r.department == "billing")
    assert (billing.actual.breaches, billing.proposed.breaches) == (0, 2)
    assert (billing.actual.escalations, billing.proposed.escalations) == (0, 1)
    store.dispose()
