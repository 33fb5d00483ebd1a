"""Zendesk plugged in end to end: the real API, worker and workflow on a dev server, a local Zendesk
(tests/fakes/zendesk.py) and Zendesk's documented event payloads, signed as Zendesk signs them.

A ticket opened there opens here; its breach here becomes a reassignment, a private note and a CC
there (after a 429 whose Retry-After is honoured); the webhooks Zendesk sends back for those changes
are echoes and change nothing; an agent's priority change and solve there become one action each,
with the agent as actor; forged, stale and replayed events get 401."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from config.settings import EndpointSettings
from tests.apiserver import Api, running_api
from tests.fakes.policies import connected_policy
from tests.fakes.zendesk import FakeZendesk
from tests.test_connector_zendesk import ALICE, API_USER, BILLING_T1, BILLING_T2, BOB, CREATED, SECRET, signed

BILLING_T3, BILLING_T4 = BILLING_T2 + 1, BILLING_T2 + 2


def policy() -> dict[str, Any]:
    groups = (BILLING_T1, BILLING_T2, BILLING_T3, BILLING_T4)
    queues = dict(zip(["billing-t1", "billing-t2", "billing-t3", "billing-managers"], map(str, groups), strict=True))
    mapping = {"kind": "zendesk", "queues": queues, "agents": {"alice": ALICE, "bob": BOB}}
    return connected_policy("zendesk", mapping | {"categories": {"problem": "billing"}, "own_user": str(API_USER)})


@pytest.fixture
def zendesk() -> Iterator[FakeZendesk]:
    with FakeZendesk() as fake:
        for n, group in enumerate((BILLING_T1, BILLING_T2, BILLING_T3, BILLING_T4), 1):
            fake.add_group(group, f"Billing T{n}")
        fake.add_user(int(ALICE), "alice@example.com")
        fake.add_user(int(BOB), "bob@example.com")
        fake.add_ticket(5158, assignee_id=int(ALICE), group_id=BILLING_T1, priority="high")
        yield fake


@pytest.fixture
async def api(dev_env: WorkflowEnvironment, zendesk: FakeZendesk, tmp_path: Path) -> AsyncIterator[Api]:
    credentials = EndpointSettings.model_validate(
        {"url": zendesk.url, "username": zendesk.email, "token": zendesk.token, "secret": SECRET}
    )
    async with running_api(
        dev_env.client, tmp_path, {"lead": ["lead"]}, policy=policy(), endpoints={"zendesk": credentials}
    ) as running:
        yield running


def event(kind: str, change: dict[str, Any], actor: str | int, n: int) -> dict[str, Any]:
    body = copy.deepcopy(CREATED)
    body |= {"type": f"zen:event-type:ticket.{kind}", "id": f"evt-{kind}-{n}", "event": change}
    body["detail"]["actor_id"] = str(actor)
    return body


async def post(http: httpx.AsyncClient, body: dict[str, Any], **sign: Any) -> httpx.Response:
    raw, headers = signed(body, **sign)
    return await http.post("/webhooks/zendesk", content=raw, headers=headers | {"content-type": "application/json"})


async def until(check: Any, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {seconds} s: {check.__doc__ or check}")


async def test_a_zendesk_ticket_escalates_there_and_its_agents_act_here(api: Api, zendesk: FakeZendesk) -> None:
    created = copy.deepcopy(CREATED)
    created["detail"]["created_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    zendesk.rate_limit_next(1, retry_after=2)  # the first call there is rate-limited
    async with api.client(None) as http, api.client("lead") as lead:
        opened = await post(http, created)
        assert opened.status_code == 202, opened.text
        assert opened.json()["opened"] == {"ticket_id": "ZD-5158", "workflow_id": "ticket-ZD-5158", "created": True}
        replay = await post(http, created)
        assert replay.status_code == 401 and "already received" in replay.json()["detail"]

        def escalated_there() -> list[Any]:
            return [
                r
                for r in zendesk.requests
                if r.method == "PUT" and r.json()["ticket"].get("group_id") in (BILLING_T2, str(BILLING_T2))
            ]

        puts = await until(escalated_there, 40)
        limited = next(r for r in zendesk.requests if r.method == "PUT")
        assert limited is not puts[0]  # the 429 was answered first; the call came again after Retry-After
        ticket = zendesk.tickets[5158]
        assert ticket["group_id"] in (BILLING_T2, str(BILLING_T2))
        notes = [c for c in ticket["comments"] if c.get("public") is False]
        assert any("Escalated" in c["body"] and "[escalations:" in c["body"] for c in notes), notes
        await until(lambda: "bea@example.com" in ticket["email_ccs"])
        status = (await lead.get("/tickets/ZD-5158")).json()
        escalations = status["escalation_count"]
        assert status["tier"] >= 2 and escalations >= 1

        # Zendesk tells us of the changes we made: echoes, answered and ignored.
        echoes: list[tuple[str, dict[str, Any]]] = [
            ("group_assignment_changed", {"current": str(BILLING_T2), "previous": str(BILLING_T1)}),
            ("comment_added", {"comment": {"body": "Escalated", "is_public": False, "author": {"id": API_USER}}}),
        ]
        for n, (kind, change) in enumerate(echoes):
            echo = await post(http, event(kind, change, API_USER, n))
            assert echo.status_code == 202 and "own change" in echo.json()["ignored"], echo.text

        # An agent's changes there: one action each, the agent as actor.
        raised = await post(http, event("priority_changed", {"current": "URGENT", "previous": "HIGH"}, ALICE, 10))
        assert raised.status_code == 202 and raised.json()["actions"][0]["outcome"] == "accepted", raised.text
        solved_event = event("status_changed", {"current": "SOLVED", "previous": "OPEN"}, ALICE, 11)
        solved = await post(http, solved_event)
        assert solved.json()["actions"] == [{"ticket_id": "ZD-5158", "action": "resolve", "outcome": "accepted"}], (
            solved.text
        )
        again = await post(http, solved_event)
        assert again.status_code == 401
        stale = await post(http, event("status_changed", {}, ALICE, 12), at=datetime.now(UTC) - timedelta(hours=1))
        forged = await post(http, event("status_changed", {}, ALICE, 13), secret="not-the-secret")
        assert stale.status_code == forged.status_code == 401

        await until(lambda: ticket["status"] == "solved")  # our resolution, written there
        status = (await lead.get("/tickets/ZD-5158")).json()
        assert status["state"] == "resolved" and status["priority"] == "urgent"
        assert status["escalation_count"] == escalations  # no echo escalated it again
        timeline = (await lead.get("/tickets/ZD-5158/timeline")).json()
        by_alice = [e["kind"] for e in timeline["events"] if e["actor"] == "agent:alice"]
        assert by_alice.count("priority_changed") == 1 and by_alice.count("resolved") == 1, timeline
    assert all(zendesk.token not in json.dumps(r.json()) for r in zendesk.requests if r.method == "PUT")
