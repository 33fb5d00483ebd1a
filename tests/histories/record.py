"""Record the histories that CI replays: `python -m tests.histories.record`.

Each scenario runs the real workflow on the time-skipping server and saves its event history.
Never re-record a committed history: a history recorded by yesterday's code and replayed by today's
is what catches a change that would break tickets already running. Add a scenario and record only
it (`python -m tests.histories.record NAME`). Every state and path of the ticket is covered:
Tier 0 (escalated, taken on, solved and reopened), approvals (granted, timed out, rejected),
pending customer, reopen, refusals and undecodable signals, idempotent retries, undelivered and
redelivered notices, a helpdesk connector's notices (one rate-limited), a ticket opened late or
acted on as it opens, a policy broken when a ticket arrives, and continue-as-new (each run in its
own file, `__runN`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.client import ActionRefused, TicketClient
from config.settings import EndpointSettings, Settings
from tests.conftest import make_settings, policy_doc, start_dev_server
from tests.fakes.zendesk import FakeZendesk
from tests.helpers import AGENT, LEAD, MANAGER, ticket
from tests.receiver import Receiver, start_receiver
from tests.smtp import SmtpServer
from workers.connection import binary, register_search_attributes
from workers.worker import build_worker

HERE = Path(__file__).parent
Scenario = Callable[[WorkflowEnvironment, TicketClient, str, Receiver], Awaitable[None]]


async def untouched_ladder(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    await tickets.open(ticket(ticket_id=tid, priority="high"))
    await env.sleep(timedelta(hours=48))


async def acknowledged_paused_resolved(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    await tickets.open(ticket(ticket_id=tid, category="billing", customer={"id": "c", "segment": "vip"}))
    await env.sleep(timedelta(minutes=20))
    await tickets.act(tid, "acknowledge", {"actor": AGENT})
    await tickets.act(tid, "pending_customer", {"actor": AGENT, "note": "need invoice number"})
    await env.sleep(timedelta(hours=3))
    await tickets.act(tid, "customer_replied", {"note": "INV-1"})
    await tickets.signal(tid, "escalate", {"actor": AGENT, "kind": "functional", "department": "x", "reason": "y"})
    await tickets.act(tid, "change_priority", {"actor": LEAD, "priority": "urgent", "reason": "vip angry"})
    await tickets.act(tid, "request_approval", {"actor": AGENT, "kind": "refund", "amount": 900, "reason": "double"})
    await tickets.act(tid, "decide_approval", {"actor": MANAGER, "approval_id": "apr-1", "approved": True})
    await tickets.act(
        tid,
        "escalate",
        {"actor": LEAD, "kind": "functional", "department": "technical", "reason": "a bug in invoicing"},
    )
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "refunded and fixed"})
    await env.sleep(timedelta(days=1))
    await tickets.act(tid, "reopen", {"actor": AGENT, "reason": "charged again"})
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "refunded the second charge"})
    await env.sleep(timedelta(days=8))


async def self_service(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """Tier 0: escalated by a lead, then the wait of a second ticket expires (in the same history)."""
    await tickets.open(ticket(ticket_id=tid, category="how-to", channel="web"))
    await env.sleep(timedelta(days=1, hours=1))
    await tickets.act(tid, "escalate", {"actor": LEAD, "kind": "hierarchical", "reason": "needs a specialist"})


async def self_service_solved_reopened(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    await tickets.open(ticket(ticket_id=tid, category="how-to", channel="email"))
    await env.sleep(timedelta(hours=2))
    await tickets.act(tid, "confirm_solved", {"note": "the article helped"})
    await env.sleep(timedelta(hours=5))
    await tickets.act(tid, "reopen", {"actor": AGENT, "reason": "it came back"})
    await tickets.act(tid, "acknowledge", {"actor": AGENT})
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "reset the cache"})
    await env.sleep(timedelta(days=8))


async def self_service_taken_on(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """Tier 0 actions that leave self-service: acknowledge, then a functional escalation; expiry elsewhere."""
    await tickets.open(ticket(ticket_id=tid, category="how-to", channel="web"))
    await env.sleep(timedelta(minutes=5))
    await tickets.act(tid, "change_priority", {"actor": LEAD, "priority": "high", "reason": "vip after all"})
    await tickets.act(tid, "acknowledge", {"actor": AGENT})
    await tickets.act(
        tid, "escalate", {"actor": LEAD, "kind": "functional", "department": "billing", "reason": "a refund"}
    )
    await env.sleep(timedelta(days=2))


async def approvals(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    await tickets.open(ticket(ticket_id=tid, category="billing", priority="urgent"))
    await tickets.act(tid, "acknowledge", {"actor": AGENT})
    await tickets.act(tid, "request_approval", {"actor": AGENT, "kind": "refund", "amount": 20, "reason": "small"})
    await tickets.act(tid, "request_approval", {"actor": AGENT, "kind": "refund", "amount": 900, "reason": "big"})
    await env.sleep(timedelta(hours=5))  # nobody decides: escalates one tier and CCs the head
    await tickets.act(tid, "request_approval", {"actor": LEAD, "kind": "discount", "amount": 800, "reason": "loyal"})
    await tickets.act(tid, "decide_approval", {"actor": MANAGER, "approval_id": "apr-3", "approved": False})
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "refunded 20"})
    await env.sleep(timedelta(days=8))


async def refusals_and_garbage(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """Every kind of refusal: by payload, by state, by policy; signals without or with broken arguments."""
    await tickets.open(ticket(ticket_id=tid, category="technical"))
    handle = tickets.handle(tid)
    await handle.signal("acknowledge")
    await handle.signal("customer_replied", None)
    await handle.signal("change_priority", {"actor": LEAD, "priority": 5, "reason": "x"})
    await handle.signal("acknowledge", b"\x00\xff")
    await handle.signal("no_such_action", {"x": 1})
    await handle.signal("reassign", {"actor": AGENT, "to_agent": "x" * 3000})
    await tickets.signal(tid, "reopen", {"actor": AGENT, "reason": "not resolved yet"})
    for payload in ({"actor": LEAD, "kind": "hierarchical", "reason": ""}, {"actor": AGENT, "kind": "functional"}):
        with contextlib.suppress(ActionRefused):
            await tickets.act(tid, "escalate", payload)
    await tickets.act(tid, "escalate", {"actor": LEAD, "kind": "hierarchical", "reason": "hard"}, key="retry-1")
    await tickets.act(tid, "escalate", {"actor": LEAD, "kind": "hierarchical", "reason": "hard"}, key="retry-1")
    await env.sleep(timedelta(hours=2))


async def undelivered_then_redelivered(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """A receiver down for a while (retries, then delivered) and a 4xx (failed, then redelivered)."""
    rx.fail_next = 4
    rx.status_for_type["sla.warning"] = 410
    await tickets.open(ticket(ticket_id=tid, priority="urgent", category="technical"))
    await env.sleep(timedelta(minutes=40))
    rx.status_for_type.clear()
    await tickets.act(tid, "redeliver", {"actor": LEAD, "reason": "receiver fixed"})
    await env.sleep(timedelta(minutes=5))
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "done"})
    await env.sleep(timedelta(days=8))


async def channels(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """Notices by endpoint name, email/Slack/Teams to people, one left out."""
    await tickets.open(ticket(ticket_id=tid, priority="urgent"))
    await env.sleep(timedelta(minutes=40))
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "done"})
    await env.sleep(timedelta(days=8))


def channels_policy() -> dict[str, Any]:
    doc = policy_doc()
    doc["notifications"] = {
        "endpoints": [
            {"name": "local-receiver", "url": "http://127.0.0.1:8099/events"},
            {"name": "mail", "channel": "email"},
            {"name": "ops-slack", "channel": "slack"},
            {"name": "ops-teams", "channel": "teams"},
        ],
        "roles": {"team_lead": {"endpoints": ["mail", "ops-slack", "ops-teams"]}},
        "people": {"support-t1": {"email": "t1@example.com", "endpoints": ["mail"]}},
    }
    return doc


def channels_settings(settings: Settings, rx: Receiver, smtp_port: int) -> Settings:
    endpoints = {
        "mail": EndpointSettings(host="127.0.0.1", port=smtp_port, security="none", sender="esc@example.com"),
        "ops-slack": EndpointSettings.model_validate({"url": f"{rx.url}/slack"}),
        "ops-teams": EndpointSettings.model_validate({"url": f"{rx.url}/teams"}),
    }
    return settings.model_copy(update={"endpoints": endpoints})


async def timeline_refusals(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """Refusals reported by clients (`record_refusal`), one garbage report."""
    await tickets.open(ticket(ticket_id=tid))
    await tickets.report_refusal(tid, "acknowledge", "mood", "Extra inputs are not permitted", via="update")
    await tickets.handle(tid).signal("record_refusal", {"action": "", "junk": True})
    with contextlib.suppress(Exception):
        await tickets.act(tid, "escalate", {"actor": AGENT, "kind": "sideways", "reason": "x"})
    await tickets.act(tid, "acknowledge", {"actor": AGENT})
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "done"})
    await env.sleep(timedelta(days=8))


async def carried_from_outside(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """Patch api-carried-v1: a raw start with a second argument (a forged carried state) is ignored."""
    forged = {
        "policy": {"version": "forged", "fingerprint": "x", "document": {}},
        "state": {"tier": 4},
        "runs": 9,
    }
    await env.client.start_workflow(
        "TicketEscalation",
        args=[ticket(ticket_id=tid).model_dump(mode="json"), forged],
        id=f"ticket-{tid}",
        task_queue="record",
    )
    await tickets.act(tid, "acknowledge", {"actor": AGENT})
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "done"})
    await env.sleep(timedelta(days=8))


async def next_deadline_after_breach(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """Patch next-deadline-pending-v1: first response breached while resolution runs on, then
    acknowledged and resolved."""
    await tickets.open(ticket(ticket_id=tid, priority="urgent"))
    await env.sleep(timedelta(minutes=40))
    await tickets.act(tid, "acknowledge", {"actor": AGENT})
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "done"})
    await env.sleep(timedelta(days=8))


async def own_rows_stored(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """Patch store-own-rows-v1: refusals reported by clients written to the record store too."""
    await tickets.open(ticket(ticket_id=tid))
    await tickets.report_refusal(tid, "acknowledge", "mood", "Extra inputs are not permitted", via="update")
    with contextlib.suppress(Exception):
        await tickets.act(tid, "escalate", {"actor": AGENT, "kind": "sideways", "reason": "x"})
    await env.sleep(timedelta(minutes=5))
    await tickets.act(tid, "acknowledge", {"actor": AGENT})
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "done"})
    await env.sleep(timedelta(days=8))


async def opened_late(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """The policy's result holds the first task's time: a ticket opened two hours before it reached
    the service (its first response breached at the opening), an action, then its ladder."""
    opened = datetime.now(UTC) - timedelta(hours=2)
    await tickets.open(ticket(ticket_id=tid, priority="high", opened_at=opened))
    await tickets.act(tid, "acknowledge", {"actor": AGENT})
    await env.sleep(timedelta(hours=6))
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "done"})
    await env.sleep(timedelta(days=8))


async def acted_on_at_opening(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """Actions in the task that opens the ticket (signal-with-start, then a signal before its first
    task): decided at the first task's time, like the opening's passes."""
    opened = datetime.now(UTC) - timedelta(hours=2)
    await env.client.start_workflow(
        "TicketEscalation",
        args=[ticket(ticket_id=tid, priority="urgent", opened_at=opened).model_dump(mode="json")],
        id=f"ticket-{tid}",
        task_queue="record",
        start_signal="reassign",
        start_signal_args=[{"actor": LEAD, "to_agent": "dana", "reason": "knows the account"}],
    )
    await tickets.signal(tid, "acknowledge", {"actor": AGENT})
    await env.sleep(timedelta(hours=3))
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "done"})
    await env.sleep(timedelta(days=8))


async def policy_broken_at_opening(env: WorkflowEnvironment, tid: str, rx: Receiver) -> None:
    """On the dev server (a local activity's retries run in real time): the policy file is broken
    when the ticket arrives, so its load retries while its 8 s first response passes and an
    acknowledgement waits for it; then the file is fixed. A worker of its own, started broken."""
    path = Path(tempfile.mkdtemp()) / "policy.yaml"
    path.write_text("sla: [not a policy\n")
    doc = policy_doc()
    for tier in doc["sla"].values():
        for targets in tier.values():
            targets.update(first_response="PT8S", resolution="PT1H")
    async with (
        httpx.AsyncClient() as http,
        build_worker(env.client, make_settings(path, rx), http, task_queue="record-broken"),
    ):
        tickets = TicketClient(env.client, "record-broken")
        await tickets.open(ticket(ticket_id=tid, priority="urgent"))
        await asyncio.sleep(10)
        await tickets.signal(tid, "acknowledge", {"actor": AGENT})
        path.write_text(yaml.safe_dump(doc))
        await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "done"})  # waits for the load
        await asyncio.sleep(3)
        await save_all_runs(tickets, tid)


def flood_policy() -> dict[str, Any]:
    """The channels policy, with the team leads' notices under flood control (1 per 15 minutes)."""
    doc = channels_policy()
    doc["notifications"]["roles"]["team_lead"]["flood"] = {"limit": 1, "window": "PT15M"}
    return doc


async def flood_handed_over(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """Patch flood-handed-over-v1: breach notices to the team lead handed to flood control."""
    await tickets.open(ticket(ticket_id=tid, priority="urgent"))
    await env.sleep(timedelta(minutes=40))
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "done"})
    await env.sleep(timedelta(days=8))


