"""The cost of a new ticket: decision modules loaded once per worker, no timer before the first
decision, and the clocks started at the workflow's start time however late its first task runs."""

from __future__ import annotations

import asyncio
import importlib.abc
import importlib.machinery
import sys
import uuid
from collections.abc import Sequence
from datetime import timedelta
from types import ModuleType
from typing import Any

import httpx
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.ticket_activities import TicketActivities
from api.client import TicketClient
from tests.conftest import TEST_CONVERTER
from tests.helpers import AGENT, ticket
from tests.receiver import Receiver
from workers.sandbox import DETERMINISTIC_MODULES, WORKFLOW_FILES, workflow_runner
from workers.worker import build_worker
from workflows.messages import LoadPolicyInput, PolicySnapshot
from workflows.models import WORKFLOW_TYPE, State
from workflows.ticket import TicketEscalation


class _Recorder(importlib.abc.MetaPathFinder):
    """Sees every module the import system looks for (and finds nothing itself)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        self.names.append(fullname)
        return None


def _deterministic(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in DETERMINISTIC_MODULES)


async def test_decision_modules_are_loaded_once_per_worker_not_per_ticket(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    recorder = _Recorder()
    sys.meta_path.insert(0, recorder)
    try:
        async with make_harness(ts_env, receiver) as h:
            for _ in range(3):
                t = ticket()
                await h.tickets.open(t)
                await h.tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})
    finally:
        sys.meta_path.remove(recorder)
    # The sandbox re-imports the workflow file for each run (it polices it) ...
    assert recorder.names.count("workflows.ticket") >= 3
    # ... but none of the modules it builds on: those are passed through, loaded once per worker.
    reloaded = sorted({n for n in recorder.names if _deterministic(n)})
    assert reloaded == [], f"re-imported per workflow run: {reloaded}"
    assert not set(WORKFLOW_FILES) & set(DETERMINISTIC_MODULES)


async def test_clocks_start_at_the_workflow_start_time_when_its_first_task_runs_late(
    dev_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    """A ticket without `opened_at`, started while its worker is busy elsewhere (here: not yet
    polling): its first task runs seconds later, its clocks start at the start time all the same."""
    async with make_harness(dev_env, receiver) as h:
        pass  # a task queue and settings; no worker polls the queue after this
    t = ticket()
    tickets = TicketClient(dev_env.client, h.task_queue)
    await tickets.open(t)
    started = (await tickets.handle(t.ticket_id).describe()).start_time
    await asyncio.sleep(3)
    async with (
        httpx.AsyncClient(timeout=5) as http,
        build_worker(dev_env.client, h.settings, http, task_queue=h.task_queue),
    ):
        status = await tickets.status(t.ticket_id)
        history = await tickets.handle(t.ticket_id).fetch_history()
    assert status.clocks, status
    for clock in status.clocks:
        assert clock.started_at == started, (clock.name, clock.started_at, started)
    first_task = next(e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
    assert first_task.event_time.ToDatetime().timestamp() - started.timestamp() >= 2.5
    # No timer before the first decision.
    kinds = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_TIMER_STARTED not in kinds[: kinds.index(EventType.EVENT_TYPE_MARKER_RECORDED) + 1]


async def test_a_policy_load_spanning_several_workflow_tasks_replays(
    dev_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    """The local activity that loads the policy outlasts the workflow task (the SDK heartbeats the
    task and the ticket's first decision comes in a later one), with an action sent meanwhile:
    the recorded history replays with an empty cache."""
    async with make_harness(dev_env, receiver) as h:
        pass
    tq = f"slow-{uuid.uuid4().hex[:8]}"
    http = httpx.AsyncClient(timeout=5)
    real = TicketActivities(h.settings, http)

    @activity.defn(name="load_policy")
    async def slow_load_policy(request: LoadPolicyInput) -> PolicySnapshot:
        await asyncio.sleep(3)
        return await real.load_policy(request)

    others: list[Any] = [a for a in real.all() if a.__temporal_activity_definition.name != "load_policy"]  # type: ignore[attr-defined]
    worker = Worker(
        dev_env.client,
        task_queue=tq,
        workflows=[TicketEscalation],
        activities=[slow_load_policy, *others],
        workflow_runner=workflow_runner(),
    )
    t = ticket()
    tickets = TicketClient(dev_env.client, tq)
    async with worker:
        handle = await dev_env.client.start_workflow(
            WORKFLOW_TYPE, t, id=f"ticket-{t.ticket_id}", task_queue=tq, task_timeout=timedelta(seconds=2)
        )
        await asyncio.sleep(0.5)
        await handle.signal("acknowledge", {"actor": AGENT})
        for _ in range(100):
            if (await tickets.status(t.ticket_id)).state == State.acknowledged:
                break
            await asyncio.sleep(0.2)
        await tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "done"})
        history = await handle.fetch_history()
    await http.aclose()
    kinds = [e.event_type for e in history.events]
    marker = kinds.index(EventType.EVENT_TYPE_MARKER_RECORDED)
    assert kinds[:marker].count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) >= 2, "the load did not span tasks"
    replayer = Replayer(workflows=[TicketEscalation], data_converter=TEST_CONVERTER, workflow_runner=workflow_runner())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
