"""Zendesk down for an hour of ticket time (time-skipping server): the ticket escalates meanwhile, its
calls there wait as undelivered notices, and once Zendesk answers again each call is made once.

Only `ticket.escalated` goes to Zendesk here, so one notice to it falls due at a time (see the note
in test_core_timeskipping about two notices retrying at the same instant on this test server)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from temporalio.testing import WorkflowEnvironment

from config.settings import EndpointSettings
from tests.fakes.policies import connected_policy
from tests.fakes.zendesk import FakeZendesk
from tests.helpers import ticket, until_async
from tests.receiver import Receiver
from tests.test_connector_zendesk import API_USER, SECRET

GROUPS = {"billing-t1": 101, "billing-t2": 102, "billing-t3": 103, "billing-managers": 104}


def outage_policy() -> dict[str, Any]:
    mapping = {"kind": "zendesk", "queues": {q: str(g) for q, g in GROUPS.items()}, "own_user": str(API_USER)}
    return connected_policy(
        "zendesk", mapping, first_response="PT8M", resolution="PT10M", event_types=["ticket.escalated"]
    )


async def test_zendesk_down_an_hour_gets_each_call_once_when_back(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    with FakeZendesk() as zendesk:
        for queue, group in GROUPS.items():
            zendesk.add_group(group, queue)
        zendesk.add_ticket(5158, group_id=GROUPS["billing-t1"])
        zendesk.down = True
        credentials = EndpointSettings.model_validate(
            {"url": zendesk.url, "username": zendesk.email, "token": zendesk.token, "secret": SECRET}
        )
        async with make_harness(ts_env, receiver, outage_policy(), endpoints={"zendesk": credentials}) as h:
            t = ticket(ticket_id="ZD-5158", category="billing", priority="high")
            await h.tickets.open(t)
            for _ in range(4):  # an hour of ticket time with Zendesk answering 503
                await ts_env.sleep(timedelta(minutes=15))
            status = await h.tickets.status(t.ticket_id)
            assert status.tier == 4 and status.escalation_count == 3
            waiting = {n.key for n in status.undelivered}
            assert len(waiting) == 3 and all(n.attempts > 1 for n in status.undelivered)
            tried = len([r for r in zendesk.requests if r.method == "PUT"])
            assert tried > 10  # tried again and again meanwhile
            zendesk.down = False
            await ts_env.sleep(timedelta(minutes=15))

            async def settled() -> list[int]:
                return [1] if (await h.tickets.status(t.ticket_id)).undelivered_count == 0 else []

            assert await until_async(settled, seconds=30)
            timeline = (await h.tickets.timeline(t.ticket_id)).events
        delivered = Counter(
            e.detail["key"]
            for e in timeline
            if e.kind == "notification_delivered" and e.detail["key"].endswith("@zendesk")
        )
        assert set(delivered) == waiting and all(n == 1 for n in delivered.values())
        notes = [c["body"] for c in zendesk.tickets[5158]["comments"] if c["public"] is False]
        assert len(notes) == 3 and len({n.rsplit("[escalations:", 1)[1] for n in notes}) == 3  # each call once
        assert zendesk.tickets[5158]["group_id"] == GROUPS["billing-managers"]
        assert not [e for e in timeline if e.kind == "notification_failed"]