# Scenarios that run under their own policy (and settings) instead of the default one.
async def helpdesk_5158(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """A ticket of a Zendesk connector (its prefix): breached and escalated there, a 429 first, resolved."""
    await tickets.open(ticket(ticket_id=tid, priority="high", category="billing"))
    await env.sleep(timedelta(hours=9))
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "done"})
    await env.sleep(timedelta(days=8))


def helpdesk_policy() -> dict[str, Any]:
    doc = policy_doc()
    kinds = ["ticket.escalated", "ticket.cc", "sla.breached", "ticket.resolved"]
    doc["notifications"]["endpoints"].append({"name": "zendesk", "event_types": kinds})
    queues = {"billing-t1": "101", "billing-t2": "102", "billing-t3": "103", "billing-managers": "104"}
    doc["helpdesks"] = {
        "zendesk": {"kind": "zendesk", "ticket_prefix": "REC-helpdesk_", "queues": queues, "own_user": "900001"}
    }
    return doc


OWN_POLICY: dict[str, Callable[[], dict[str, Any]]] = {
    "channels": channels_policy,
    "flood_handed_over": flood_policy,
    "helpdesk_5158": helpdesk_policy,
}


async def stored_life(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """Patch store-events-v1: a whole life written to the record store in batches, the last batch
    and the summary stored before the ticket completes (breach, escalation, resolve, reopen window)."""
    await tickets.open(ticket(ticket_id=tid, priority="high", category="billing"))
    await env.sleep(timedelta(hours=3))
    await tickets.act(tid, "acknowledge", {"actor": AGENT})
    await tickets.act(tid, "escalate", {"actor": AGENT, "kind": "hierarchical", "reason": "angry customer"})
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "refunded"})
    await env.sleep(timedelta(days=10))


