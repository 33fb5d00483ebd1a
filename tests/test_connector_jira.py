"""The Jira connector against Jira's documented webhook bodies and a local Jira (tests/fakes/jira.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from activities.helpdesks.base import HelpdeskError, InboundInvalid, InboundRefused
from activities.helpdesks.jira import Jira, adf_text
from config.helpdesk_schema import HelpdeskMapping
from config.settings import EndpointSettings
from tests.fakes.jira import FakeJira
from workflows.messages import OutboundEvent, Person
from workflows.models import TicketRequest

SECRET = "It's a Secret to Everybody"
JIRA = Jira()
MAPPING = HelpdeskMapping.model_validate(
    {
        "kind": "jira",
        "agents": {"ann": "acct-ann", "bob": "acct-bob"},
        "categories": {"Get IT help": "it", "Bug": "bugs"},
        "channels": {"email-request": "email", "portal": "web"},
        "segment_tags": {"vip": "enterprise"},
        "pending_statuses": ["Waiting for customer"],
        "resolved_statuses": ["Resolved", "Done", "Closed"],
        "own_user": "acct-api",
    }
)
USER = {  # the `user` object of Atlassian's documented example body
    "self": "https://acme.atlassian.net/rest/api/2/user?accountId=acct-ann",
    "accountId": "acct-ann",
    "displayName": "Ann Agent",
    "active": True,
    "timeZone": "UTC",
}
REPORTER = {"accountId": "qm:cust-1", "accountType": "customer", "displayName": "Carla Customer", "active": True}


def issue(**fields: Any) -> dict[str, Any]:
    base = {
        "summary": "VPN drops every hour",
        "issuetype": {"id": "10002", "name": "Bug", "subtask": False},
        "priority": {"id": "2", "name": "High"},
        "status": {"id": "1", "name": "Waiting for support"},
        "reporter": REPORTER,
        "assignee": None,
        "labels": ["vip"],
        "created": "2024-03-01T09:30:00.000+0000",
        "description": "It drops.\nEvery hour.",
    }
    return {"id": "10042", "self": "https://acme.atlassian.net/rest/api/2/issue/10042", "key": "SUP-42",
            "fields": base | fields}  # fmt: skip


def body(event: str, *, user: dict[str, Any] | None = USER, items: list[dict[str, Any]] | None = None,
         comment: dict[str, Any] | None = None, stamp: float | None = None, **fields: Any) -> bytes:  # fmt: skip
    data: dict[str, Any] = {
        "timestamp": int((stamp or time.time()) * 1000),
        "webhookEvent": event,
        "issue_event_type_name": {"jira:issue_created": "issue_created"}.get(event, "issue_generic"),
        "issue": issue(**fields),
    }
    if user is not None:
        data["user"] = user
    if items is not None:
        data["changelog"] = {"id": "10100", "items": items}
    if comment is not None:
        data["comment"] = comment
    return json.dumps(data).encode()


def item(field: str, before: str | None, before_txt: str | None, after: str | None, after_txt: str | None) -> Any:
    return {"field": field, "fieldtype": "jira", "from": before, "fromString": before_txt, "to": after,
            "toString": after_txt}  # fmt: skip


def signed(raw: bytes, secret: str = SECRET, ident: str | None = "a1b2c3d4-webhook") -> dict[str, str]:
    headers = {"X-Hub-Signature": "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()}
    return headers | ({"X-Atlassian-Webhook-Identifier": ident} if ident else {})


def creds(jira: FakeJira | None = None, token: str | None = None) -> EndpointSettings:
    url, user, key = (jira.url, jira.email, token or jira.token) if jira else ("http://127.0.0.1:9", "a@b.c", "t")
    return EndpointSettings(url=SecretStr(url), username=user, token=SecretStr(key), secret=SecretStr(SECRET),
                            timeout_seconds=5)  # fmt: skip


def event(kind: str, ticket_id: str = "JSM-SUP-42", **extra: Any) -> OutboundEvent:
    fields: dict[str, Any] = {"id": "evt-1", "type": kind, "occurred_at": datetime.now(UTC), "ticket_id": ticket_id,
                              "workflow_id": f"ticket-{ticket_id}", "tier": 2, "department": "network",
                              "priority": "urgent", "reason": "first response breached",
                              "rule": "ladders.first_response[1]"}  # fmt: skip
    return OutboundEvent.model_validate(fields | extra)


@pytest.fixture
def jira() -> Iterator[FakeJira]:
    with FakeJira(account_id="acct-api") as fake:
        fake.add_user("acct-ann", "Ann Agent", "ann@example.com")
        fake.add_issue("SUP-42", priority="Medium")
        yield fake


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


# ---------------------------------------------------------------------- verify
def test_verify_takes_the_webhook_identifier_or_derives_one() -> None:
    raw = body("jira:issue_updated", items=[])
    assert JIRA.verify(raw, signed(raw), creds(), 300) == "a1b2c3d4-webhook"
    derived = JIRA.verify(raw, signed(raw, ident=None), creds(), 300)
    assert derived.startswith("jira:") and derived.endswith(":10042:10100")


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "missing X-Hub-Signature"),
        ({"X-Hub-Signature": "md5=abc"}, "not of the form"),
        ("forged", "does not match"),
        ("other secret", "does not match"),
    ],
)
def test_verify_refuses_forged_and_unsigned(headers: Any, why: str) -> None:
    raw = body("jira:issue_created")
    if headers == "forged":
        headers = signed(body("jira:issue_created", summary="tampered"))
    elif headers == "other secret":
        headers = signed(raw, secret="guess")
    with pytest.raises(InboundRefused, match=why) as refused:
        JIRA.verify(raw, headers, creds(), 300)
    assert "\n" not in str(refused.value)


def test_verify_refuses_stale_and_future_and_unconfigured() -> None:
    old = body("jira:issue_created", stamp=time.time() - 600)
    with pytest.raises(InboundRefused, match="stale"):
        JIRA.verify(old, signed(old), creds(), 300)
    ahead = body("jira:issue_created", stamp=time.time() + 600)
    with pytest.raises(InboundRefused, match="future"):
        JIRA.verify(ahead, signed(ahead), creds(), 300)
    raw = body("jira:issue_created")
    with pytest.raises(InboundRefused, match="no webhook secret"):
        JIRA.verify(raw, signed(raw), EndpointSettings(), 300)


# ---------------------------------------------------------------------- read
def test_issue_created_opens_a_ticket() -> None:
    request_type = {"requestType": {"id": "12", "name": "Get IT help"}, "currentStatus": {"status": "Open"}}
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    inbound = JIRA.read(body("jira:issue_created", customfield_10010=request_type, created=future), MAPPING, "ev-1")
    opened = inbound.open
    assert opened is not None and not inbound.actions
    assert opened["ticket_id"] == "JSM-SUP-42" and opened["subject"] == "VPN drops every hour"
    assert opened["category"] == "it" and opened["priority"] == "high" and opened["channel"] == "email"
    assert opened["customer"] == {"id": "qm:cust-1", "name": "Carla Customer", "segment": "enterprise"}
    assert datetime.fromisoformat(opened["opened_at"]) <= datetime.now(UTC)  # clamped: never in the future
    TicketRequest.model_validate(opened)
    plain = JIRA.read(body("jira:issue_created", priority={"name": "Blocker"}, labels=[]), MAPPING, "ev-2").open
    assert plain is not None and plain["category"] == "bugs" and plain["priority"] == "normal"
    assert plain["opened_at"].startswith("2024-03-01T09:30:00")


def test_adf_description_becomes_bounded_text() -> None:
    adf = {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": "Hello "},
                                          {"type": "mention", "attrs": {"text": "@Ann"}}]},
        {"type": "paragraph", "content": [{"type": "text", "text": "line two"}, {"type": "hardBreak"}]},
    ]}  # fmt: skip
    assert adf_text(adf) == "Hello @Ann\nline two"
    assert len(adf_text({"type": "doc", "content": [{"type": "text", "text": "x" * 50_000}]})) == 20_000


def test_issue_updated_changelog_becomes_actions_with_keys() -> None:
    items = [item("assignee", None, None, "acct-bob", "Bob"), item("priority", "3", "Medium", "1", "Highest")]
    inbound = JIRA.read(body("jira:issue_updated", items=items), MAPPING, "wh-9")
    assert [(a.ticket_id, a.action, a.key) for a in inbound.actions] == [
        ("JSM-SUP-42", "reassign", "wh-9:0"),
        ("JSM-SUP-42", "change_priority", "wh-9:1"),
    ]
    actor = {"id": "ann", "role": "agent"}  # acct-ann is our ann
    assert inbound.actions[0].payload == {"actor": actor, "to_agent": "bob", "reason": "assigned in Jira"}
    assert inbound.actions[1].payload["priority"] == "urgent"


@pytest.mark.parametrize(
    ("before", "after", "action"),
    [
        ("Waiting for support", "Resolved", "resolve"),
        ("In Progress", "Waiting for customer", "pending_customer"),
        ("Waiting for customer", "Waiting for support", "customer_replied"),
    ],
)
def test_status_changes(before: str, after: str, action: str) -> None:
    inbound = JIRA.read(body("jira:issue_updated", items=[item("status", "1", before, "2", after)]), MAPPING, "e")
    assert [a.action for a in inbound.actions] == [action]


def test_status_change_this_product_ignores() -> None:
    items = [item("status", "1", "Waiting for support", "3", "In Progress"), item("labels", "", "", "", "x")]
    assert JIRA.read(body("jira:issue_updated", items=items), MAPPING, "e").ignored == "no change this product acts on"


def test_comments() -> None:
    agent = {"id": "10500", "author": USER | {"accountType": "atlassian"}, "body": "On it", "jsdPublic": True}
    assert [a.action for a in JIRA.read(body("comment_created", comment=agent), MAPPING, "c").actions] == [
        "acknowledge"
    ]
    internal = agent | {"jsdPublic": False}
    assert "internal" in (JIRA.read(body("comment_created", comment=internal), MAPPING, "c").ignored or "")
    customer = agent | {"author": REPORTER}
    assert "customer" in (JIRA.read(body("comment_created", comment=customer), MAPPING, "c").ignored or "")


def test_echoes_and_other_events_are_ignored() -> None:
    ours = {"accountId": "acct-api", "displayName": "Escalations API"}
    items = [item("assignee", None, None, "acct-ann", "Ann")]
    assert "our own change" in (
        JIRA.read(body("jira:issue_updated", user=ours, items=items), MAPPING, "e").ignored or ""
    )
    comment = {"id": "1", "author": ours, "body": "ref", "jsdPublic": False}
    assert "our own change" in (JIRA.read(body("comment_created", comment=comment), MAPPING, "e").ignored or "")
    assert "not read here" in (JIRA.read(body("worklog_created"), MAPPING, "e").ignored or "")


def test_unreadable_bodies_name_the_field() -> None:
    with pytest.raises(InboundInvalid, match="body"):
        JIRA.read(b"[1, 2]", MAPPING, "e")
    with pytest.raises(InboundInvalid) as bad:
        JIRA.read(json.dumps({"webhookEvent": "jira:issue_created", "issue": {"id": "1"}}).encode(), MAPPING, "e")
    assert bad.value.field == "issue.key"


# ---------------------------------------------------------------------- apply
async def test_reassigned_sets_assignee_priority_and_an_internal_comment(jira: FakeJira, client: Any) -> None:
    data = {
        "from": {"agent": None, "queue": "net-t1"},
        "to": {"agent": "ann", "queue": "net-t2", "department": "network"},
    }
    applied = await JIRA.apply(event("ticket.reassigned", data=data), "net-t2", [], MAPPING, creds(jira), client, "k-1")
    assert applied.calls == [
        "PUT /rest/api/3/issue/SUP-42/assignee 204",
        "PUT /rest/api/3/issue/SUP-42 204",
        "POST /rest/servicedeskapi/request/SUP-42/comment 201",
    ]
    fields = jira.issues["SUP-42"]["fields"]
    assert fields["assignee"]["accountId"] == "acct-ann" and fields["priority"] == {"name": "Highest"}
    [comment] = jira.comments["SUP-42"]
    assert comment["public"] is False and "first response breached" in comment["body"]
    assert "ladders.first_response[1]" in comment["body"] and "ref k-1" in comment["body"]


async def test_escalated_unassigns_and_names_the_queue(jira: FakeJira, client: Any) -> None:
    jira.issues["SUP-42"]["fields"]["assignee"] = jira.users["acct-ann"]
    await JIRA.apply(event("ticket.escalated", data={"kind": "hierarchical"}), "net-t3", [], MAPPING, creds(jira),
                     client, "k-2")  # fmt: skip
    assert jira.issues["SUP-42"]["fields"]["assignee"] is None
    assert "queue net-t3" in jira.comments["SUP-42"][0]["body"]


async def test_cc_and_breach_are_internal_comments(jira: FakeJira, client: Any) -> None:
    heads = ["head@example.com"]
    cc = event("ticket.cc", cc=[Person(role="department_head", id="hd", email="head@example.com")])
    assert (await JIRA.apply(cc, None, heads, MAPPING, creds(jira), client, "k")).calls == [
        "POST /rest/servicedeskapi/request/SUP-42/comment 201"
    ]
    await JIRA.apply(event("sla.breached"), None, [], MAPPING, creds(jira), client, "k")
    cc_comment, breach = (c["body"] for c in jira.comments["SUP-42"])
    assert "head@example.com" in cc_comment and "no email CC" in cc_comment and "SLA breached" in breach


async def test_resolved_takes_the_named_transition_else_comments(jira: FakeJira, client: Any) -> None:
    resolving = MAPPING.model_copy(update={"resolved_status": "Resolve this issue"})
    applied = await JIRA.apply(event("ticket.resolved"), None, [], resolving, creds(jira), client, "k")
    assert applied.calls == [
        "GET /rest/api/3/issue/SUP-42/transitions 200",
        "POST /rest/api/3/issue/SUP-42/transitions 204",
    ]
    assert jira.issues["SUP-42"]["fields"]["status"] == {"name": "Resolved"} and not jira.comments["SUP-42"]
    missing = MAPPING.model_copy(update={"resolved_status": "Teleport"})
    await JIRA.apply(event("ticket.resolved"), None, [], missing, creds(jira), client, "k")
    await JIRA.apply(event("ticket.resolved"), None, [], MAPPING, creds(jira), client, "k")
    assert len(jira.comments["SUP-42"]) == 2 and "'Teleport' is not available" in jira.comments["SUP-42"][0]["body"]


async def test_tickets_from_elsewhere_are_skipped(jira: FakeJira, client: Any) -> None:
    applied = await JIRA.apply(event("sla.breached", ticket_id="ZD-1"), None, [], MAPPING, creds(jira), client, "k")
    assert applied.calls == [] and "not opened from Jira" in (applied.skipped or "")
    assert jira.requests == []


async def test_rate_limit_gives_retry_after(jira: FakeJira, client: Any) -> None:
    jira.rate_limit_next(1, retry_after=7)
    with pytest.raises(HelpdeskError) as limited:
        await JIRA.apply(event("sla.breached"), None, [], MAPPING, creds(jira), client, "k")
    assert (limited.value.status, limited.value.permanent, limited.value.retry_after) == (429, False, 7.0)
    await JIRA.apply(event("sla.breached"), None, [], MAPPING, creds(jira), client, "k")  # the retry passes
    assert len(jira.comments["SUP-42"]) == 1


async def test_errors_permanent_or_transient_never_the_token(jira: FakeJira, client: Any) -> None:
    with pytest.raises(HelpdeskError) as unauthorized:
        await JIRA.apply(event("sla.breached"), None, [], MAPPING, creds(jira, token="wrong-token"), client, "k")
    assert unauthorized.value.permanent and unauthorized.value.status == 401
    assert "wrong-token" not in str(unauthorized.value) and "jira-api-token" not in str(unauthorized.value)
    with pytest.raises(HelpdeskError, match="could not be found") as missing:
        await JIRA.apply(event("sla.breached", ticket_id="JSM-NOPE-1"), None, [], MAPPING, creds(jira), client, "k")
    assert missing.value.permanent and missing.value.status == 404
    data = {"to": {"agent": "zed"}}  # unmapped: their id is ours, and Jira has no such user
    with pytest.raises(HelpdeskError, match="cannot be assigned") as refused:
        await JIRA.apply(event("ticket.reassigned", data=data), None, [], MAPPING, creds(jira), client, "k")
    assert refused.value.permanent and refused.value.status == 400
    jira.down = True
    with pytest.raises(HelpdeskError) as down:
        await JIRA.apply(event("sla.breached"), None, [], MAPPING, creds(jira), client, "k")
    assert not down.value.permanent and down.value.status == 503
    with pytest.raises(HelpdeskError) as unreachable:
        await JIRA.apply(event("sla.breached"), None, [], MAPPING, creds(None), client, "k")
    assert not unreachable.value.permanent and unreachable.value.status is None


# ---------------------------------------------------------------------- check and setup
async def test_check_answers_in_one_line(jira: FakeJira, client: Any) -> None:
    bad = await JIRA.check(MAPPING, creds(jira, token="nope"), client)
    assert not bad.ok and bad.message.startswith("bad credentials") and "nope" not in bad.message
    missing = await JIRA.check(MAPPING, creds(jira), client)  # bob (acct-bob) is no Jira user
    assert not missing.ok and missing.message == "agent 'bob': no Jira user with accountId 'acct-bob'"
    jira.add_user("acct-bob", "Bob")
    good = await JIRA.check(MAPPING.model_copy(update={"queues": {"net-t1": "1"}}), creds(jira), client)
    assert good.ok and good.own_user == "acct-api" and "queues are ignored" in good.message
    assert all("\n" not in c.message for c in (bad, missing, good))


def test_setup_text_names_url_events_and_secret() -> None:
    text = JIRA.setup_text(MAPPING, "https://esc.example.com/helpdesks/jira")
    for needle in ("https://esc.example.com/helpdesks/jira", "Issue: created, updated", "Comment: created", "Secret",
                   "JQL", "acct-api"):  # fmt: skip
        assert needle in text
