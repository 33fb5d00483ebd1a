"""The spike check: a department's escalations far above its normal band send one signed
`review.spike` to its head, once per department and day, through the real watch workflow."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.review_activities import ReviewActivities, spike_event_id
from activities.webhooks import verify
from config.settings import Settings
from review.rows import EventRow, TicketFacts
from store.repository import Store
from tests.conftest import TEST_SECRET, policy_doc
from tests.receiver import Receiver
from tests.review_data import store_batch
from workflows.review_messages import SpikeWatchState
from workflows.review_spike import ReviewSpikeWatch


def escalated_ticket(ticket_id: str, dept: str, at: datetime) -> TicketFacts:
    opened = at - timedelta(minutes=30)
    rows = [
        EventRow(
            at=opened,
            kind="ticket_opened",
            actor="source:t",
            detail={"policy_version": "v", "opened_at": opened.isoformat()},
        ),
        EventRow(
            at=opened, kind="routed", detail={"tier": 1, "department": dept, "calendar": "always", "priority": "normal"}
        ),
        EventRow(at=opened, kind="tier_entered", detail={"tier": 1, "department": dept}),
        EventRow(
            at=at,
            kind="escalated",
            actor="agent:ann",
            detail={"kind": "functional", "from_department": dept, "to_department": "support", "reason": "wrong team"},
        ),
    ]
    return TicketFacts(ticket_id=ticket_id, channel="email", category="billing", events=rows)


async def test_spike_sends_one_review_spike_per_department_and_day(
    ts_env: WorkflowEnvironment, receiver: Receiver, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(store_url)
    store.migrate()
    now = await ts_env.get_current_time()
    n = 0
    for days_ago in range(1, 29):  # the normal band: one billing escalation a day
        at = (now - timedelta(days=days_ago)).replace(hour=12, minute=0)
        store.write(store_batch(escalated_ticket(f"B-{days_ago}", "billing", at), f"life-{n}"))
        n += 1
    for i in range(8):  # today: eight
        store.write(store_batch(escalated_ticket(f"S-{i}", "billing", now - timedelta(seconds=30 + i)), f"life-{n}"))
        n += 1
    for i in range(2):  # another department: two today, below the floor
        store.write(store_batch(escalated_ticket(f"T-{i}", "technical", now - timedelta(seconds=40 + i)), f"life-{n}"))
        n += 1
    store.dispose()
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(policy_doc()))
    settings = Settings(
        _env_file=None,
        policy_path=policy,
        store_url=store_url,
        webhook_url=f"{receiver.url}/events",
        webhook_secret=SecretStr(TEST_SECRET),
    )
    task_queue = f"spike-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient() as http:
        activities = ReviewActivities(settings, http)
        async with Worker(
            ts_env.client,
            task_queue=task_queue,
            workflows=[ReviewSpikeWatch],
            activities=activities.all(),  # type: ignore[arg-type]
        ):
            handle = await ts_env.client.start_workflow(
                ReviewSpikeWatch.run,
                SpikeWatchState(interval=timedelta(minutes=1)),
                id=f"review-spike-{uuid.uuid4().hex[:6]}",
                task_queue=task_queue,
            )
            await ts_env.sleep(timedelta(minutes=3, seconds=30))  # four checks
            await handle.terminate("test over")
    spikes = receiver.events("review.spike")
    deliveries = [r for r in receiver.requests if r.path == "/events"]
    assert len(deliveries) == 1, [r.json() for r in deliveries]  # one check found it; the next ones did not resend
    event: dict[str, Any] = spikes[0]
    day = now.date()
    assert event["department"] == "billing" and event["day"] == day.isoformat()
    assert event["id"] == spike_event_id("billing", day) == deliveries[0].headers["webhook-id"]
    assert [p["id"] for p in event["recipients"]] == ["bea.head"]
    assert event["data"]["spikes"][0]["measure"] == "escalations" and event["data"]["spikes"][0]["count"] == 8
    verify(TEST_SECRET, deliveries[0].body, deliveries[0].headers)


async def test_a_worker_started_with_another_interval_changes_the_running_watch(ts_env: WorkflowEnvironment) -> None:
    """`review_spike_interval_minutes` applies to a watch that already runs: each worker signals its
    interval with the start (signal-with-start), and the watch waits that long from its next check."""
    from review.watch import ensure_spike_watch
    from workflows.review_spike import WATCH_ID

    task_queue = f"spike-{uuid.uuid4().hex[:8]}"
    settings = Settings(_env_file=None, review_spike_interval_minutes=15)
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[ReviewSpikeWatch], activities=[]):
        assert await ensure_spike_watch(ts_env.client, settings, task_queue)
        handle = ts_env.client.get_workflow_handle(WATCH_ID)
        assert await handle.query("interval", result_type=timedelta) == timedelta(minutes=15)
        faster = settings.model_copy(update={"review_spike_interval_minutes": 2})
        assert await ensure_spike_watch(ts_env.client, faster, task_queue)
        assert await handle.query("interval", result_type=timedelta) == timedelta(minutes=2)
        await handle.signal("set_interval", "nonsense")  # refused quietly, the watch goes on
        assert await handle.query("interval", result_type=timedelta) == timedelta(minutes=2)
        await handle.terminate("test over")
