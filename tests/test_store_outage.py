"""The record store down for long: tickets go on (tested in test_store_devserver.py), and somebody
is told. The `store_events` activity's failures are benign to the SDK (no SDK failure metric, no
traceback), so the worker counts its tries itself, `escalations_store_writes_total{result}`, and the
`RecordStoreFailing` alert rule (deploy/monitoring) fires on the failures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from store.repository import Store
from tests.conftest import time_skipping_with_metrics
from tests.helpers import ticket
from tests.receiver import Receiver
from workers.connection import register_search_attributes


def store_writes(url: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for sample in family.samples:
            if sample.name == "escalations_store_writes_total":
                result = sample.labels["result"]
                found[result] = found.get(result, 0) + sample.value
    return found


async def poll(read: Callable[[], Any], done: Callable[[Any], bool], seconds: float = 30) -> Any:
    """The SDK hands metric updates to the exporter asynchronously: poll, gently."""
    value = read()
    for _ in range(int(seconds * 2)):
        if done(value):
            break
        await asyncio.sleep(0.5)
        value = read()
    return value


async def test_a_record_store_that_cannot_be_written_is_counted_and_the_ticket_catches_up(
    receiver: Receiver, make_harness: Any, tmp_path: Path
) -> None:
    env, metrics = await time_skipping_with_metrics()
    folder = tmp_path / "store"
    folder.write_text("")  # a file where the database's folder should be: nothing can be written (even as root)
    url = f"sqlite:///{folder / 'store.db'}"
    try:
        await register_search_attributes(env.client, "default")
        async with make_harness(env, receiver, store_url=url) as h:
            t = ticket()
            await h.tickets.open(t)
            await env.sleep(timedelta(minutes=2))  # its first batch goes after 10 s, and fails
            failing = await poll(lambda: store_writes(metrics), lambda v: v.get("failed", 0) >= 1)
            assert failing.get("failed", 0) >= 1 and not failing.get("written")
            folder.unlink()  # the database is back
            await env.sleep(timedelta(minutes=2))  # the next try (at most a minute later) writes
            written = await poll(lambda: store_writes(metrics), lambda v: v.get("written", 0) >= 1)
    finally:
        await env.shutdown()
    assert written.get("written", 0) >= 1
    store = Store(url)
    try:
        life = store.life(t.ticket_id)
        assert life is not None and [e.kind for e in life.events][:1] == ["ticket_opened"]
    finally:
        store.dispose()


async def test_a_signal_carrying_nan_does_not_wedge_the_record(
    dev_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any, store_url: str
) -> None:
    """Any Temporal client may signal a ticket with JSON that holds `NaN` or `Infinity` (Python's
    json writes them; the HTTP API refuses them). The ticket records every action as it arrived in
    the record store, and PostgreSQL's json type refuses those tokens: were they written, the batch
    would fail for ever, every later event would wait behind it and the resolved ticket would never
    complete. They reach the store as null (the activity's input is serialized by pydantic)."""
    from temporalio.api.common.v1 import Payload
    from temporalio.common import RawValue

    from tests.helpers import AGENT
    from tests.test_store_devserver import fast_policy

    async with make_harness(dev_env, receiver, fast_policy("PT1H"), store_url=store_url) as h:
        t = ticket()
        await h.tickets.open(t)
        raw = b'{"actor": {"id": "ann", "role": "agent"}, "note": NaN, "score": -Infinity}'
        handle = h.client.get_workflow_handle(f"ticket-{t.ticket_id}")
        await handle.signal("acknowledge", RawValue(Payload(metadata={"encoding": b"json/plain"}, data=raw)))
        await h.tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "done"})
        summary = await asyncio.wait_for(h.tickets.handle(t.ticket_id).result(), 90)
    assert summary["final_state"] == "resolved"
    store = Store(store_url)
    try:
        life = store.life(t.ticket_id)
        assert life is not None and life.ticket.closed_at is not None
        actions = store.events([life.ticket.life_id], streams=("action",))
        (signalled,) = [e for e in actions if e.kind == "action.acknowledge"]
        assert signalled.data["payload"]["note"] is None and signalled.data["payload"]["score"] is None
    finally:
        store.dispose()