async def idempotency_bodies(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """Patch api-idem-body-v1: an action under a key (update id `<action>:<key>#sha256:<16 hex>`),
    the same request again (a duplicate), the key with another body (refused), a bare key (another
    SDK), then resolved."""
    await tickets.open(ticket(ticket_id=tid))
    up = {"actor": LEAD, "priority": "urgent", "reason": "vip"}
    await tickets.act(tid, "change_priority", up, key="k-1")
    await tickets.act(tid, "change_priority", up, key="k-1")
    with contextlib.suppress(ActionRefused):
        await tickets.act(tid, "change_priority", up | {"priority": "low"}, key="k-1")
    await tickets.act(tid, "acknowledge", {"actor": AGENT}, update_id="bare-key")
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "done"}, key="k-2")
    await env.sleep(timedelta(days=10))


async def refused_keys(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """Patch api-refused-keys-v1: an update refused under a key, the same request again (answered
    with the same refusal, recorded once), later a new key that is applied, then resolved."""
    await tickets.open(ticket(ticket_id=tid))
    too_soon = {"actor": AGENT, "kind": "hierarchical", "reason": "impatient"}
    for _ in range(2):
        with contextlib.suppress(ActionRefused):
            await tickets.act(tid, "escalate", too_soon, key="k-soon")
    await env.sleep(timedelta(hours=1))
    with contextlib.suppress(ActionRefused):
        await tickets.act(tid, "escalate", too_soon, key="k-soon")
    await tickets.act(tid, "escalate", too_soon, key="k-later")
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "done"})
    await env.sleep(timedelta(days=10))


