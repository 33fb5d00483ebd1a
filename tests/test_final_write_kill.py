"""The final write of a ticket's record is a local activity, so its retries live in the worker that
runs it. Here that worker is SIGKILLed while the write retries against a database that is down: a
new worker must run the write again once the database is back, the ticket must complete, and the
record must hold every event exactly once, in the timeline's order."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from api.client import TicketClient
from tests.conftest import TEST_CONVERTER, make_settings
from tests.helpers import AGENT, ticket
from tests.processes import start_worker
from tests.receiver import Receiver
from tests.test_first_task_timers_and_final_write import assert_stored_once, fast_policy, replay
from tests.test_server_restart import worker_env
from workflows.models import workflow_id_for


async def test_a_worker_killed_while_the_final_write_retries_loses_no_event(
    dev_env: WorkflowEnvironment, receiver: Receiver, write_policy: Any, postgres: Any, tmp_path: Path
) -> None:
    url = postgres.new_database()
    settings = make_settings(write_policy(fast_policy("PT1H")), receiver, url)
    address = dev_env.client.service_client.config.target_host
    task_queue = f"tq-final-kill-{os.urandom(3).hex()}"
    env = worker_env(settings, task_queue, address)
    first = await asyncio.to_thread(start_worker, address, env)
    second = None
    try:
        client = await Client.connect(address, data_converter=TEST_CONVERTER)
        tickets = TicketClient(client, task_queue)
        t = ticket()
        await tickets.open(t)
        await tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})
        postgres.stop()
        try:
            await tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "done"})
            await asyncio.sleep(6)  # the reopen window (1 s) is over: the final write is retrying
            handle = tickets.handle(t.ticket_id)
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            first.kill()  # SIGKILL: the local activity's attempts die with the worker
            first.wait()
        finally:
            postgres.start()
        second = await asyncio.to_thread(start_worker, address, env)
        summary = await asyncio.wait_for(handle.result(), 150)
        timeline = await tickets.timeline(t.ticket_id)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    assert summary["final_state"] == "resolved"
    history = await replay(dev_env.client, workflow_id_for(t.ticket_id))
    # The kill landed inside the write's workflow task (its local activity was retrying), which timed out.
    assert any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT for e in history.events)
    assert_stored_once(url, t.ticket_id, timeline)
