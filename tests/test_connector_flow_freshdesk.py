"""Freshdesk plugged in end to end: the real API, worker and workflow on a dev server, a local Freshdesk
(tests/fakes/freshdesk.py) and the automation rule's body (`RULE_BODY`) as Freshdesk renders it, with
the shared secret in its custom header.

A ticket created there opens here; its breach here becomes, there, the group of the next queue, the
priority, private notes and the department head notified on a note (after a 429 whose Retry-After is
honoured); the rule bodies Freshdesk would send back for those changes are echoes and change nothing;
an agent's priority change and resolution there become one action each, with the agent as actor, and
our resolution sets status 4 there; forged, unsigned and replayed bodies get 401. (Freshdesk sends no
event time: there is no staleness to refuse.)
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.helpdesks.freshdesk import SECRET_HEADER
from tests.apiserver import Api, running_api
from tests.fakes.freshdesk import FakeFreshdesk, Request
from tests.fakes.policies import connected_policy
from tests.test_connector_flow import until
from tests.test_connector_freshdesk import SECRET, creds, rendered

OWN, ANN, BOB = 1001, 31, 32  # agents there: the connector's API user, Ann, Bob
GROUPS = {"billing-t1": 7, "billing-t2": 8, "billing-t3": 9, "billing-managers": 10}
NUMBER, TICKET = 35436, "FD-35436"
RETRY_AFTER = 3  # seconds, in Freshdesk's 429
ANN_HERE = "agent:ann@example.com"  # the rule body names the ticket's agent by email: our actor id


def policy() -> dict[str, Any]:
    mapping = {
        "kind": "freshdesk",
        "queues": {queue: str(group) for queue, group in GROUPS.items()},
        "agents": {"ann": str(ANN), "bob": str(BOB)},
        "categories": {"Refund": "billing"},  # the rendered body's ticket type
        "own_user": str(OWN),
    }
    return connected_policy("freshdesk", mapping, retry_max_interval="PT1S")


class TimedFreshdesk(FakeFreshdesk):
    """FakeFreshdesk that also records when it answered what."""

    def __init__(self) -> None:
        super().__init__(me=OWN)
        self.answered: list[tuple[float, int, Request]] = []

    def answer(self, req: Request) -> Any:
        status, headers, payload = super().answer(req)
        self.answered.append((time.monotonic(), status, req))
        return status, headers, payload


@pytest.fixture
def freshdesk() -> Iterator[TimedFreshdesk]:
    fake = TimedFreshdesk()
    with fake:
        fake.add_agent(ANN, "ann@example.com", "Ann")
        fake.add_agent(BOB, "bob@example.com", "Bob")
        for n, group in enumerate(GROUPS.values(), 1):
            fake.add_group(group, f"Billing T{n}")
        fake.add_ticket(NUMBER, subject='Refund for order "A-17"', priority=3)
        fake.tickets[NUMBER].update(group_id=GROUPS["billing-t1"], responder_id=ANN)
        yield fake


@pytest.fixture
async def api(dev_env: WorkflowEnvironment, freshdesk: TimedFreshdesk, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(
        dev_env.client, tmp_path, {"lead": ["lead"]}, policy=policy(),
        endpoints={"freshdesk": creds(freshdesk)},
    ) as running:  # fmt: skip
        yield running


async def post(http: httpx.AsyncClient, raw: bytes, secret: str | None = SECRET) -> httpx.Response:
    headers = {"content-type": "application/json"} | ({SECRET_HEADER: secret} if secret is not None else {})
    return await http.post("/webhooks/freshdesk", content=raw, headers=headers)


def notes(freshdesk: FakeFreshdesk, needle: str) -> list[dict[str, Any]]:
    return [n for n in freshdesk.notes[NUMBER] if needle in n["body"]]


async def test_a_freshdesk_ticket_escalates_there_and_its_agents_act_here(api: Api, freshdesk: TimedFreshdesk) -> None:
    created = rendered("{ticket_action:created}")
    freshdesk.rate_limit_next(1, retry_after=RETRY_AFTER)  # the first call there is rate-limited
    async with api.client(None) as http, api.client("lead") as lead:
        opened = await post(http, created)
        assert opened.status_code == 202, opened.text
        assert opened.json()["opened"] == {"ticket_id": TICKET, "workflow_id": f"ticket-{TICKET}", "created": True}
        replay = await post(http, created)
        assert replay.status_code == 401 and "already received" in replay.json()["detail"]

        def escalated_there() -> list[dict[str, Any]]:
            return notes(freshdesk, "[Escalations] Escalated") if freshdesk.tickets[NUMBER]["group_id"] == 8 else []

        [escalation] = await until(escalated_there, 15)
        there = freshdesk.tickets[NUMBER]
        assert (there["group_id"], there["responder_id"], there["priority"]) == (GROUPS["billing-t2"], None, 3)
        assert escalation["private"] is True and "queue billing-t2" in escalation["body"], escalation
        puts = [r.json() for r in freshdesk.requests if r.method == "PUT"]
        assert {"responder_id": None, "group_id": GROUPS["billing-t2"], "priority": 3} in puts, puts
        [cc] = await until(lambda: notes(freshdesk, "Department heads notified"))
        assert cc["private"] is True and cc["notify_emails"] == ["bea@example.com"], cc
        ticket = (await lead.get(f"/tickets/{TICKET}")).json()
        escalations = ticket["escalation_count"]
        assert ticket["tier"] >= 2 and escalations >= 1 and ticket["department"] == "billing", ticket

        # Freshdesk tells us of the changes we made (performed by the API user): echoes, answered and ignored.
        echoes = [
            rendered("{group_id:{from:7,to:8}}", by=str(OWN), agent_email=""),
            rendered("{responder_id:{from:31,to:None}}", by=str(OWN), agent_email=""),
            rendered("{priority:{from:3,to:4}}", by=str(OWN), agent_email=""),
            rendered("{note_type:private}", by=str(OWN), agent_email=""),
        ]
        for echo in echoes:
            answer = await post(http, echo)
            assert answer.status_code == 202 and "own change" in answer.json()["ignored"], answer.text
        ticket = (await lead.get(f"/tickets/{TICKET}")).json()
        assert ticket["escalation_count"] == escalations and ticket["priority"] == "high", ticket

        # An agent's changes there: one action each, the agent as actor.
        raised = await post(http, rendered("{priority:{from:3,to:4}}", priority="Urgent"))
        assert raised.status_code == 202, raised.text
        assert raised.json()["actions"] == [{"ticket_id": TICKET, "action": "change_priority", "outcome": "accepted"}]
        resolved_event = rendered("{status:{from:2,to:4}}", status="Resolved", priority="Urgent")
        resolved = await post(http, resolved_event)
        assert resolved.json()["actions"] == [{"ticket_id": TICKET, "action": "resolve", "outcome": "accepted"}], (
            resolved.text
        )
        again = await post(http, resolved_event)
        assert again.status_code == 401 and "already received" in again.json()["detail"]
        forged = await post(http, rendered("{status:{from:4,to:2}}", status="Open"), secret="not-the-secret")
        unsigned = await post(http, rendered("{status:{from:4,to:2}}", status="Open"), secret=None)
        assert forged.status_code == unsigned.status_code == 401
        assert "does not match" in forged.json()["detail"] and "missing" in unsigned.json()["detail"]

        # Our resolution, written there: status 4 (resolved), and its echo ignored.
        await until(lambda: freshdesk.tickets[NUMBER]["status"] == 4)
        assert {"status": 4} in [r.json() for r in freshdesk.requests if r.method == "PUT"]
        echo = rendered("{status:{from:2,to:4}}", by=str(OWN), status="Resolved", agent_email="")
        answer = await post(http, echo)
        assert answer.status_code == 202 and "own change" in answer.json()["ignored"], answer.text

        ticket = (await lead.get(f"/tickets/{TICKET}")).json()
        assert ticket["state"] == "resolved" and ticket["priority"] == "urgent", ticket
        assert ticket["escalation_count"] == escalations  # no echo escalated it again
        timeline = (await lead.get(f"/tickets/{TICKET}/timeline")).json()
        by_ann = [e["kind"] for e in timeline["events"] if e["actor"] == ANN_HERE]
        assert by_ann.count("priority_changed") == 1 and by_ann.count("resolved") == 1, timeline
        assert not [e for e in timeline["events"] if str(OWN) in str(e["actor"])], timeline

        # The first call there was answered 429: the same call came again after its Retry-After.
        [(at, limited)] = [(t, r) for t, s, r in freshdesk.answered if s == 429]

        def retried() -> list[float]:
            same = (limited.method, limited.path, limited.body)
            return [t for t, s, r in list(freshdesk.answered) if (r.method, r.path, r.body) == same and 200 <= s < 300]

        # The workflow starts tries due within the next second at once: Retry-After less that second,
        # and still longer than the policy's longest backoff (1 s).
        assert (await until(retried, 15))[0] - at >= RETRY_AFTER - 1
        timeline = (await lead.get(f"/tickets/{TICKET}/timeline")).json()
        undelivered = [e for e in timeline["events"] if e["kind"] == "notification_undelivered"]
        assert len(undelivered) == 1 and "429" in undelivered[0]["detail"]["error"], undelivered
    assert all(freshdesk.api_key not in json.dumps(r.json()) for r in freshdesk.requests if r.body)
