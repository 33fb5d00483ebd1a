"""Core promises on the real workflow (time-skipping server, one ticket per test).

Hostile input (wrong types, no argument, bytes, unknown names, oversized ids), Tier 0 leaving by
each route, idempotency (a ticket id opened twice, an action retried under one key), and outages
(a receiver down for hours, a worker stopped for an hour, a policy file broken while tickets run).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
import pytest
import yaml
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetStickyTaskQueueRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from api.client import ActionRefused, TicketClient
from config.policy import Role
from tests.conftest import policy_doc
from tests.helpers import AGENT, LEAD, ticket, until, until_async
from tests.receiver import Receiver
from workers.worker import build_worker
from workflows import search_attributes as sa
from workflows.models import Acknowledge, Actor, ChangePriority, Reassign, State, TimelineEvent

LONG = "x" * 3_000


async def _events(h: Any, ticket_id: str, kind: str) -> list[TimelineEvent]:
    return [e for e in (await h.tickets.timeline(ticket_id)).events if e.kind == kind]


async def _task_failures(handle: WorkflowHandle[Any, Any]) -> list[Any]:
    return [e async for e in handle.fetch_history_events() if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]


def _event_posts(receiver: Receiver, start: int = 0) -> list[Any]:
    with receiver.lock:
        return [r for r in receiver.requests[start:] if r.path == "/events"]


# ---------------------------------------------------------------------- 1. hostile input
async def test_wrong_typed_empty_bytes_and_unknown_actions_are_refused_not_fatal(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    wrong = {"actor": {"id": "lee", "role": "lead"}, "priority": 5, "reason": "x"}
    async with make_harness(ts_env, receiver) as h:
        t = ticket()
        await h.tickets.open(t)
        await h.tickets.status(t.ticket_id)
        handle = h.tickets.handle(t.ticket_id)

        # The same wrong type as a signal (recorded) and as an update (refused before history).
        await handle.signal("change_priority", wrong)
        with pytest.raises(WorkflowUpdateFailedError) as raw:
            await handle.execute_update("change_priority", wrong)
        cause = raw.value.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == "ActionRejected" and cause.non_retryable
        assert cause.details and cause.details[0]["field"] == "priority"
        # Through the ticket client too (a model built without validation gets past its own check).
        unchecked = ChangePriority.model_construct(
            actor=Actor(id="lee", role=Role.lead), priority=cast(Any, 5), reason="x"
        )
        with pytest.raises(ActionRefused) as refused:
            await h.tickets.act(t.ticket_id, "change_priority", unchecked)
        assert refused.value.field == "priority"

        await handle.signal("acknowledge")  # no argument at all
        await handle.signal("customer_replied", None)  # null: customer_replied needs no field
        await handle.signal("acknowledge", b"\x00\xff")  # binary/plain
        bad_json = RawValue(Payload(metadata={"encoding": b"json/plain"}, data=b"{not json"))
        await handle.signal("acknowledge", bad_json)
        await handle.signal("frobnicate", {"actor": AGENT})  # no such action
        await ts_env.sleep(timedelta(seconds=5))

        status = await h.tickets.status(t.ticket_id)
        rejected = await _events(h, t.ticket_id, "action_rejected")
        replied = await _events(h, t.ticket_id, "customer_replied")
        failures = await _task_failures(handle)
        accepted = await h.tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})

    fields = [(e.detail["action"], e.detail["field"], e.detail["via"]) for e in rejected]
    assert fields == [
        ("change_priority", "priority", "signal"),
        ("acknowledge", "actor", "signal"),
        ("acknowledge", "payload", "signal"),
        ("acknowledge", "payload", "signal"),
        ("frobnicate", "action", "signal"),
    ]
    assert "expected a JSON object, got bytes" in rejected[2].detail["reason"]
    assert "not decodable as JSON" in rejected[3].detail["reason"]
    assert "unknown action 'frobnicate'" in rejected[4].detail["reason"]
    assert len(replied) == 1
    assert status.internal_errors == 0 and status.state == State.open
    assert failures == []
    assert accepted.state == State.acknowledged and accepted.assignee == "ann"


# ---------------------------------------------------------------------- 2. oversized ids
async def test_oversized_ids_are_refused_naming_the_field_and_the_ticket_lives_on(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        t = ticket()
        await h.tickets.open(t)
        handle = h.tickets.handle(t.ticket_id)
        long_agent = Reassign.model_construct(actor=Actor(id="lee.lead", role=Role.lead), to_agent=LONG, reason="r")
        long_actor = Acknowledge.model_construct(actor=Actor.model_construct(id=LONG, role=Role.agent, tier=1))

        with pytest.raises(ActionRefused) as agent:
            await h.tickets.act(t.ticket_id, "reassign", long_agent)
        with pytest.raises(ActionRefused) as actor:
            await h.tickets.act(t.ticket_id, "acknowledge", long_actor)
        await handle.signal("reassign", long_agent)
        await handle.signal("acknowledge", long_actor)
        await ts_env.sleep(timedelta(seconds=5))

        described = await handle.describe()
        status = await h.tickets.status(t.ticket_id)
        rejected = await _events(h, t.ticket_id, "action_rejected")
        failures = await _task_failures(handle)

    assert agent.value.field == "to_agent" and "200 characters" in str(agent.value)
    assert actor.value.field == "actor.id" and "200 characters" in str(actor.value)
    assert [e.detail["field"] for e in rejected] == ["to_agent", "actor.id"]
    assert described.status == WorkflowExecutionStatus.RUNNING
    assert (status.state, status.assignee, status.internal_errors) == (State.open, None, 0)
    assert failures == []


# ---------------------------------------------------------------------- 3. leaving Tier 0
async def test_tier0_acknowledge_takes_it_to_the_routes_tier(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        t = ticket(category="how-to", channel="web")
        await h.tickets.open(t)
        first = await h.tickets.status(t.ticket_id)
        acked = await h.tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})
        offered = await until(lambda: receiver.events("ticket.self_service"))
    assert len(offered) == 1
    assert (first.state, first.tier, first.route) == (State.self_service, 0, "how-to")
    assert (acked.state, acked.tier, acked.department, acked.queue) == (State.acknowledged, 1, "support", "support-t1")
    assert acked.assignee == "ann"


async def test_tier0_reassign_to_another_queue_by_a_lead(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        t = ticket(category="how-to", channel="web")
        await h.tickets.open(t)
        assert (await h.tickets.status(t.ticket_id)).tier == 0
        moved = await h.tickets.act(
            t.ticket_id, "reassign", {"actor": LEAD, "to_queue": "billing-t1", "reason": "a billing question"}
        )
        moved_notice = await until(lambda: receiver.events("ticket.reassigned"))
        helpdesk = await until(lambda: [r for r in receiver.accepted if r.path.endswith("/assignment")])
        await until(lambda: receiver.events("ticket.self_service"))
    assert moved_notice[0]["data"]["to"] == {"agent": None, "queue": "billing-t1", "department": "billing"}
    assert len(helpdesk) == 1 and helpdesk[0].json()["queue"] == "billing-t1"
    assert (moved.state, moved.tier, moved.queue, moved.department) == (State.open, 1, "billing-t1", "billing")
    assert moved.clocks and all(c.state == "running" for c in moved.clocks)


async def test_tier0_functional_escalation_lands_at_tier1_of_the_department(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        t = ticket(category="how-to", channel="web")
        await h.tickets.open(t)
        assert (await h.tickets.status(t.ticket_id)).tier == 0
        moved = await h.tickets.act(
            t.ticket_id,
            "escalate",
            {"actor": AGENT, "kind": "functional", "department": "billing", "reason": "about an invoice"},
        )
        escalated = await until(lambda: receiver.events("ticket.escalated"))
        await until(lambda: receiver.events("ticket.self_service"))
    assert (moved.state, moved.tier, moved.department, moved.queue) == (State.open, 1, "billing", "billing-t1")
    assert moved.escalation_count == 1
    assert escalated[0]["data"]["to_department"] == "billing" and escalated[0]["tier"] == 1


# ---------------------------------------------------------------------- 4. one ticket id, two lives
async def test_a_ticket_id_opened_again_gets_new_webhook_ids_and_helpdesk_keys(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    t = ticket()
    runs = []
    async with make_harness(ts_env, receiver, policy_doc(reopen_window="PT1M")) as h:
        for life in (1, 2):
            opened = await h.tickets.open(t)
            assert opened.created
            runs.append(opened.run_id)
            await h.tickets.act(
                t.ticket_id, "reassign", {"actor": LEAD, "to_agent": f"bob{life}", "reason": f"life {life}"}
            )
            await h.tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": f"fixed {life}"})
            await until(lambda: receiver.events("ticket.resolved"), count=life)
            await ts_env.sleep(timedelta(minutes=2))
            summary = await h.tickets.handle(t.ticket_id).result()
            assert summary["final_state"] == "resolved"

    resolved = _event_posts(receiver)
    resolved = [r for r in resolved if r.json()["type"] == "ticket.resolved"]
    helpdesk = [r for r in receiver.requests if r.path == f"/tickets/{t.ticket_id}/assignment"]
    assert runs[0] != runs[1]
    assert len(resolved) == 2 and len({r.headers["webhook-id"] for r in resolved}) == 2
    assert [r.json()["reason"] for r in resolved] == ["fixed 1", "fixed 2"]
    for run_id, req in zip(runs, resolved, strict=True):
        assert req.headers["webhook-id"].startswith(f"msg_ticket-{t.ticket_id}_{(run_id or '').replace('-', '')}_")
    assert len(helpdesk) == 2 and len({r.headers["idempotency-key"] for r in helpdesk}) == 2


# ---------------------------------------------------------------------- 5. one key, applied once
async def test_an_action_retried_with_one_key_applies_once(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    up = {"actor": LEAD, "kind": "hierarchical", "reason": "needs a specialist"}
    async with make_harness(ts_env, receiver) as h:
        t = ticket()
        await h.tickets.open(t)
        first = await h.tickets.act(t.ticket_id, "escalate", up, key="k-1")
        again = await h.tickets.act(t.ticket_id, "escalate", up, key="k-1")
        await until(lambda: receiver.events("ticket.escalated"))
        await ts_env.sleep(timedelta(minutes=1))
        status = await h.tickets.status(t.ticket_id)
        escalated = await _events(h, t.ticket_id, "escalated")
        posts = [r for r in _event_posts(receiver) if r.json()["type"] == "ticket.escalated"]
        other = await h.tickets.act(t.ticket_id, "escalate", up, key="k-2")  # a new key is a new action
        await until(lambda: receiver.events("ticket.escalated"), count=2)
    assert (first.escalation_count, first.tier) == (1, 2)
    assert (again.escalation_count, again.tier) == (1, 2)
    assert (status.escalation_count, status.tier) == (1, 2)
    assert len(escalated) == 1 and len(posts) == 1
    assert (other.escalation_count, other.tier) == (2, 3)


# ---------------------------------------------------------------------- 6. receiver down for hours
async def test_a_receiver_down_two_hours_gets_every_notice_once_when_back(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    # One notice falls due at a time here (warning at 22.5 min, breach at 30 min). Two notices made
    # at the same instant (a reassignment's webhook and helpdesk call) retry milliseconds apart,
    # and the time-skipping test server then rejects a workflow task that cancels a timer which
    # fired meanwhile ("invalid history builder state for action"); the dev server does not.
    receiver.fail_next = 1_000_000  # the receiver answers 503 to everything
    async with make_harness(ts_env, receiver) as h:
        t = ticket(priority="urgent")
        await h.tickets.open(t)
        await ts_env.sleep(timedelta(minutes=25))
        for _ in range(7):  # to 2 h 10 min: the receiver has been down for two hours of ticket time
            await ts_env.sleep(timedelta(minutes=15))
            status = await h.tickets.status(t.ticket_id)
            assert status.undelivered_count > 0
            assert all(n.status == "undelivered" and n.attempts > 1 for n in status.undelivered)
            assert await _events(h, t.ticket_id, "notification_undelivered")
            shown = (await h.tickets.handle(t.ticket_id).describe()).typed_search_attributes
            assert shown.get(sa.UNDELIVERED_NOTICES) == status.undelivered_count
        waiting = {n.key for n in status.undelivered}
        with receiver.lock:
            back_at = len(receiver.requests)
            receiver.fail_next = 0
        await ts_env.sleep(timedelta(minutes=15))

        async def settled() -> list[int]:
            return [1] if (await h.tickets.status(t.ticket_id)).undelivered_count == 0 else []

        await until_async(settled)
        after = await h.tickets.status(t.ticket_id)
        timeline = (await h.tickets.timeline(t.ticket_id)).events
        shown = (await h.tickets.handle(t.ticket_id).describe()).typed_search_attributes

    undelivered = [e.detail["key"] for e in timeline if e.kind == "notification_undelivered"]
    delivered = Counter(e.detail["key"] for e in timeline if e.kind == "notification_delivered")
    posts = _event_posts(receiver, back_at)
    ids = [r.headers["webhook-id"] for r in posts]
    tried = [r for r in _event_posts(receiver) if r.headers["webhook-id"] in set(ids)]
    assert after.undelivered_count == 0 and after.undelivered == [] and shown.get(sa.UNDELIVERED_NOTICES) == 0
    assert waiting == set(undelivered) and len(undelivered) == len(set(undelivered)) == 2  # recorded once each
    assert set(delivered) == waiting and all(n == 1 for n in delivered.values())
    assert sorted(r.json()["type"] for r in posts) == ["sla.breached", "sla.warning"]
    assert len(ids) == len(set(ids)) == len(receiver.events())  # no webhook-id accepted twice
    assert len(tried) > 20  # each was tried again and again meanwhile, under the same webhook-id
    assert not [e for e in timeline if e.kind == "notification_failed"]


# ---------------------------------------------------------------------- 7. worker stopped for an hour
async def test_a_stopped_worker_sends_one_catch_up_reminder_for_the_missed_repeats(
    dev_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    """The shape of "a worker stopped for an hour with a reminder every 2 minutes", at 1/480 scale.

    On the dev server in real time, not the time-skipping server: there, a workflow task that no
    worker takes (a timer firing while the worker is away) locks the clock, so `env.sleep(1h)`
    without a worker never returns (the clock stops at the first missed reminder); and a workflow
    task left on the stopped worker's sticky queue is not handed to the new worker either. Here a
    reminder every 0.25 s and a worker away for 7.5 s: about 30 reminders fall due meanwhile.
    """
    interval = timedelta(seconds=0.25)
    doc = policy_doc()
    for route in doc["routes"]:
        route["tier"] = 4
        for key in ("self_service", "segments", "targets"):
            route.pop(key, None)
    doc["sla"][4]["normal"] = {"first_response": "PT1H", "resolution": "PT1S"}
    doc["ladders"] = {
        "first_response": [],
        "resolution": [
            {
                "id": "top-repeat",
                "after_breach": "PT0S",
                "tiers": [4],
                "repeat": {"interval": "PT0.25S"},
                "actions": [{"type": "notify", "roles": ["department_head"]}],
            }
        ],
    }
    t = ticket(priority="normal")
    async with make_harness(dev_env, receiver, doc) as h:
        await h.tickets.open(t)
        assert (await h.tickets.status(t.ticket_id)).tier == 4
        await until(lambda: receiver.events("sla.breached"), count=2)  # the repeating phase
        settings, task_queue = h.settings, h.task_queue
    # What the server does when a worker shuts down: its sticky queue's tasks go to the shared queue.
    await dev_env.client.workflow_service.reset_sticky_task_queue(
        ResetStickyTaskQueueRequest(
            namespace="default", execution=WorkflowExecution(workflow_id=f"ticket-{t.ticket_id}")
        )
    )
    before = receiver.events("sla.breached")
    await asyncio.sleep(7.5)  # no worker: about 30 reminders fall due
    assert len(receiver.events("sla.breached")) == len(before)

    async with (
        httpx.AsyncClient(timeout=5) as http,
        build_worker(dev_env.client, settings, http, task_queue=task_queue),
    ):
        first = (await until(lambda: receiver.events("sla.breached"), count=len(before) + 1))[len(before)]
        await asyncio.sleep(0.5)
        after = receiver.events("sla.breached")[len(before) :]
        status = await TicketClient(dev_env.client, task_queue).status(t.ticket_id)

    caught_up = [e for e in after if e["occurred_at"] == first["occurred_at"]]
    gap = datetime.fromisoformat(first["occurred_at"]) - datetime.fromisoformat(before[-1]["occurred_at"])
    missed = first["data"].get("missed", 0)
    assert len(caught_up) == 1, caught_up  # one notice for the missed reminders, not one each
    assert missed >= 28 and abs(missed - (gap / interval - 1)) <= 2, (missed, gap)
    assert f"{missed} earlier reminder(s) missed while the worker was away" in first["reason"]
    assert status.internal_errors == 0 and status.tier == 4


# ---------------------------------------------------------------------- 8. a broken policy file
@pytest.mark.parametrize(
    "broken",
    [
        pytest.param("routes: [unclosed\n  - {name: x", id="invalid-yaml"),
        pytest.param("country-XX", id="unknown-country-holidays"),
    ],
)
async def test_a_broken_policy_file_keeps_the_last_good_policy(
    ts_env: WorkflowEnvironment,
    receiver: Receiver,
    make_harness: Any,
    broken: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with make_harness(ts_env, receiver) as h:
        first = ticket(priority="urgent")  # first response 30 min
        await h.tickets.open(first)
        good = await h.tickets.status(first.ticket_id)
        if broken == "country-XX":
            doc = policy_doc(version="broken")
            doc["calendars"]["always"]["country_holidays"] = {"country": "XX"}
            text = yaml.safe_dump(doc)
        else:
            text = broken
        h.settings.policy_path.write_text(text)

        second = ticket()
        await h.tickets.open(second)
        opened = await h.tickets.status(second.ticket_id)
        await ts_env.sleep(timedelta(minutes=31))
        breached = await until(
            lambda: [e for e in receiver.events("sla.breached") if e["ticket_id"] == first.ticket_id]
        )
        walked = await h.tickets.status(first.ticket_id)
    logged = capsys.readouterr().out

    problem = "calendars.always.country_holidays: XX/- is not known" if broken == "country-XX" else "not valid YAML"
    assert "policy.invalid" in logged and problem in logged  # the worker says why it kept the old policy
    assert opened.policy_version == good.policy_version and good.policy_version.startswith("2026.11-default+")
    assert opened.clocks[0].target == timedelta(hours=8)  # the good policy's normal first-response target
    assert walked.sla_breached and len(breached) == 1
    assert breached[0]["rule"] == "ladders.first_response[1] (fr-breach)"
