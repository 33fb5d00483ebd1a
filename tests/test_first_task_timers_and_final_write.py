"""A ticket's first task, its timer and its last write, on real servers: deadlines that pass before
the first task runs (with and without an action), one search-attribute upsert per workflow task,
one timer moved by priority changes, the final write with the database down, and many tickets'
final writes sharing transactions."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from config.settings import Settings
from tests.conftest import TEST_CONVERTER, make_settings, policy_doc
from tests.helpers import AGENT, ticket, until
from tests.receiver import Receiver
from workers.sandbox import workflow_runner
from workers.worker import build_worker
from workflows.models import workflow_id_for
from workflows.ticket import TicketEscalation


def fast_policy(first_response: str = "PT5S", reopen_window: str = "PT1S", resolution: str = "PT1H") -> dict[str, Any]:
    doc = policy_doc(reopen_window=reopen_window)
    for tier in doc["sla"].values():
        for targets in tier.values():
            targets.update(first_response=first_response, resolution=resolution)
    doc["ladders"] = {
        "first_response": [
            {"id": "fr-breach", "after_breach": "PT0S", "actions": [{"type": "notify", "roles": ["assignee"]}]}
        ],
        "resolution": [
            {"id": "res-breach", "after_breach": "PT0S", "actions": [{"type": "notify", "roles": ["assignee"]}]}
        ],
    }
    return doc


@asynccontextmanager
async def worker_on(client: Client, settings: Settings, task_queue: str) -> AsyncIterator[None]:
    async with httpx.AsyncClient(timeout=5) as http, build_worker(client, settings, http, task_queue=task_queue):
        yield


async def replay(client: Client, workflow_id: str, run_id: str | None = None) -> WorkflowHistory:
    """Replays the history with an empty cache and the worker's sandboxed runner; raises on nondeterminism."""
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    replayer = Replayer(workflows=[TicketEscalation], workflow_runner=workflow_runner(), data_converter=TEST_CONVERTER)
    await replayer.replay_workflow(history)
    return history


def upserts_per_task(history: WorkflowHistory, *, sdk_patch_upserts: bool = False) -> dict[int, int]:
    """The ticket's upserts per workflow task. The SDK's own `TemporalChangeVersion` upsert, in the
    task that records a patch marker (once per patch and life), counts only with `sdk_patch_upserts`."""
    counts: dict[int, int] = collections.Counter()
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            a = e.upsert_workflow_search_attributes_event_attributes
            if set(a.search_attributes.indexed_fields) == {"TemporalChangeVersion"} and not sdk_patch_upserts:
                continue
            counts[a.workflow_task_completed_event_id] += 1
    return dict(counts)


def kinds(timeline: Any) -> list[str]:
    return [e.kind for e in timeline.events]


# ---------------------------------------------------------------------- opening at the start time
async def test_a_deadline_that_passes_before_the_first_task_is_breached_once_and_replays(
    dev_env: WorkflowEnvironment, receiver: Receiver, write_policy: Any
) -> None:
    """No worker polls for 4 s after the start; the first-response deadline (start + 2 s) passes
    meanwhile. The breach is recorded at its deadline, notified once, and the history replays."""
    settings = make_settings(write_policy(fast_policy("PT2S")), receiver)
    tq = f"tq-{uuid.uuid4().hex[:8]}"
    from api.client import TicketClient

    tickets = TicketClient(dev_env.client, tq)
    t = ticket()
    await tickets.open(t)
    await asyncio.sleep(4)
    async with worker_on(dev_env.client, settings, tq):
        breached = await until(lambda: receiver.events("sla.breached"), count=1, seconds=20)
        assert len(breached) == 1
        await tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "done"})
        summary = await asyncio.wait_for(tickets.handle(t.ticket_id).result(), 60)
        timeline = await tickets.timeline(t.ticket_id)
    await asyncio.sleep(1)
    assert len(receiver.events("sla.breached")) == 1
    assert summary["breaches"] == 1
    assert kinds(timeline).count("sla_breached") == 1
    history = await replay(dev_env.client, workflow_id_for(t.ticket_id))
    assert history.events


