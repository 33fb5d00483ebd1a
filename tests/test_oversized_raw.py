"""A 3 MB update and a 3 MB signal sent straight to Temporal (no API, no client bounds) cannot stall
a ticket: it answers `status` within 5 s throughout, both are refused, and the refusal is one log
line naming the ticket. (The update's refusal carries its request back; the worker leaves the size
check to the server, which refuses it at once: `workers/worker.py`.)"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.helpers import AGENT, ticket

BIG = {"actor": AGENT, "note": "x" * 3_000_000}


async def test_a_3_mb_update_and_signal_leave_the_ticket_answering(
    dev_env: WorkflowEnvironment, make_harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="temporalio.workflow")
    async with make_harness(dev_env, None) as h:
        t = ticket()
        await h.tickets.open(t)
        handle = h.tickets.handle(t.ticket_id)
        await h.tickets.status(t.ticket_id)
        slowest = 0.0
        stop = asyncio.Event()

        async def poll() -> None:
            nonlocal slowest
            while not stop.is_set():
                began = time.monotonic()
                await asyncio.wait_for(h.tickets.status(t.ticket_id), 10)
                slowest = max(slowest, time.monotonic() - began)
                await asyncio.sleep(0.2)

        poller = asyncio.create_task(poll())
        outcomes: dict[str, str] = {}
        for kind in ("update", "signal"):
            try:
                if kind == "update":
                    await asyncio.wait_for(handle.execute_update("acknowledge", BIG), 15)
                else:
                    await handle.signal("acknowledge", BIG)
                outcomes[kind] = "accepted"
            except Exception as exc:  # refused: by the ticket (update) or the server (signal)
                outcomes[kind] = type(exc).__name__
        await asyncio.sleep(2)  # and a little after
        stop.set()
        await poller
        status = await h.tickets.status(t.ticket_id)
        # The ticket still takes a normal action at once.
        began = time.monotonic()
        acked = await h.tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})
        took = time.monotonic() - began

    assert outcomes["update"] != "accepted" and outcomes["signal"] != "accepted", outcomes
    assert slowest < 5, f"status took {slowest:.1f} s"
    assert status.state.value == "open" and acked.state.value == "acknowledged" and took < 5
    refusals = [
        r for r in caplog.records if r.getMessage().startswith("action.refused") and getattr(r, "ticket_id", None)
    ]
    assert [getattr(r, "ticket_id", None) for r in refusals] == [t.ticket_id]
