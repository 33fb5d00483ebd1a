"""The worst night: while tickets breach (a notice and a helpdesk reassignment each), one of two
worker processes is SIGKILLed and so is the Temporal server, which restarts on its database; a new
worker joins. The surviving worker reconnects by itself, every breach notice reaches the
idempotent receiver exactly once, every reassignment reaches the helpdesk with one idempotency key
per ticket, and every ticket completes with its whole record in the record store (SQLite shared by
the workers): nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client

from api.client import TicketClient
from config.settings import Settings
from store.repository import Store
from tests.conftest import TEST_CODEC_KEYS, TEST_CONVERTER, TEST_SECRET, make_settings
from tests.helpers import AGENT, LEAD, ticket, until
from tests.ports import free_port
from tests.processes import start_worker
from tests.receiver import Receiver
from tests.test_store_devserver import fast_policy
from workers.devserver import DevServer

N = 6
TARGET = 12  # seconds to the first-response breach


def worker_env(settings: Settings, task_queue: str, address: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATIONS_") or k == "ESCALATIONS_DATA_DIR"}
    return env | {
        "ESCALATIONS_TASK_QUEUE": task_queue,
        "ESCALATIONS_POLICY_PATH": str(settings.policy_path),
        "ESCALATIONS_STORE_URL": settings.store_database_url,
        "ESCALATIONS_WEBHOOK_URL": str(settings.webhook_url),
        "ESCALATIONS_HELPDESK_URL": str(settings.helpdesk_url),
        "ESCALATIONS_WEBHOOK_SECRET": TEST_SECRET,
        "ESCALATIONS_CODEC_KEYS": TEST_CODEC_KEYS,
        "ESCALATIONS_LOG_LEVEL": "WARNING",
        "ESCALATIONS_WORKFLOW_SANDBOX": "false",
        "ESCALATIONS_GRACEFUL_SHUTDOWN_SECONDS": "0",
    }


async def test_a_worker_and_the_server_killed_while_tickets_breach_lose_nothing(
    receiver: Receiver, write_policy: Any, tmp_path: Path
) -> None:
    server_settings = Settings(
        data_dir=tmp_path / "temporal", dev_server_port=free_port(), dev_ui_port=free_port(), _env_file=None
    )
    server = DevServer(server_settings)
    await server.start()
    address = f"127.0.0.1:{server_settings.dev_server_port}"
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    doc = fast_policy(f"PT{TARGET}S")
    doc["ladders"]["first_response"][0]["actions"].append({"type": "reassign", "to": "tier_queue"})
    settings = make_settings(write_policy(doc), receiver, store_url)
    env = worker_env(settings, "tq-restart", address)
    workers = await asyncio.gather(*(asyncio.to_thread(start_worker, address, env) for _ in range(2)))
    try:
        client = await Client.connect(address, data_converter=TEST_CONVERTER)
        tickets = TicketClient(client, "tq-restart")
        opened_at = datetime.now(UTC)
        batch = [ticket(priority="urgent", opened_at=opened_at) for _ in range(N)]
        for t in batch:
            await tickets.open(t)
            await tickets.act(t.ticket_id, "reassign", {"actor": LEAD, "reason": "yours", "to_agent": "agent-7"})
        # As the deadline comes (timers due, deliveries about to be in flight), a worker and the server die...
        await asyncio.sleep(max(0.0, (opened_at + timedelta(seconds=TARGET) - datetime.now(UTC)).total_seconds()))
        workers[0].kill()
        assert server.process is not None
        server.process.kill()
        server.process.wait(10)
        workers[0].wait(10)
        await asyncio.sleep(5)  # ...the deadline passes while the server is down...
        await server.start()  # ...it comes back on the same database, and a new worker joins.
        workers.append(await asyncio.to_thread(start_worker, address, env))
        breached = await until(lambda: receiver.events("sla.breached"), count=N, seconds=120)
        for t in batch:
            await tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "ok"})
        results = await asyncio.wait_for(asyncio.gather(*(tickets.handle(t.ticket_id).result() for t in batch)), 120)
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        server.stop()
    assert sorted(e["ticket_id"] for e in breached) == sorted(t.ticket_id for t in batch)
    # Exactly once: the receiver dedups by webhook-id; a redelivery after the restart was acknowledged only.
    applied = Counter(r.headers["webhook-id"] for r in receiver.accepted if r.path == "/events")
    assert all(n == 1 for n in applied.values())
    with receiver.lock:
        puts = [r for r in receiver.accepted if r.method == "PUT"]
    keys = {
        t.ticket_id: {r.headers["idempotency-key"] for r in puts if f"/tickets/{t.ticket_id}/" in r.path} for t in batch
    }
    assert all(r["final_state"] == "resolved" for r in results)
    store = Store(store_url)
    try:
        for t in batch:
            life = store.life(t.ticket_id)
            assert life is not None and life.ticket.closed_at is not None and life.ticket.complete
            seqs = [e.seq for e in store.events([life.ticket.life_id])]
            assert seqs == list(range(life.ticket.events_stored))  # no gap, none twice
            kinds = [e.kind for e in life.events]
            assert kinds.count("sla_breached") == 1 and kinds.count("resolved") == 1
            # Each reassignment (by the lead, then by the ladder to the queue) reached the helpdesk,
            # retries with the same idempotency key.
            assert kinds.count("reassigned") == 2 and len(keys[t.ticket_id]) == 2, keys[t.ticket_id]
    finally:
        store.dispose()