async def test_an_acknowledgement_sent_after_the_deadline_but_before_the_first_task_still_counts_the_breach(
    dev_env: WorkflowEnvironment, receiver: Receiver, write_policy: Any
) -> None:
    """The first response came 4 s after the start, past its 2 s target: the ticket must count a
    first-response breach (its own summary says time_to_first_response > target). The ack arrived
    as a signal while no worker polled, so it is delivered in the ticket's opening task."""
    settings = make_settings(write_policy(fast_policy("PT2S")), receiver)
    tq = f"tq-{uuid.uuid4().hex[:8]}"
    from api.client import TicketClient

    tickets = TicketClient(dev_env.client, tq)
    t = ticket()
    await tickets.open(t)
    await asyncio.sleep(4)  # the first-response deadline (start + 2 s) passes with no worker
    await tickets.signal(t.ticket_id, "acknowledge", {"actor": AGENT})
    async with worker_on(dev_env.client, settings, tq):
        status = await tickets.status(t.ticket_id)
        for _ in range(50):
            if status.state.value != "open":
                break
            await asyncio.sleep(0.1)
            status = await tickets.status(t.ticket_id)
        await asyncio.sleep(2)
        status = await tickets.status(t.ticket_id)
        timeline = await tickets.timeline(t.ticket_id)
        await tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "done"})
        summary = await asyncio.wait_for(tickets.handle(t.ticket_id).result(), 60)
    await replay(dev_env.client, workflow_id_for(t.ticket_id))
    fr = next(c for c in status.clocks if c.name.value == "first_response")
    assert summary["time_to_first_response"] is not None
    assert kinds(timeline).count("acknowledged") == 1
    assert (fr.breached, summary["breaches"], kinds(timeline).count("sla_breached")) == (True, 1, 1), (
        f"acknowledged {fr.elapsed} after the start, past its 2 s target, yet breached={fr.breached}, "
        f"breaches={summary['breaches']}, timeline={kinds(timeline)}"
    )
    assert len(receiver.events("sla.breached")) == 1


# ---------------------------------------------------------------------- search attributes, one upsert per task
async def test_no_workflow_task_upserts_the_search_attributes_twice(
    dev_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    """1.0 promises at most one UpsertWorkflowSearchAttributes of its own per workflow task (the
    SDK adds `TemporalChangeVersion` in a task that records a patch marker: once per patch and
    life). A ticket opened with a deadline already past (opened_at 10 s ago, 5 s target) breaches
    in its opening task; another gets an action in its opening task (a signal sent right after the start)."""
    from datetime import UTC, datetime

    async with make_harness(dev_env, receiver, fast_policy("PT5S")) as h:
        late = ticket(opened_at=datetime.now(UTC) - timedelta(seconds=10))
        await h.tickets.open(late)
        quick = ticket()
        await h.tickets.open(quick)
        await h.tickets.signal(quick.ticket_id, "acknowledge", {"actor": AGENT})
        await until(lambda: receiver.events("sla.breached"), count=1, seconds=20)
        for t in (late, quick):
            await h.tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "done"})
            await asyncio.wait_for(h.tickets.handle(t.ticket_id).result(), 60)
    found, sdk = {}, {}
    for t in (late, quick):
        history = await replay(dev_env.client, workflow_id_for(t.ticket_id))
        found[t.ticket_id] = {task: n for task, n in upserts_per_task(history).items() if n > 1}
        every = upserts_per_task(history, sdk_patch_upserts=True)
        sdk[t.ticket_id] = sum(every.values()) - sum(upserts_per_task(history).values())
    assert found == {late.ticket_id: {}, quick.ticket_id: {}}, f"tasks (completed event id) with >1 upsert: {found}"
    assert sdk[late.ticket_id] <= 1 and sdk[quick.ticket_id] == 0, sdk  # the late one's breach takes a patch


async def test_search_attributes_follow_every_action(
    dev_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    """After each action, the visible TicketState / TicketTier / NextSlaDeadline match the status."""
    from tests.helpers import LEAD

    async with make_harness(dev_env, receiver, fast_policy("PT1H")) as h:
        t = ticket()
        await h.tickets.open(t)
        handle = h.tickets.handle(t.ticket_id)
        steps = [
            ("acknowledge", {"actor": AGENT}),
            ("escalate", {"actor": LEAD, "kind": "hierarchical", "reason": "hard"}),
            ("change_priority", {"actor": LEAD, "priority": "urgent", "reason": "vip"}),
            ("pending_customer", {"actor": AGENT, "note": "ask"}),
            ("customer_replied", {"note": "answer"}),
            ("resolve", {"actor": AGENT, "resolution": "done"}),
        ]
        seen = []
        for name, payload in steps:
            status = await h.tickets.act(t.ticket_id, name, payload)
            await asyncio.sleep(0.3)
            sa = (await handle.describe()).typed_search_attributes
            got = {p.key.name: p.value for p in sa}
            want_deadline = status.next_deadline
            seen.append(
                (
                    name,
                    got.get("TicketState") == status.state.value,
                    got.get("TicketTier") == status.tier,
                    got.get("NextSlaDeadline") == want_deadline,
                )
            )
        await asyncio.wait_for(handle.result(), 60)
        final = {p.key.name: p.value for p in (await handle.describe()).typed_search_attributes}
    assert all(all(row[1:]) for row in seen), seen
    assert final.get("TicketState") == "resolved" and final.get("NextSlaDeadline") is None


# ---------------------------------------------------------------------- one persistent timer
async def test_priority_flips_move_the_deadline_and_it_breaches_once_on_time(
    dev_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    """urgent = 4 s, normal = 60 s first response. Flip the priority repeatedly (the due time moves
    earlier and later), ending on urgent: exactly one breach, at its deadline, noticed within 2.5 s;
    a timer that fires for nothing never spins the loop."""
    from datetime import datetime

    doc = fast_policy("PT60S")
    for tier in doc["sla"].values():
        tier["urgent"].update(first_response="PT4S")
    async with make_harness(dev_env, receiver, doc) as h:
        t = ticket(priority="normal")
        await h.tickets.open(t)
        for i in range(7):
            prio = "urgent" if i % 2 == 0 else "normal"
            await h.tickets.act(
                t.ticket_id, "change_priority", {"actor": AGENT, "priority": prio, "reason": f"flip {i}"}
            )
        breached = await until(lambda: receiver.events("sla.breached"), count=1, seconds=20)
        await asyncio.sleep(3)
        timeline = await h.tickets.timeline(t.ticket_id)
        status = await h.tickets.status(t.ticket_id)
        await h.tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "done"})
        await asyncio.wait_for(h.tickets.handle(t.ticket_id).result(), 60)
    history = await replay(dev_env.client, workflow_id_for(t.ticket_id))
    assert len(breached) == 1 and len(receiver.events("sla.breached")) == 1
    (breach,) = [e for e in timeline.events if e.kind == "sla_breached"]
    late = datetime.fromisoformat(breach.detail["noticed_at"]) - datetime.fromisoformat(breach.detail["deadline"])
    assert timedelta(0) <= late < timedelta(seconds=2.5), late
    assert status.sla_breached
    tasks = sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    assert tasks < 40, f"{tasks} workflow tasks for 8 actions, a breach and a notice"


