"""Flood control on the real dev server: many tickets breaching at one instant to one department
head become one digest at the window's end; the assignees' own breach notices are not held; a
worker killed mid-window loses nothing and the digest goes out once, complete.

Policy minutes become seconds here: the tickets' first-response deadline is set (through their
`opened_at`) far enough ahead to open and assign every ticket first, and the flood window is 25 s
(20 s when a worker is killed), opened by the first notice to the department head: long enough for
every breach of the instant to be admitted (and the worker killed) before it closes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from config.settings import EndpointSettings
from tests.conftest import TEST_CODEC_KEYS, policy_doc
from tests.helpers import LEAD, ticket
from tests.processes import start_worker
from tests.smtp import SmtpServer, body
from workflows.digest import flood_workflow_id
from workflows.messages import DigestSummary

# These tests load both cores and assert on timing: they run one after the other on one xdist worker
# (`--dist loadgroup`, pyproject.toml), never at the same time as another test of the group "load".
pytestmark = pytest.mark.xdist_group("load")

TARGET = 90  # first-response target, seconds
LIMIT = 3  # notices to the head on their own per window


def flood_policy(head: str, window: int) -> dict[str, Any]:
    doc = policy_doc()
    doc["departments"]["support"]["head"] = {"id": head, "email": f"{head}@example.com"}
    targets = {"first_response": f"PT{TARGET}S", "resolution": "P1D"}
    doc["sla"] = {tier: {p: targets for p in ("low", "normal", "high", "urgent")} for tier in (1, 2, 3, 4)}
    doc["routes"] = [r for r in doc["routes"] if r["name"] == "default"]
    doc["ladders"] = {
        "first_response": [
            {
                "id": "fr-breach",
                "after_breach": "PT0S",
                "actions": [{"type": "notify", "roles": ["assignee"]}, {"type": "cc_department_head"}],
            }
        ],
        "resolution": [],
    }
    doc["notifications"] = {
        "endpoints": [{"name": "mail", "channel": "email"}],
        "roles": {
            "assignee": {"endpoints": ["mail"]},
            "department_head": {"endpoints": ["mail"], "flood": {"limit": LIMIT, "window": f"PT{window}S"}},
        },
        "people": {f"agent-{i:02d}": {"email": f"agent-{i:02d}@example.com"} for i in range(40)},
    }
    return doc


def a_deadline(lead_seconds: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=lead_seconds)


async def open_and_assign(tickets: Any, n: int, deadline: datetime) -> list[str]:
    """Open `n` tickets whose first-response deadline is `deadline`, each assigned to its agent.
    A few at a time, each one's status read before it is assigned: two shared cores are slow to
    take 40 first workflow tasks at once."""
    opened_at = deadline - timedelta(seconds=TARGET)
    ids = [f"FLOOD-{os.urandom(3).hex()}-{i:02d}" for i in range(n)]
    gate = asyncio.Semaphore(4)

    async def one(i: int, tid: str) -> None:
        async with gate:
            await tickets.open(ticket(ticket_id=tid, opened_at=opened_at))
            await tickets.status(tid)
            for attempt in range(10):
                try:
                    await tickets.act(tid, "reassign", {"actor": LEAD, "reason": "yours", "to_agent": f"agent-{i:02d}"})
                    return
                except RPCError:
                    if attempt == 9:
                        raise
                    await asyncio.sleep(0.5)

    await asyncio.gather(*(one(i, tid) for i, tid in enumerate(ids)))
    assert datetime.now(UTC) < deadline, "the machine was too slow to open the tickets before their deadline"
    return ids


async def settle(done: Callable[[], bool], seconds: float) -> None:
    """Wait (real time, polling twice a second) until `done()`; the assertions that follow say what is missing."""
    for _ in range(int(seconds * 2)):
        if done():
            return
        await asyncio.sleep(0.5)


def breach_mails(smtp: SmtpServer, ids: list[str]) -> dict[str, Any]:
    found = {}
    for i, tid in enumerate(ids):
        for m in smtp.mailbox.for_(f"agent-{i:02d}@example.com"):
            if "SLA breached" in body(m):
                found[tid] = m
    return found


def head_mails(smtp: SmtpServer, head: str) -> tuple[list[Any], list[Any]]:
    mails = smtp.mailbox.for_(f"{head}@example.com")
    digests = [m for m in mails if str(m["Subject"]).startswith("Digest:")]
    return [m for m in mails if m not in digests], digests


def listed(digest: Any, ids: list[str]) -> list[str]:
    text = body(digest)
    return [tid for tid in ids if f"- {tid} " in text]


async def test_forty_breaches_in_one_minute_make_one_digest_and_assignees_are_not_delayed(
    dev_env: WorkflowEnvironment, make_harness: Any
) -> None:
    smtp = SmtpServer().start()
    head = f"head-{os.urandom(3).hex()}"
    endpoints = {"mail": EndpointSettings.model_validate(smtp.endpoint())}
    try:
        # Unsandboxed: the same workflow code with less CPU per task (two shared cores, 40 tickets).
        doc = flood_policy(head, window=25)
        async with make_harness(dev_env, None, doc, endpoints=endpoints, workflow_sandbox=False) as h:
            deadline = a_deadline(lead_seconds=25)
            ids = await open_and_assign(h.tickets, 40, deadline)
            # Polled gently: this process is also the worker.
            await settle(lambda: smtp.mailbox.count("agent-", "SLA breached") >= 40, seconds=180)
            await settle(lambda: smtp.mailbox.count(head, "notices for") >= 1, seconds=180)
            await asyncio.sleep(2)  # anything more would arrive now
            alone, digests = head_mails(smtp, head)
            assignees = list(breach_mails(smtp, ids).values())
            handle = h.client.get_workflow_handle(flood_workflow_id(f"mail:{head}"))
            windows = await handle.query("windows", result_type=list[DigestSummary])
            rows = [e for e in (await h.tickets.timeline(ids[0])).events if "flood_control" in e.detail]
    finally:
        smtp.stop()
    # The ticket records its notice to the head as handed to flood control, not as delivered.
    assert rows and {e.kind for e in rows} == {"notification_handed_over"}

    assert digests, f"no digest; the head got: {[str(m['Subject']) for m in alone]}"
    # The assignees: every breach notice, none held for the window (all before the digest).
    assert len(assignees) == 40
    arrived = [smtp.mailbox.arrived[str(m["Message-ID"])] for m in assignees]
    print(f"assignees' breach notices: at most {max(arrived) - deadline.timestamp():.1f} s after the deadline")
    assert max(arrived) < smtp.mailbox.arrived[str(digests[0]["Message-ID"])]
    # The head: LIMIT copies on their own, then ONE digest at the window's end listing all 40.
    assert len(alone) == LIMIT
    (digest,) = digests
    assert sorted(listed(digest, ids)) == sorted(ids)
    assert body(digest).count("[sent on its own]") == LIMIT
    assert "Department head copied in" in body(digest)
    (window,) = windows
    assert (window.admitted, window.sent_alone, window.digested, window.delivered) == (40, LIMIT, 40 - LIMIT, True)


async def test_a_worker_killed_mid_window_still_sends_the_digest_once_and_complete(
    dev_env: WorkflowEnvironment, make_harness: Any, tmp_path: Path
) -> None:
    smtp = SmtpServer().start()
    task_queue = f"tq-kill-{os.urandom(3).hex()}"
    policy = tmp_path / "flood.yaml"
    head = f"head-{os.urandom(3).hex()}"
    policy.write_text(yaml.safe_dump(flood_policy(head, window=20)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATIONS_") or k == "ESCALATIONS_DATA_DIR"} | {
        "ESCALATIONS_TASK_QUEUE": task_queue,
        "ESCALATIONS_POLICY_PATH": str(policy),
        "ESCALATIONS_ENDPOINTS": json.dumps({"mail": smtp.endpoint()}),
        "ESCALATIONS_LOG_LEVEL": "WARNING",
        "ESCALATIONS_WORKFLOW_SANDBOX": "false",
        "ESCALATIONS_CODEC_KEYS": TEST_CODEC_KEYS,
    }
    address = dev_env.client.service_client.config.target_host
    first = start_worker(address, env)
    try:
        from api.client import TicketClient

        tickets = TicketClient(dev_env.client, task_queue)
        ids = await open_and_assign(tickets, 12, a_deadline(lead_seconds=15))
        handle = dev_env.client.get_workflow_handle(flood_workflow_id(f"mail:{head}"), result_type=list[DigestSummary])

        async def admitted() -> list[Any]:
            try:
                return list(await handle.query("entries"))
            except Exception:
                return []

        for _ in range(120):  # gently: a query is a task for the worker
            if len(await admitted()) >= len(ids):
                break
            await asyncio.sleep(0.5)
        assert len(await admitted()) == len(ids)
        first.send_signal(signal.SIGKILL)  # mid-window: the digest is a timer in the window's history
        first.wait(10)
        assert not head_mails(smtp, head)[1], "too slow: the window closed before the worker could be killed"
        second = start_worker(address, env)
        try:
            # The notices sent alone may have been in flight when the worker died: each then waits
            # out its try's timeout and is sent again, possibly after the digest.
            await settle(
                lambda: smtp.mailbox.count(head, "notices for") >= 1 and len(head_mails(smtp, head)[0]) >= LIMIT,
                seconds=180,
            )
            await asyncio.sleep(3)
            alone, digests = head_mails(smtp, head)
            (summary,) = await handle.query("windows", result_type=list[DigestSummary])
        finally:
            second.terminate()
            second.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
        smtp.stop()
    (digest,) = digests
    assert sorted(listed(digest, ids)) == sorted(ids)
    assert len(alone) == LIMIT
    # Sent once: one digest at the receiver that dedupes, and one SMTP transaction for it.
    assert sum(1 for m in smtp.mailbox.received if m["Message-ID"] == digest["Message-ID"]) == 1
    assert summary.admitted == len(ids) and summary.digested == len(ids) - LIMIT and summary.delivered
