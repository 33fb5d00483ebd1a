"""Jira Service Management plugged in end to end: the real API, worker and workflow on a dev server, a
local Jira (tests/fakes/jira.py) and Jira's documented webhook bodies, signed as Jira signs them.

An issue created there opens a ticket here; its breach here becomes, there, the assignee cleared, the
priority set and internal comments naming the queue and the department head (after a 429 whose
Retry-After is honoured); the webhooks Jira sends back for those changes are echoes and change
nothing; an agent's priority change and resolution there become one action each, with the agent as
actor, and our resolution takes the mapped transition there; forged, stale and replayed events get 401.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.apiserver import Api, running_api
from tests.fakes.jira import FakeJira, Request
from tests.fakes.policies import connected_policy
from tests.test_connector_flow import until
from tests.test_connector_jira import SECRET, body, creds, item, signed

OWN, ANN = "acct-api", "acct-ann"  # the connector's API user and an agent, there
ISSUE, TICKET = "SUP-42", "JSM-SUP-42"
RESOLVED = item("status", "1", "Waiting for support", "5", "Resolved")
RETRY_AFTER = 3  # seconds, in Jira's 429
OURS = {"accountId": OWN, "displayName": "Escalations API", "accountType": "atlassian", "active": True}


def policy() -> dict[str, Any]:
    mapping = {
        "kind": "jira",
        "agents": {"ann": ANN, "bob": "acct-bob"},
        "categories": {"Bug": "billing"},  # the documented body's issue type
        "resolved_status": "Resolve this issue",
        "own_user": OWN,
    }
    return connected_policy("jira", mapping, retry_max_interval="PT1S")


class TimedJira(FakeJira):
    """FakeJira that also records when it answered what."""

    def __init__(self) -> None:
        super().__init__(account_id=OWN)
        self.answered: list[tuple[float, int, Request]] = []

    def answer(self, req: Request) -> Any:
        status, headers, payload = super().answer(req)
        self.answered.append((time.monotonic(), status, req))
        return status, headers, payload


@pytest.fixture
def jira() -> Iterator[TimedJira]:
    fake = TimedJira()
    with fake:
        fake.add_user(ANN, "Ann Agent", "ann@example.com")
        fake.add_user("acct-bob", "Bob Agent", "bob@example.com")
        fake.add_issue(ISSUE, summary="VPN drops every hour", priority="High")
        fake.issues[ISSUE]["fields"]["assignee"] = fake.users[ANN]
        yield fake


@pytest.fixture
async def api(dev_env: WorkflowEnvironment, jira: TimedJira, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(
        dev_env.client, tmp_path, {"lead": ["lead"]}, policy=policy(), endpoints={"jira": creds(jira)}
    ) as running:
        yield running


async def post(http: httpx.AsyncClient, raw: bytes, ident: str | None = None, key: str = SECRET) -> httpx.Response:
    headers = signed(raw, secret=key, ident=ident or f"wh-{uuid.uuid4()}")
    return await http.post("/webhooks/jira", content=raw, headers=headers | {"content-type": "application/json"})


def comments(jira: FakeJira, needle: str) -> list[dict[str, Any]]:
    return [c for c in jira.comments[ISSUE] if needle in c["body"]]


async def test_a_jira_issue_escalates_there_and_its_agents_act_here(api: Api, jira: TimedJira) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    created = body("jira:issue_created", created=now, assignee=jira.users[ANN])
    jira.rate_limit_next(1, retry_after=RETRY_AFTER)  # the first call there is rate-limited
    async with api.client(None) as http, api.client("lead") as lead:
        opened = await post(http, created, ident="wh-created")
        assert opened.status_code == 202, opened.text
        assert opened.json()["opened"] == {"ticket_id": TICKET, "workflow_id": f"ticket-{TICKET}", "created": True}
        replay = await post(http, created, ident="wh-created")
        assert replay.status_code == 401 and "already received" in replay.json()["detail"]

        def escalated_there() -> list[dict[str, Any]]:
            return comments(jira, "[Escalations] Escalated") if jira.issues[ISSUE]["fields"]["assignee"] is None else []

        [escalation] = await until(escalated_there, 15)
        assert escalation["public"] is False and "queue billing-t2" in escalation["body"], escalation
        assert "Tier 2, department billing" in escalation["body"] and "Unassigned" in escalation["body"]
        put = [r.json() for r in jira.requests if r.method == "PUT" and r.path == f"/rest/api/3/issue/{ISSUE}"]
        assert {"fields": {"priority": {"name": "High"}}} in put, put
        unassign = [r.json() for r in jira.requests if r.path == f"/rest/api/3/issue/{ISSUE}/assignee"]
        assert {"accountId": None} in unassign, unassign
        [cc] = await until(lambda: comments(jira, "Department heads"))
        assert cc["public"] is False and "bea@example.com" in cc["body"], cc
        assert all(r.path.startswith("/rest/servicedeskapi/") for r in jira.requests if r.method == "POST")
        ticket = (await lead.get(f"/tickets/{TICKET}")).json()
        escalations = ticket["escalation_count"]
        assert ticket["tier"] >= 2 and escalations >= 1 and ticket["department"] == "billing", ticket

        # Jira tells us of the changes we made: echoes, answered and ignored.
        echoes = [
            body("jira:issue_updated", user=OURS, items=[item("assignee", ANN, "Ann Agent", None, None)]),
            body("jira:issue_updated", user=OURS, items=[item("priority", "2", "High", "1", "Highest")]),
            body(
                "comment_created",
                comment={"id": escalation["id"], "author": OURS, "body": escalation["body"], "jsdPublic": False},
            ),
        ]
        for echo in echoes:
            answer = await post(http, echo)
            assert answer.status_code == 202 and "own change" in answer.json()["ignored"], answer.text
        ticket = (await lead.get(f"/tickets/{TICKET}")).json()
        assert ticket["escalation_count"] == escalations and ticket["priority"] == "high", ticket

        # An agent's changes there: one action each, the agent as actor.
        raised = await post(http, body("jira:issue_updated", items=[item("priority", "2", "High", "1", "Highest")]))
        assert raised.status_code == 202, raised.text
        assert raised.json()["actions"] == [{"ticket_id": TICKET, "action": "change_priority", "outcome": "accepted"}]
        resolved_event = body("jira:issue_updated", items=[RESOLVED])
        resolved = await post(http, resolved_event, ident="wh-resolved")
        assert resolved.json()["actions"] == [{"ticket_id": TICKET, "action": "resolve", "outcome": "accepted"}], (
            resolved.text
        )
        again_resolved = await post(http, resolved_event, ident="wh-resolved")
        assert again_resolved.status_code == 401 and "already received" in again_resolved.json()["detail"]
        stale_event = body("jira:issue_updated", items=[], stamp=time.time() - 3600)
        stale = await post(http, stale_event)
        forged = await post(http, body("jira:issue_updated", items=[]), key="not-the-secret")
        tampered_raw = body("jira:issue_updated", items=[item("status", "1", "Open", "5", "Resolved")])
        tampered = await http.post(
            "/webhooks/jira",
            content=tampered_raw.replace(b"Resolved", b"Closed"),
            headers=signed(tampered_raw) | {"content-type": "application/json"},
        )
        unsigned = await http.post("/webhooks/jira", content=tampered_raw, headers={"content-type": "application/json"})
        assert stale.status_code == forged.status_code == tampered.status_code == unsigned.status_code == 401
        assert "stale" in stale.json()["detail"] and "does not match" in forged.json()["detail"]

        # Our resolution, written there: the mapped transition (offered by the issue), not a comment.
        await until(lambda: jira.issues[ISSUE]["fields"]["status"] == {"name": "Resolved"})
        transitions = [r.json() for r in jira.requests if r.method == "POST" and r.path.endswith("/transitions")]
        assert transitions == [{"transition": {"id": "21"}}], transitions
        assert not comments(jira, "is not available")
        echo = body("jira:issue_updated", user=OURS, items=[RESOLVED])
        answer = await post(http, echo)
        assert answer.status_code == 202 and "own change" in answer.json()["ignored"], answer.text

        ticket = (await lead.get(f"/tickets/{TICKET}")).json()
        assert ticket["state"] == "resolved" and ticket["priority"] == "urgent", ticket
        assert ticket["escalation_count"] == escalations  # no echo escalated it again
        timeline = (await lead.get(f"/tickets/{TICKET}/timeline")).json()
        by_ann = [e["kind"] for e in timeline["events"] if e["actor"] == "agent:ann"]
        assert by_ann.count("priority_changed") == 1 and by_ann.count("resolved") == 1, timeline
        assert not [e for e in timeline["events"] if OWN in str(e["actor"])], timeline

        # The first call there was answered 429: the same call came again after its Retry-After.
        [(at, limited)] = [(t, r) for t, s, r in jira.answered if s == 429]

        def retried() -> list[float]:
            same = (limited.method, limited.path, limited.body)
            return [t for t, s, r in list(jira.answered) if (r.method, r.path, r.body) == same and 200 <= s < 300]

        # The workflow starts tries due within the next second at once: Retry-After less that second,
        # and still longer than the policy's longest backoff (1 s).
        assert (await until(retried, 15))[0] - at >= RETRY_AFTER - 1
        timeline = (await lead.get(f"/tickets/{TICKET}/timeline")).json()
        undelivered = [e for e in timeline["events"] if e["kind"] == "notification_undelivered"]
        assert len(undelivered) == 1 and "429" in undelivered[0]["detail"]["error"], undelivered
    assert all(jira.token not in json.dumps(r.json()) for r in jira.requests if r.body)