SCENARIOS: dict[str, Scenario] = {
    "untouched_ladder": untouched_ladder,
    "acknowledged_paused_resolved": acknowledged_paused_resolved,
    "self_service": self_service,
    "self_service_solved_reopened": self_service_solved_reopened,
    "self_service_taken_on": self_service_taken_on,
    "approvals": approvals,
    "refusals_and_garbage": refusals_and_garbage,
    "undelivered_then_redelivered": undelivered_then_redelivered,
    "channels": channels,
    "timeline_refusals": timeline_refusals,
    "carried_from_outside": carried_from_outside,
    "stored_life": stored_life,
    "idempotency_bodies": idempotency_bodies,
    "refused_keys": refused_keys,
    "next_deadline_after_breach": next_deadline_after_breach,
    "own_rows_stored": own_rows_stored,
    "flood_handed_over": flood_handed_over,
    "helpdesk_5158": helpdesk_5158,
    "opened_late": opened_late,
    "acted_on_at_opening": acted_on_at_opening,
}


def scrubbed(history_json: str) -> str:
    """The history without stack traces: they name the recording machine's paths, and replay
    does not read them."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: "" if k == "stackTrace" else walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return json.dumps(walk(json.loads(history_json)), indent=2)


async def save_all_runs(tickets: TicketClient, tid: str) -> None:
    """Each run of the ticket's life in its own file: `<workflow id>.json`, then `__run2`, ... ."""
    runs = [*await tickets.earlier_runs(tid), None]
    for index, run_id in enumerate(runs, start=1):
        handle = tickets.client.get_workflow_handle(f"ticket-{tid}", run_id=run_id)
        history = await handle.fetch_history()
        suffix = "" if index == 1 else f"__run{index}"
        # The file is named by the workflow id, which replay needs and the JSON does not carry.
        (HERE / f"{history.workflow_id}{suffix}.json").write_text(scrubbed(history.to_json()))
        print(f"{tid}{suffix}: {len(history.events)} events")


