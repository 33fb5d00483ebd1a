"""Scale-out under failure (marker `scale_out`, about a minute): the long test of the suite, on purpose.

Three `escalations worker` processes share one task queue on one dev server. 200 tickets are opened with
one `opened_at`, so their resolution deadlines fall at one instant. While that burst is being worked, one
worker is SIGKILLed and another gets SIGTERM. Every notice must arrive, once, at an idempotent receiver
(it applies a `webhook-id` once and acknowledges repeats): per ticket exactly the notices of its breach,
and no ticket without them. Redeliveries (the same `webhook-id` sent again after a worker died mid-send)
are allowed and counted; the figures are printed (`pytest -s`) and kept in the test's log folder.

Run it alone: `.venv/bin/python -m pytest -m scale_out -s -n 0`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client

from api.client import TicketClient
from tests.conftest import TEST_CODEC_KEYS, TEST_CONVERTER, TEST_SECRET, policy_doc
from tests.helpers import ticket
from tests.processes import clean_env, free_port, spawn, start_dev_server_process, wait_status
from tests.receiver import start_receiver

# This test loads both cores and asserts on timing: it runs on the one xdist worker that runs the group
# "load" (`--dist loadgroup`, pyproject.toml), never at the same time as another test of that group.
pytestmark = [pytest.mark.scale_out, pytest.mark.xdist_group("load")]

# Enough tickets that the burst is still being worked when one worker is killed and another stopped (the
# three share it; each holds tickets of it in its cache; asserted below), few enough for about a minute.
TICKETS = 200
BREACH_AFTER = timedelta(seconds=30)  # time to open 200 tickets (about 1 s) and start 3 workers on 2 shared cores
EXPECTED_TYPES = {"sla.breached"}  # the one notice of the resolution breach (the policy below)


def burst_policy() -> dict[str, object]:
    doc = policy_doc()
    for level, tier in doc["sla"].items():
        for targets in tier.values():
            targets.update(first_response="PT10H", resolution=f"PT{int(BREACH_AFTER.total_seconds())}S")
            if int(level) > 1:
                targets.update(resolution="PT10H")  # the escalated tier holds the ticket afterwards
    breach = {"id": "res-breach", "after_breach": "PT0S", "actions": [{"type": "notify", "roles": ["team_lead"]}]}
    doc["ladders"] = {"first_response": [], "resolution": [breach]}
    return doc


async def test_three_workers_200_tickets_breaching_together_one_killed_one_terminated(tmp_path: Path) -> None:
    dev = start_dev_server_process(tmp_path)
    receiver = start_receiver()
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(burst_policy()))
    task_queue = f"burst-{uuid.uuid4().hex[:8]}"
    health = [free_port() for _ in range(3)]
    workers = []
    try:
        client = await Client.connect(dev.address, data_converter=TEST_CONVERTER)
        tickets = TicketClient(client, task_queue)
        opened_at = datetime.now(UTC)
        deadline = opened_at + BREACH_AFTER
        ids = [f"B-{n:03d}-{uuid.uuid4().hex[:4]}" for n in range(TICKETS)]
        gate = asyncio.Semaphore(40)

        async def open_one(ticket_id: str) -> None:
            async with gate:
                await tickets.open(ticket(ticket_id=ticket_id, opened_at=opened_at.isoformat()))

        started = time.monotonic()
        await asyncio.gather(*(open_one(t) for t in ids))
        open_seconds = time.monotonic() - started
        assert datetime.now(UTC) < deadline - timedelta(seconds=20), f"opening took {open_seconds:.0f} s"

        # Then the workers (the tickets wait for them in the task queue; their deadlines are fixed already).
        for n, port in enumerate(health):
            env = clean_env(
                temporal_address=dev.address,
                task_queue=task_queue,
                policy_path=policy,
                webhook_url=f"{receiver.url}/events",
                webhook_secret=TEST_SECRET,
                codec_keys=TEST_CODEC_KEYS,
                worker_health_port=port,
                graceful_shutdown_seconds=30,
                # Without the sandbox: more tickets per second (docs/benchmarks.md); this test is about
                # delivery under failure, not about the sandbox.
                workflow_sandbox="false",
                data_dir=tmp_path / f"data-{n}",
            )
            workers.append(spawn("worker", env, tmp_path, name=f"worker-{n}"))
        for worker, port in zip(workers, health, strict=True):
            await asyncio.to_thread(wait_status, f"http://127.0.0.1:{port}/readyz", 200, 120, worker)

        ready_before_deadline = (deadline - datetime.now(UTC)).total_seconds()
        assert ready_before_deadline > 0, "the workers took too long to start: the burst was not awaited"
        # The burst: all the deadlines at one instant. Kill one worker in the middle of it (as soon as the
        # first notices are applied), stop another half a second later.
        await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()))
        expected = TICKETS * len(EXPECTED_TYPES)
        burst_until = time.monotonic() + 60
        while not receiver.seen_ids and time.monotonic() < burst_until:  # noqa: ASYNC110 - another thread fills it
            await asyncio.sleep(0.05)
        killed, terminated, survivor = workers
        killed.popen.send_signal(signal.SIGKILL)
        await asyncio.sleep(0.5)
        terminated.popen.send_signal(signal.SIGTERM)
        received_at_signals = len(receiver.seen_ids)
        assert received_at_signals < expected, "the burst was over before the signals: nothing was killed mid-burst"

        wait_until = time.monotonic() + 170
        while len(receiver.seen_ids) < expected and time.monotonic() < wait_until:  # noqa: ASYNC110 - another thread fills it
            await asyncio.sleep(1)
        finished_after = (datetime.now(UTC) - deadline).total_seconds()
        terminated_code = await asyncio.to_thread(terminated.popen.wait, 60)
        await asyncio.sleep(5)  # late repeats of a notice, if any, would show now

        with receiver.lock:
            events = [r.json() for r in receiver.accepted if r.path == "/events"]
            deliveries = Counter(r.headers.get("webhook-id", "") for r in receiver.requests if r.path == "/events")
        per_ticket: dict[str, Counter[str]] = {t: Counter() for t in ids}
        for event in events:
            ticket_id = str(event.get("data", {}).get("ticket_id") or event.get("ticket_id") or "")
            per_ticket.setdefault(ticket_id, Counter())[event["type"]] += 1
        figures = {
            "tickets": TICKETS,
            "workers": 3,
            "opened_in_seconds": round(open_seconds, 1),
            "workers_ready_seconds_before_deadline": round(ready_before_deadline, 1),
            "notices_expected": expected,
            "notices_applied_once": len(receiver.seen_ids),
            "deliveries_total": sum(deliveries.values()),
            "redelivered_ids": sum(1 for n in deliveries.values() if n > 1),
            "applied_before_the_signals": received_at_signals,
            "all_applied_seconds_after_deadline": round(finished_after, 1),
            "sigkilled_exit": killed.popen.poll(),
            "sigtermed_exit": terminated_code,
        }
        print("scale-out kill test:", json.dumps(figures))
        (tmp_path / "figures.json").write_text(json.dumps(figures, indent=2))

        wrong = {
            t: dict(c) for t, c in per_ticket.items() if set(c) != EXPECTED_TYPES or any(n != 1 for n in c.values())
        }
        assert not wrong, f"{len(wrong)} tickets without exactly one of each notice, e.g. {list(wrong.items())[:3]}"
        assert len(receiver.seen_ids) == expected == len(events)
        assert killed.popen.poll() == -signal.SIGKILL
        assert terminated_code == 0, terminated.output()[-2000:]
        assert '"event": "worker.stopped"' in terminated.output()
        assert survivor.popen.poll() is None, survivor.output()[-2000:]
        for worker in workers:
            assert "workflow_task.failed" not in worker.output(), worker.output()[-3000:]
    finally:
        for worker in workers:
            worker.kill()
        receiver.server.shutdown()
        dev.stop()
