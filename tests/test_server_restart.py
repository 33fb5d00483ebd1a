"""The Temporal server killed (SIGKILL) and restarted on its database while tickets breach: the
worker reconnects by itself, every breach notice reaches the idempotent receiver exactly once, and
every ticket completes with its whole record in the record store (nothing lost, nothing twice)."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from temporalio.client import Client

from api.client import TicketClient
from config.settings import Settings
from store.repository import Store
from tests.conftest import TEST_CONVERTER, make_settings
from tests.helpers import AGENT, ticket, until
from tests.receiver import Receiver
from tests.test_store_devserver import fast_policy
from workers.devserver import DevServer
from workers.worker import build_worker

N = 6
TARGET = 12  # seconds to the first-response breach


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_server_killed_and_restarted_while_tickets_breach_loses_nothing(
    receiver: Receiver, write_policy: Any, tmp_path: Path
) -> None:
    server_settings = Settings(
        data_dir=tmp_path / "temporal", dev_server_port=free_port(), dev_ui_port=free_port(), _env_file=None
    )
    server = DevServer(server_settings)
    await server.start()
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = make_settings(write_policy(fast_policy(f"PT{TARGET}S")), receiver, store_url)
    settings = settings.model_copy(update={"store_url": SecretStr(store_url)})
    try:
        client = await Client.connect(f"127.0.0.1:{server_settings.dev_server_port}", data_converter=TEST_CONVERTER)
        task_queue = "tq-restart"
        async with httpx.AsyncClient(timeout=5) as http, build_worker(client, settings, http, task_queue=task_queue):
            tickets = TicketClient(client, task_queue)
            opened_at = datetime.now(UTC)
            batch = [ticket(priority="urgent", opened_at=opened_at) for _ in range(N)]
            for t in batch:
                await tickets.open(t)
                await tickets.status(t.ticket_id)
            # Kill the server as the deadline comes (timers due, deliveries about to be in flight)...
            await asyncio.sleep(
                max(0.0, (opened_at + timedelta(seconds=TARGET - 1) - datetime.now(UTC)).total_seconds())
            )
            assert server.process is not None
            server.process.kill()
            server.process.wait(10)
            await asyncio.sleep(5)  # ...the deadline passes while it is down...
            await server.start()  # ...and it comes back on the same database.
            breached = await until(lambda: receiver.events("sla.breached"), count=N, seconds=120)
            for t in batch:
                await tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "ok"})
            results = await asyncio.wait_for(
                asyncio.gather(*(tickets.handle(t.ticket_id).result() for t in batch)), 120
            )
    finally:
        server.stop()
    assert sorted(e["ticket_id"] for e in breached) == sorted(t.ticket_id for t in batch)
    # Exactly once: the receiver dedups by webhook-id; a redelivery after the restart was acknowledged only.
    applied = Counter(r.headers["webhook-id"] for r in receiver.accepted if r.path == "/events")
    assert all(n == 1 for n in applied.values())
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
    finally:
        store.dispose()