# ---------------------------------------------------------------------- the final write, a local activity
async def test_database_down_at_the_final_write_the_ticket_answers_and_then_completes_with_every_event_once(
    dev_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any, postgres: Any
) -> None:
    from temporalio.client import WorkflowExecutionStatus

    url = postgres.new_database()
    async with make_harness(dev_env, receiver, fast_policy("PT1H"), store_url=url) as h:
        t = ticket()
        await h.tickets.open(t)
        await h.tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})
        postgres.stop()
        try:
            await h.tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "done"})
            await asyncio.sleep(9)  # the reopen window (1 s) is over: the final write retries
            handle = h.tickets.handle(t.ticket_id)
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            loop = asyncio.get_running_loop()
            began = loop.time()
            status = await asyncio.wait_for(h.tickets.status(t.ticket_id), 15)
            answered_in = loop.time() - began
            assert status.state.value == "resolved"
        finally:
            postgres.start()
        summary = await asyncio.wait_for(handle.result(), 150)
        timeline = await h.tickets.timeline(t.ticket_id)
    assert summary["final_state"] == "resolved"
    assert answered_in < 5, f"a status query took {answered_in:.1f} s while the final write retried"
    await replay(dev_env.client, workflow_id_for(t.ticket_id))
    assert_stored_once(url, t.ticket_id, timeline)


def assert_stored_once(url: str, ticket_id: str, timeline: Any) -> None:
    """The closed ticket's record holds every timeline event exactly once, in the timeline's order."""
    from store.repository import Store

    store = Store(url)
    try:
        life = store.life(ticket_id)
        assert life is not None and life.ticket.closed_at is not None and life.ticket.summary is not None
        rows = store.events([life.ticket.life_id])
        assert [e.seq for e in rows] == list(range(life.ticket.events_stored))
        assert [e.kind for e in life.events] == kinds(timeline)
    finally:
        store.dispose()


# ---------------------------------------------------------------------- shared writes of many tickets
async def test_fifty_tickets_resolving_together_store_every_event_exactly_once(
    dev_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any, store_url: str
) -> None:
    from store.repository import Store

    n = 50
    async with make_harness(dev_env, receiver, fast_policy("PT1H"), store_url=store_url) as h:
        tickets = [ticket() for _ in range(n)]
        await asyncio.gather(*(h.tickets.open(t) for t in tickets))
        await asyncio.gather(*(h.tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT}) for t in tickets))
        await asyncio.gather(
            *(h.tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "ok"}) for t in tickets)
        )
        results = await asyncio.wait_for(
            asyncio.gather(*(h.tickets.handle(t.ticket_id).result() for t in tickets)), 240
        )
        timelines = {t.ticket_id: kinds(await h.tickets.timeline(t.ticket_id)) for t in tickets}
    assert all(r["final_state"] == "resolved" for r in results)
    store = Store(store_url)
    bad = {}
    try:
        for t in tickets:
            life = store.life(t.ticket_id)
            if life is None or life.ticket.closed_at is None:
                bad[t.ticket_id] = "no closed record"
                continue
            rows = store.events([life.ticket.life_id], streams=("timeline", "action"))
            seqs = [e.seq for e in rows]
            if seqs != list(range(life.ticket.events_stored)):
                bad[t.ticket_id] = f"seqs {seqs} vs {life.ticket.events_stored}"
            elif [e.kind for e in life.events] != timelines[t.ticket_id]:
                bad[t.ticket_id] = f"{[e.kind for e in life.events]} != {timelines[t.ticket_id]}"
    finally:
        store.dispose()
    assert not bad, bad
