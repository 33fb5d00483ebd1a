"""Notifications over real HTTP to a receiver on 127.0.0.1: signed, retried on 5xx, final on 4xx."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from temporalio.testing import WorkflowEnvironment

from tests.conftest import TEST_SECRET
from tests.helpers import ticket, until, until_async
from tests.receiver import Receiver
from workflows.models import State


async def test_events_are_signed_per_standard_webhooks(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket(priority="urgent")
        await tickets.open(t)
        await ts_env.sleep(timedelta(minutes=31))  # warning at 22.5 min, breach at 30 min
        await until(lambda: [r for r in receiver.accepted if r.path == "/events"], count=3)

    posts = [r for r in receiver.accepted if r.path == "/events"]
    verifier = Webhook(TEST_SECRET)
    for req in posts:
        body = verifier.verify(req.body, req.headers)  # raises on a bad signature
        assert body["id"] == req.headers["webhook-id"]
        assert body["ticket_id"] == t.ticket_id and body["workflow_id"] == f"ticket-{t.ticket_id}"
        assert {"tier", "department", "priority", "recipients", "cc", "rule", "reason"} <= body.keys()
    warning = next(r.json() for r in posts if r.json()["type"] == "sla.warning")
    assert warning["rule"] == "ladders.first_response[0] (fr-warning)"
    assert warning["reason"] == "first_response SLA at 75% of target"
    assert (warning["tier"], warning["department"], warning["priority"]) == (1, "support", "urgent")
    forged = posts[0].headers | {"webhook-signature": "v1,AAAA"}
    with pytest.raises(WebhookVerificationError):
        verifier.verify(posts[0].body, forged)


async def test_a_5xx_is_retried_and_reaches_an_idempotent_receiver_once(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    receiver.fail_next = 2  # the first two attempts get 503
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket()
        await tickets.open(t)
        await tickets.act(t.ticket_id, "resolve", {"actor": {"id": "ann", "role": "agent"}, "resolution": "done"})
        await ts_env.sleep(timedelta(minutes=1))  # the workflow's own retries: 10 s, then 20 s later
        await until(lambda: receiver.events("ticket.resolved"))

        async def delivered() -> list[Any]:
            events = (await tickets.timeline(t.ticket_id)).events
            return [e for e in events if e.kind == "notification_delivered"]

        ok = await until_async(delivered)

    attempts = [r for r in receiver.requests if r.path == "/events"]
    assert len(attempts) == 3 and len({r.headers["webhook-id"] for r in attempts}) == 1
    assert len(receiver.events("ticket.resolved")) == 1
    assert len(ok) == 1 and ok[0].detail["type"] == "ticket.resolved" and ok[0].detail["attempts"] == 3


async def test_a_4xx_is_not_retried_recorded_and_the_ticket_runs_on(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    receiver.status_for_type["sla.warning"] = 410
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket(priority="urgent")
        await tickets.open(t)
        await ts_env.sleep(timedelta(minutes=31))
        await until(lambda: receiver.events("sla.breached"))

        async def failures() -> list[Any]:
            events = (await tickets.timeline(t.ticket_id)).events
            return [e for e in events if e.kind == "notification_failed"]

        failed = await until_async(failures)
        status = await tickets.status(t.ticket_id)

    warnings = [r for r in receiver.requests if r.path == "/events" and r.json()["type"] == "sla.warning"]
    assert len(warnings) == 1  # one attempt, no retry
    assert len(failed) == 1 and failed[0].detail["type"] == "sla.warning"
    assert "answered HTTP 410" in failed[0].detail["error"]
    assert status.state == State.open and status.sla_breached  # it carried on to the breach
