"""What follows a new ticket's opening happens at the time its policy loaded (ADR 0007): the
deadlines missed while a broken policy file held the ticket come before the actions that waited
for it, and a worker whose clock is ahead of the server's decides nothing early."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import temporalio.activity
import yaml
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

import activities.ticket_activities
from api.client import TicketClient
from tests.conftest import TEST_CODEC_KEYS, TEST_CONVERTER, make_settings, policy_doc
from tests.helpers import AGENT, ticket
from tests.processes import start_worker
from workers.worker import build_worker
from workflows.models import workflow_id_for
from workflows.ticket import TicketEscalation


def short_first_response(first_response: str) -> dict[str, Any]:
    doc = policy_doc()
    for tier in doc["sla"].values():
        for targets in tier.values():
            targets.update(first_response=first_response, resolution="PT1H")
    return doc


async def start_acknowledged(client: Any, t: Any, task_queue: str) -> None:
    """The ticket and its acknowledgement together (signal-with-start): decided in the opening task."""
    await client.start_workflow(
        "TicketEscalation",
        t,
        id=workflow_id_for(t.ticket_id),
        task_queue=task_queue,
        start_signal="acknowledge",
        start_signal_args=[{"actor": AGENT}],
    )


async def test_an_action_that_waited_for_a_broken_policy_comes_after_the_deadline_it_missed(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The policy file is broken when the ticket arrives with an acknowledgement (signal-with-start);
    its 3 s first response passes while the load retries. Once the file is fixed, the breach comes
    first (with its notices), then the acknowledgement that waited for the load; the history replays."""
    path = tmp_path / "policy.yaml"
    path.write_text("sla: [not a policy\n")
    doc = short_first_response("PT3S")
    task_queue = f"tq-{uuid.uuid4().hex[:8]}"
    tickets = TicketClient(dev_env.client, task_queue)
    t = ticket(priority="urgent")
    settings = make_settings(path, None)
    async with httpx.AsyncClient(timeout=5) as http, build_worker(dev_env.client, settings, http, task_queue):
        await start_acknowledged(dev_env.client, t, task_queue)
        await asyncio.sleep(4)
        path.write_text(yaml.safe_dump(doc))
        status = await tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "done"})  # after the load
        kinds = [e.kind for e in (await tickets.timeline(t.ticket_id)).events]
        history = await dev_env.client.get_workflow_handle(workflow_id_for(t.ticket_id)).fetch_history()
    assert status.sla_breached
    assert kinds.index("sla_breached") < kinds.index("acknowledged"), kinds
    await Replayer(workflows=[TicketEscalation], data_converter=TEST_CONVERTER).replay_workflow(history)


SKEW = timedelta(seconds=5)


class _Ahead(datetime):
    """The worker's wall clock, 5 s ahead of the server's."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return datetime.now(tz) + SKEW


class _ActivityAhead:
    """`temporalio.activity` as the activities see it, with the worker's clock ahead: the times core
    stamps on this worker (a local activity's schedule) are ahead too."""

    def __getattr__(self, name: str) -> Any:
        return getattr(temporalio.activity, name)

    @staticmethod
    def info() -> temporalio.activity.Info:
        info = temporalio.activity.info()
        return dataclasses.replace(info, scheduled_time=info.scheduled_time + SKEW)


async def test_a_worker_clock_ahead_of_the_server_decides_nothing_early(
    dev_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The acknowledgement comes with the ticket, 2.5 s before its first response is due; the
    worker's clock is 5 s ahead. It is no breach, and no notice goes out early."""
    monkeypatch.setattr(activities.ticket_activities, "datetime", _Ahead)
    monkeypatch.setattr(activities.ticket_activities, "activity", _ActivityAhead())
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(short_first_response("PT4S")))
    task_queue = f"tq-{uuid.uuid4().hex[:8]}"
    tickets = TicketClient(dev_env.client, task_queue)
    t = ticket(priority="urgent", opened_at=datetime.now(UTC) - timedelta(seconds=1.5))
    async with (
        httpx.AsyncClient(timeout=5) as http,
        build_worker(dev_env.client, make_settings(path, None), http, task_queue),
    ):
        await start_acknowledged(dev_env.client, t, task_queue)
        await asyncio.sleep(4)
        status = await tickets.status(t.ticket_id)
        kinds = [e.kind for e in (await tickets.timeline(t.ticket_id)).events]
    assert not status.sla_breached, kinds
    assert "acknowledged" in kinds and "sla_breached" not in kinds, kinds


async def test_a_load_rerun_after_a_worker_is_killed_counts_from_the_request(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The worker is killed (SIGKILL) while a broken policy file holds a ticket that came with its
    acknowledgement; another worker re-runs the load from scratch once the file is fixed. The 4 s
    first response passed long before: it is breached before the acknowledgement is applied."""
    path = tmp_path / "policy.yaml"
    path.write_text("sla: [not a policy\n")
    task_queue = f"tq-kill-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATIONS_") or k == "ESCALATIONS_DATA_DIR"} | {
        "ESCALATIONS_TASK_QUEUE": task_queue,
        "ESCALATIONS_POLICY_PATH": str(path),
        "ESCALATIONS_LOG_LEVEL": "WARNING",
        "ESCALATIONS_CODEC_KEYS": TEST_CODEC_KEYS,
    }
    address = dev_env.client.service_client.config.target_host
    tickets = TicketClient(dev_env.client, task_queue)
    t = ticket(priority="urgent", opened_at=datetime.now(UTC))
    first = start_worker(address, env)
    second = None
    try:
        await start_acknowledged(dev_env.client, t, task_queue)
        await asyncio.sleep(9)  # past the first task's heartbeat: the load's retries span tasks
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        path.write_text(yaml.safe_dump(short_first_response("PT4S")))
        second = start_worker(address, env)
        status = await tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "done"})
        kinds = [e.kind for e in (await tickets.timeline(t.ticket_id)).events]
        history = await dev_env.client.get_workflow_handle(workflow_id_for(t.ticket_id)).fetch_history()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
    assert status.sla_breached, kinds
    assert kinds.index("sla_breached") < kinds.index("acknowledged"), kinds
    await Replayer(workflows=[TicketEscalation], data_converter=TEST_CONVERTER).replay_workflow(history)


def test_a_load_rerun_after_a_crash_is_measured_from_the_request() -> None:
    """Its own schedule says 0.2 s; the request was 30 s ago on the server's clock: a re-run."""
    from activities.policy_file import loaded_at

    request = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    now = request + timedelta(seconds=30)
    assert loaded_at(request, now - timedelta(seconds=0.2), now) == now
    # A worker clock 5 s ahead of the server's, and a load of 0.2 s: the skew cancels out.
    ahead = now + timedelta(seconds=5)
    assert loaded_at(now, ahead - timedelta(seconds=0.2), ahead) == now + timedelta(seconds=0.2)