async def continued_as_new(env: WorkflowEnvironment, tickets: TicketClient, tid: str, rx: Receiver) -> None:
    """On a dev server that suggests continue-as-new after 20 events: the carried state and outbox."""
    await tickets.open(ticket(ticket_id=tid))
    await tickets.act(tid, "acknowledge", {"actor": AGENT})
    for i in range(6):
        await tickets.act(tid, "pending_customer", {"actor": AGENT, "note": f"ask {i}"})
        await tickets.act(tid, "customer_replied", {"note": f"reply {i}"})
    await tickets.act(tid, "escalate", {"actor": LEAD, "kind": "hierarchical", "reason": "hard"}, key="k-1")
    await tickets.act(tid, "resolve", {"actor": AGENT, "resolution": "done"})
    await asyncio.sleep(3)  # the last run's first task completes: its history has commands to check


async def record(only: set[str] | None = None) -> None:
    receiver = start_receiver()
    policy = Path(tempfile.mkdtemp()) / "policy.yaml"
    policy.write_text(yaml.safe_dump(policy_doc()))
    for name, scenario in SCENARIOS.items():
        if only and name not in only:
            continue
        receiver.fail_next = 0
        receiver.status_for_type.clear()
        env = await WorkflowEnvironment.start_time_skipping(
            data_converter=pydantic_data_converter, test_server_existing_path=str(binary("temporal-test-server"))
        )
        settings = make_settings(policy, receiver)
        smtp = SmtpServer().start() if name in OWN_POLICY else None
        if name in OWN_POLICY and smtp is not None:
            own = Path(tempfile.mkdtemp()) / "policy.yaml"
            own.write_text(yaml.safe_dump(OWN_POLICY[name]()))
            settings = channels_settings(make_settings(own, receiver), receiver, smtp.port)
            if name == "helpdesk_5158":
                zendesk = FakeZendesk().start()
                for group in (101, 102, 103, 104):
                    zendesk.add_group(group)
                zendesk.add_ticket(5158, group_id=101)
                zendesk.rate_limit_next(1, retry_after=30)
                creds = {"url": zendesk.url, "username": zendesk.email, "token": zendesk.token, "secret": "s"}
                endpoints = settings.endpoints | {"zendesk": EndpointSettings.model_validate(creds)}
                settings = settings.model_copy(update={"endpoints": endpoints})
        try:
            await register_search_attributes(env.client, "default")
            async with (
                httpx.AsyncClient() as http,
                build_worker(env.client, settings, http, task_queue="record"),
            ):
                tickets = TicketClient(env.client, "record")
                await scenario(env, tickets, f"REC-{name}", receiver)
                await env.sleep(timedelta(seconds=1))
                await save_all_runs(tickets, f"REC-{name}")
        finally:
            await env.shutdown()
            if smtp is not None:
                smtp.stop()
    if not only or "continued_as_new" in only:
        env = await start_dev_server(20)
        try:
            async with (
                httpx.AsyncClient() as http,
                build_worker(env.client, make_settings(policy, receiver), http, task_queue="record"),
            ):
                tickets = TicketClient(env.client, "record")
                await continued_as_new(env, tickets, "REC-continued_as_new", receiver)
                await save_all_runs(tickets, "REC-continued_as_new")
        finally:
            await env.shutdown()
    if not only or "policy_broken_at_opening" in only:
        env = await start_dev_server(10_000)
        try:
            await policy_broken_at_opening(env, "REC-policy_broken_at_opening", receiver)
        finally:
            await env.shutdown()
    receiver.server.shutdown()


if __name__ == "__main__":
    # Record only NEW scenarios (name them): committed histories are never re-recorded.
    asyncio.run(record(set(sys.argv[1:]) or None))
