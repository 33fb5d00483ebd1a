"""A worker killed (SIGKILL) and started again while 200 tickets are acted on: every action is
applied once, and no caller gets an error it would have to retry by hand. The client sends each
update again under its one id while no worker answers (or the ticket's task fails for a moment
after the restart), within the caller's deadline."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from api.client import TicketClient
from tests.conftest import TEST_CODEC_KEYS, policy_doc
from tests.helpers import AGENT, ticket
from tests.processes import start_worker

pytestmark = pytest.mark.xdist_group("load")

TICKETS = 200
CALLER_DEADLINE = 120.0  # what an API request or a CLI call would wait at most


async def test_a_worker_restarted_while_200_tickets_are_acted_on(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    task_queue = f"tq-restart-{os.urandom(3).hex()}"
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(policy_doc()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATIONS_") or k == "ESCALATIONS_DATA_DIR"} | {
        "ESCALATIONS_TASK_QUEUE": task_queue,
        "ESCALATIONS_POLICY_PATH": str(policy),
        "ESCALATIONS_LOG_LEVEL": "WARNING",
        "ESCALATIONS_CODEC_KEYS": TEST_CODEC_KEYS,
        "ESCALATIONS_STORE_EVENTS": "false",
    }
    address = dev_env.client.service_client.config.target_host
    tickets = TicketClient(dev_env.client, task_queue)
    ids = [ticket().ticket_id for _ in range(TICKETS)]
    worker = start_worker(address, env)
    try:
        await asyncio.gather(*(tickets.open(ticket(ticket_id=tid)) for tid in ids))
        await asyncio.gather(*(tickets.status(tid) for tid in ids))  # each opened: its policy loaded

        errors: list[str] = []

        async def acknowledge(i: int, tid: str) -> None:
            await asyncio.sleep(i * 0.01)  # spread over two seconds: some before the kill, most after
            try:
                sending = tickets.act(tid, "acknowledge", {"actor": AGENT}, key=f"ack-{tid}")
                await asyncio.wait_for(sending, CALLER_DEADLINE)
            except Exception as exc:  # what the caller would have to handle by hand
                errors.append(f"{tid}: {type(exc).__name__}: {exc}"[:300])

        began = time.monotonic()
        sent = asyncio.gather(*(acknowledge(i, tid) for i, tid in enumerate(ids)))
        await asyncio.sleep(0.5)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        await asyncio.sleep(1)
        worker = start_worker(address, env)
        await sent
        took = time.monotonic() - began
        timelines = await asyncio.gather(*(tickets.timeline(tid) for tid in ids))
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)

    print(f"{TICKETS} acknowledgements across a worker restart in {took:.1f} s")
    assert errors == []
    counts = [[e.kind for e in t.events].count("acknowledged") for t in timelines]
    assert counts == [1] * TICKETS
