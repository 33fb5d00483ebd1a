"""The record store against a real dev server: a ticket whose history Temporal deleted still exports
the same timeline; a database outage during a burst of breaches loses no event and stores none twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.export import audit, render_timeline
from store.repository import Store
from store.timeline import entries_from_store
from tests.conftest import policy_doc, start_dev_server
from tests.helpers import AGENT, LEAD, ticket, until
from tests.pg import PostgresServer
from tests.receiver import Receiver
from tests.test_store import workflow_entries
from workflows.models import workflow_id_for


def fast_policy(first_response: str = "PT5S") -> dict[str, Any]:
    doc = policy_doc(reopen_window="PT1S")
    for tier in doc["sla"].values():
        for targets in tier.values():
            targets.update(first_response=first_response, resolution="PT1H")
    doc["ladders"] = {
        "first_response": [
            {"id": "fr-breach", "after_breach": "PT0S", "actions": [{"type": "notify", "roles": ["assignee"]}]}
        ],
        "resolution": [],
    }
    return doc


async def delete_history(env: WorkflowEnvironment, workflow_id: str) -> None:
    await env.client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace="default", workflow_execution=WorkflowExecution(workflow_id=workflow_id)
        )
    )
    for _ in range(1200):  # deletion is asynchronous (about 30 s on the dev server)
        try:
            await env.client.get_workflow_handle(workflow_id).fetch_history()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return
            raise
        await asyncio.sleep(0.1)
    raise AssertionError("the history was not deleted")


async def closed_ticket(h: Any) -> str:
    t = ticket(priority="high")
    await h.tickets.open(t)
    await h.tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})
    await h.tickets.act(
        t.ticket_id, "escalate", {"actor": LEAD, "kind": "functional", "department": "billing", "reason": "refund"}
    )
    await h.tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "refunded"})
    await asyncio.wait_for(h.tickets.handle(t.ticket_id).result(), 60)
    return t.ticket_id


async def test_a_closed_ticket_whose_history_is_deleted_exports_the_same_timeline(
    dev_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any, postgres: PostgresServer, tmp_path: Path
) -> None:
    # Both databases in one test: Temporal takes about half a minute to delete a history.
    urls = [f"sqlite:///{tmp_path / 'store.db'}", postgres.new_database()]
    exported: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for url in urls:
        async with make_harness(dev_env, receiver, fast_policy("PT1H"), store_url=url) as h:
            ticket_id = await closed_ticket(h)
            before = await audit(h.client, ticket_id, url)
            assert before.read_from == "history"
            ours = [e for e in before.entries if e["source"] == "workflow"]
            assert {"ticket_opened", "escalated", "resolved"} <= {e["kind"] for e in ours}
            exported[url] = (ticket_id, ours)

    await asyncio.gather(*(delete_history(dev_env, workflow_id_for(tid)) for tid, _ in exported.values()))
    for url, (ticket_id, ours) in exported.items():
        after = await audit(dev_env.client, ticket_id, url)
        assert after.read_from == "store"
        assert after.store is not None and after.store["complete"] and after.store["closed_at"]
        assert after.entries == ours
        for fmt in ("json", "csv", "md"):
            assert render_timeline(ticket_id, after.entries, fmt) == render_timeline(ticket_id, ours, fmt)
        shown = render_timeline(ticket_id, after.entries, "md", after.read_from, after.store)
        assert "Read from the record store (Temporal no longer has the history)" in shown


async def test_database_down_during_a_burst_of_breaches_loses_nothing_and_stores_nothing_twice(
    dev_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any, postgres: PostgresServer
) -> None:
    url = postgres.new_database()
    n = 20
    async with make_harness(dev_env, receiver, fast_policy("PT4S"), store_url=url) as h:
        tickets = [ticket(priority="urgent") for _ in range(n)]
        await asyncio.gather(*(h.tickets.open(t) for t in tickets))
        postgres.stop()
        try:
            # Breaches happen and are notified while the database is down: the tickets go on.
            breached = await until(lambda: receiver.events("sla.breached"), count=n, seconds=60)
            assert len(breached) >= n
            await asyncio.gather(
                *(h.tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "ok"}) for t in tickets)
            )
            await asyncio.sleep(3)  # well past the reopen window: they would have completed by now
            described = await h.client.get_workflow_handle(workflow_id_for(tickets[0].ticket_id)).describe()
            assert described.status == WorkflowExecutionStatus.RUNNING  # waiting for the store
        finally:
            postgres.start()
        results = await asyncio.wait_for(
            asyncio.gather(*(h.tickets.handle(t.ticket_id).result() for t in tickets)), 180
        )
        assert all(r["final_state"] == "resolved" for r in results)
        timelines = {t.ticket_id: await h.tickets.timeline(t.ticket_id) for t in tickets}

    store = Store(url)
    try:
        for t in tickets:
            life = store.life(t.ticket_id)
            assert life is not None and life.ticket.closed_at is not None
            rows = store.events([life.ticket.life_id])
            assert [e.seq for e in rows] == list(range(life.ticket.events_stored))  # no gap, none twice
            kinds = [e.kind for e in life.events]
            assert kinds.count("sla_breached") == 1 and kinds.count("resolved") == 1
            assert entries_from_store(life) == workflow_entries(timelines[t.ticket_id])
    finally:
        store.dispose()


async def test_the_embedded_default_sets_the_namespace_retention_from_the_setting(dev_env: WorkflowEnvironment) -> None:
    from workers.devserver import set_retention

    assert await set_retention(dev_env.client, "default", 7) == timedelta(days=7)
    assert await set_retention(dev_env.client, "default", 30) == timedelta(days=30)


async def test_a_ticket_that_continues_as_new_mid_batch_stores_every_event_once(
    make_harness: Any, receiver: Receiver, store_url: str
) -> None:
    env = await start_dev_server(20)  # continue-as-new suggested every 20 history events
    try:
        async with make_harness(env, receiver, fast_policy("PT1H"), store_url=store_url) as h:
            t = ticket()
            opened = await h.tickets.open(t)
            await h.tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})
            for i in range(6):
                await h.tickets.act(t.ticket_id, "pending_customer", {"actor": AGENT, "note": f"ask {i}"})
                await h.tickets.act(t.ticket_id, "customer_replied", {"note": f"reply {i}"})
            await h.tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "done"})
            await asyncio.wait_for(h.tickets.handle(t.ticket_id).result(), 60)
            exported = await audit(h.client, t.ticket_id, store_url)
            last = await h.client.get_workflow_handle(workflow_id_for(t.ticket_id)).describe()
    finally:
        await env.shutdown()
    assert last.run_id != opened.run_id  # it continued as new at least once
    store = Store(store_url)
    try:
        life = store.life(t.ticket_id)
        assert life is not None and life.ticket.complete and life.ticket.life_id == opened.run_id
        rows = store.events([life.ticket.life_id])
        assert [e.seq for e in rows] == list(range(life.ticket.events_stored))
        assert sum(1 for e in rows if e.kind == "sla_paused") == 6
        assert sum(1 for e in rows if e.kind == "action.customer_replied") == 6
    finally:
        store.dispose()
    ours = [e for e in exported.entries if e["source"] == "workflow"]
    from_store = await audit(env.client, t.ticket_id, store_url, "store")
    assert from_store.read_from == "store" and from_store.entries == ours
    # Asked for the store while Temporal still has the history: it says so, not that the history is gone.
    assert from_store.store is not None and from_store.store["why"] == "asked for"
