"""The Freshdesk connector: its rule body as Freshdesk renders it, and a local Freshdesk (tests/fakes/freshdesk.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from activities.helpdesks.base import HelpdeskError, InboundInvalid, InboundRefused
from activities.helpdesks.freshdesk import RULE_BODY, SECRET_HEADER, Freshdesk
from config.helpdesk_schema import HelpdeskMapping
from config.settings import EndpointSettings
from tests.fakes.freshdesk import FakeFreshdesk
from workflows.messages import OutboundEvent, Person
from workflows.models import TicketRequest

SECRET = "fd-shared-secret"
FD = Freshdesk()
MAPPING = HelpdeskMapping.model_validate(
    {
        "kind": "freshdesk",
        "queues": {"billing-t1": "7", "billing-t2": "8"},
        "agents": {"ann": "31", "bob": "32"},
        "categories": {"Refund": "billing"},
        "segment_tags": {"Acme Corp": "enterprise"},
        "pending_statuses": ["3", "Pending", "Waiting on Customer"],
        "own_user": "1001",
    }
)
# What Freshdesk's documented placeholders render to (values as in public examples of rule webhooks).
RENDERED = {
    "{{ticket.id}}": "35436",
    "{{ticket.subject}}": 'Refund for order "A-17"',
    "{{ticket.description}}": "<div>Charged twice &amp; no answer.</div>\n<div><br></div><div>Order A-17</div>",
    "{{ticket.status}}": "Open",
    "{{ticket.priority}}": "High",
    "{{ticket.source}}": "Portal",
    "{{ticket.ticket_type}}": "Refund",
    "{{ticket.tags}}": "refund, vip",
    "{{ticket.group.name}}": "Billing",
    "{{ticket.agent.email}}": "ann@example.com",
    "{{ticket.requester.name}}": "Requester Bob",
    "{{ticket.requester.email}}": "requester-bob@example.com",
    "{{ticket.company.name}}": "Acme Corp",
    "{{ticket.url}}": "https://acme.freshdesk.com/helpdesk/tickets/35436",
}


def rendered(triggered_event: str, by: str = "agent", **ticket: str) -> bytes:
    """RULE_BODY as Freshdesk sends it: every placeholder replaced (JSON-escaped) by its value."""
    body = json.loads(RULE_BODY)
    body["event"], body["by"] = triggered_event, by
    body["ticket"] = {k: ticket.get(k, RENDERED.get(v, v)) for k, v in body["ticket"].items()}
    return json.dumps(body).encode()


def creds(fd: FakeFreshdesk | None = None, key: str | None = None) -> EndpointSettings:
    url, token = (fd.url, key or fd.api_key) if fd else ("http://127.0.0.1:9", "k")
    return EndpointSettings(url=SecretStr(url), token=SecretStr(token), secret=SecretStr(SECRET), timeout_seconds=5)


def event(kind: str, ticket_id: str = "FD-35436", **extra: Any) -> OutboundEvent:
    fields: dict[str, Any] = {"id": "evt-1", "type": kind, "occurred_at": datetime.now(UTC), "ticket_id": ticket_id,
                              "workflow_id": f"ticket-{ticket_id}", "tier": 2, "department": "billing",
                              "priority": "high", "reason": "resolution breached",
                              "rule": "ladders.resolution[0]"}  # fmt: skip
    return OutboundEvent.model_validate(fields | extra)


@pytest.fixture
def fd() -> Iterator[FakeFreshdesk]:
    with FakeFreshdesk(me=1001) as fake:
        fake.add_agent(31, "ann@example.com", "Ann")
        fake.add_group(7, "Billing T1")
        fake.add_group(8, "Billing T2")
        fake.add_ticket(35436)
        yield fake


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


# ---------------------------------------------------------------------- verify
def test_verify_checks_the_secret_header_and_gives_a_stable_id() -> None:
    raw = rendered("{ticket_action:created}")
    first = FD.verify(raw, {SECRET_HEADER: SECRET}, creds(), 300)
    assert first.startswith("freshdesk:35436:") and first == FD.verify(
        raw, {"x-escalations-secret": SECRET}, creds(), 0
    )
    assert FD.verify(rendered("{priority:{from:3,to:1}}"), {SECRET_HEADER: SECRET}, creds(), 300) != first
    for headers, why in [({}, "missing X-Escalations-Secret"), ({SECRET_HEADER: "guess"}, "does not match")]:
        with pytest.raises(InboundRefused, match=why) as refused:
            FD.verify(raw, headers, creds(), 300)
        assert "\n" not in str(refused.value)
    with pytest.raises(InboundRefused, match="no webhook secret"):
        FD.verify(raw, {SECRET_HEADER: SECRET}, EndpointSettings(), 300)


# ---------------------------------------------------------------------- read
def test_ticket_created_opens_a_ticket() -> None:
    inbound = FD.read(rendered("{ticket_action:created}"), MAPPING, "e-1")
    opened = inbound.open
    assert opened is not None and not inbound.actions
    assert opened["ticket_id"] == "FD-35436" and opened["subject"] == 'Refund for order "A-17"'
    assert opened["description"] == "Charged twice & no answer.\n\nOrder A-17"
    assert (opened["channel"], opened["category"], opened["priority"]) == ("web", "billing", "high")
    assert opened["customer"] == {"id": "requester-bob@example.com", "name": "Requester Bob",
                                  "email": "requester-bob@example.com", "segment": "enterprise"}  # fmt: skip
    TicketRequest.model_validate(opened)
    unknown = FD.read(rendered("{ticket_action:created}", priority="Whatever", source="Carrier pigeon"), MAPPING, "e")
    assert unknown.open is not None and (unknown.open["priority"], unknown.open["channel"]) == ("normal", "email")


@pytest.mark.parametrize(
    ("triggered", "status", "action", "payload"),
    [
        ("{responder_id:{from:31,to:32}}", "Open", "reassign", {"to_agent": "bob", "reason": "assigned in Freshdesk"}),
        ("{group_id:{from:7,to:8}}", "Open", "reassign", {"to_queue": "billing-t2"}),
        ("{priority:{from:3,to:1}}", "Open", "change_priority", {"priority": "low"}),
        ("{status:{from:2,to:4}}", "Resolved", "resolve", {"resolution": "Resolved in Freshdesk"}),
        ("{status:{from:4,to:6}}", "Waiting on Customer", "pending_customer", {}),
        ("{status:{from:3,to:2}}", "Open", "customer_replied", {}),
        ("{note_type:public}", "Open", "acknowledge", {}),
    ],
)
def test_rule_events_become_actions(triggered: str, status: str, action: str, payload: dict[str, Any]) -> None:
    inbound = FD.read(rendered(triggered, status=status), MAPPING, "e-7")
    [act] = inbound.actions
    assert (act.ticket_id, act.action, act.key) == ("FD-35436", action, "e-7:0")
    assert payload.items() <= act.payload.items()
    if action != "customer_replied":
        assert act.payload["actor"] == {"id": "ann@example.com", "role": "agent"}


def test_events_without_meaning_here_are_ignored() -> None:
    for triggered in ("{note_type:private}", "{group_id:{from:7,to:99}}", "{responder_id:{from:31,to:None}}",
                      "{ticket_type:{from:Question,to:Refund}}", "{status:{from:2,to:2}}"):  # fmt: skip
        assert FD.read(rendered(triggered), MAPPING, "e").ignored, triggered


def test_requester_rule_and_echoes() -> None:
    replied = FD.read(rendered("{note_type:public}", by="requester"), MAPPING, "e")
    assert [a.action for a in replied.actions] == ["customer_replied"]
    echo = FD.read(rendered("{responder_id:{from:31,to:32}}", by="1001"), MAPPING, "e")
    assert echo.ignored == "our own change (the connector's API user)"


def test_unreadable_bodies_name_the_field() -> None:
    with pytest.raises(InboundInvalid, match="body"):
        FD.read(b"not json", MAPPING, "e")
    with pytest.raises(InboundInvalid) as missing:
        FD.read(b'{"event": "{ticket_action:created}"}', MAPPING, "e")
    assert missing.value.field == "ticket"
    with pytest.raises(InboundInvalid) as unrendered:
        FD.read(rendered("{ticket_action:created}", id="{{ticket.id}}"), MAPPING, "e")
    assert unrendered.value.field == "ticket.id"


# ---------------------------------------------------------------------- apply
async def test_reassigned_sets_group_agent_priority_and_a_private_note(fd: FakeFreshdesk, client: Any) -> None:
    data = {"from": {"agent": None, "queue": "billing-t1"}, "to": {"agent": "ann", "queue": "billing-t2"}}
    applied = await FD.apply(event("ticket.reassigned", data=data), None, [], MAPPING, creds(fd), client, "k-1")
    assert applied.calls == ["PUT /api/v2/tickets/35436 200", "POST /api/v2/tickets/35436/notes 201"]
    ticket = fd.tickets[35436]
    assert (ticket["group_id"], ticket["responder_id"], ticket["priority"]) == (8, 31, 3)
    [note] = fd.notes[35436]
    assert note["private"] is True and "resolution breached" in note["body"] and "ref k-1" in note["body"]


async def test_escalated_moves_to_the_group_unassigned(fd: FakeFreshdesk, client: Any) -> None:
    fd.tickets[35436]["responder_id"] = 31
    await FD.apply(event("ticket.escalated", data={"kind": "hierarchical"}), "billing-t1", [], MAPPING, creds(fd),
                   client, "k")  # fmt: skip
    assert (fd.tickets[35436]["group_id"], fd.tickets[35436]["responder_id"]) == (7, None)
    assert fd.requests[0].json() == {"responder_id": None, "group_id": 7, "priority": 3}


async def test_cc_breach_and_resolved(fd: FakeFreshdesk, client: Any) -> None:
    heads = ["head@example.com"]
    cc = event("ticket.cc", cc=[Person(role="department_head", id="hd", email="head@example.com")])
    await FD.apply(cc, None, heads, MAPPING, creds(fd), client, "k")
    await FD.apply(event("sla.breached"), None, [], MAPPING, creds(fd), client, "k")
    cc_note, breach = fd.notes[35436]
    assert cc_note["notify_emails"] == heads and cc_note["private"] and "head@example.com" in cc_note["body"]
    assert breach["notify_emails"] == [] and "SLA breached" in breach["body"]
    applied = await FD.apply(event("ticket.resolved"), None, [], MAPPING, creds(fd), client, "k")
    assert applied.calls == ["PUT /api/v2/tickets/35436 200"] and fd.tickets[35436]["status"] == 4
    closing = MAPPING.model_copy(update={"resolved_status": "closed"})
    await FD.apply(event("ticket.resolved"), None, [], closing, creds(fd), client, "k")
    assert fd.tickets[35436]["status"] == 5


async def test_tickets_from_elsewhere_are_skipped(fd: FakeFreshdesk, client: Any) -> None:
    for ticket_id in ("JSM-SUP-1", "FD-abc"):
        applied = await FD.apply(event("sla.breached", ticket_id=ticket_id), None, [], MAPPING, creds(fd), client, "k")
        assert applied.calls == [] and "not opened from Freshdesk" in (applied.skipped or "")
    assert fd.requests == []


async def test_rate_limit_gives_retry_after(fd: FakeFreshdesk, client: Any) -> None:
    fd.rate_limit_next(1, retry_after=30)
    with pytest.raises(HelpdeskError) as limited:
        await FD.apply(event("ticket.resolved"), None, [], MAPPING, creds(fd), client, "k")
    assert (limited.value.status, limited.value.permanent, limited.value.retry_after) == (429, False, 30.0)
    await FD.apply(event("ticket.resolved"), None, [], MAPPING, creds(fd), client, "k")
    assert fd.tickets[35436]["status"] == 4


async def test_errors_permanent_or_transient_never_the_key(fd: FakeFreshdesk, client: Any) -> None:
    with pytest.raises(HelpdeskError, match="You have to be logged in") as unauthorized:
        await FD.apply(event("sla.breached"), None, [], MAPPING, creds(fd, key="wrong-key"), client, "k")
    assert unauthorized.value.permanent and unauthorized.value.status == 401
    assert "wrong-key" not in str(unauthorized.value) and "fd-api-key" not in str(unauthorized.value)
    data = {"to": {"agent": "bob", "queue": "billing-t1"}}  # bob is 32: no such agent there
    with pytest.raises(HelpdeskError, match="responder_id: There is no agent") as invalid:
        await FD.apply(event("ticket.reassigned", data=data), None, [], MAPPING, creds(fd), client, "k")
    assert invalid.value.permanent and invalid.value.status == 400
    with pytest.raises(HelpdeskError) as missing:
        await FD.apply(event("sla.breached", ticket_id="FD-999"), None, [], MAPPING, creds(fd), client, "k")
    assert missing.value.permanent and missing.value.status == 404
    fd.down = True
    with pytest.raises(HelpdeskError) as down:
        await FD.apply(event("sla.breached"), None, [], MAPPING, creds(fd), client, "k")
    assert not down.value.permanent and down.value.status == 503
    with pytest.raises(HelpdeskError) as unreachable:
        await FD.apply(event("sla.breached"), None, [], MAPPING, creds(None), client, "k")
    assert not unreachable.value.permanent and unreachable.value.status is None


# ---------------------------------------------------------------------- check and setup
async def test_check_answers_in_one_line(fd: FakeFreshdesk, client: Any) -> None:
    bad = await FD.check(MAPPING, creds(fd, key="nope"), client)
    assert not bad.ok and bad.message.startswith("bad credentials") and "nope" not in bad.message
    del fd.groups[8]
    missing = await FD.check(MAPPING, creds(fd), client)
    assert (
        not missing.ok and missing.message == "queue 'billing-t2': no Freshdesk group 8" and missing.own_user == "1001"
    )
    fd.add_group(8, "Billing T2")
    good = await FD.check(MAPPING, creds(fd), client)
    assert (
        good.ok
        and good.own_user == "1001"
        and good.message == "ok: signed in as api@example.com; 2 mapped groups found"
    )
    assert all("\n" not in c.message for c in (bad, missing, good))
    me, groups = ["GET /api/v2/agents/me"], ["GET /api/v2/groups/7", "GET /api/v2/groups/8"]
    assert fd.calls("GET") == me + me + groups + me + groups


def test_setup_text_gives_the_rule() -> None:
    text = FD.setup_text(MAPPING, "https://esc.example.com/helpdesks/freshdesk")
    for needle in ("https://esc.example.com/helpdesks/freshdesk", "POST", SECRET_HEADER, "Trigger webhook",
                   "{{triggered_event}}", "Ticket Updates", "1001"):  # fmt: skip
        assert needle in text
    assert json.loads(RULE_BODY)["ticket"]["id"] == "{{ticket.id}}"  # the body to paste is JSON


def test_the_same_change_made_again_a_minute_later_is_a_new_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """Freshdesk sends no event id: an identical body (pending, replied, pending again) is one event
    within the minute (a replay, a retry) and a new one after it."""
    raw = rendered("{status:{from:2,to:3}}")
    headers = {SECRET_HEADER: SECRET}
    monkeypatch.setattr("time.time", lambda: 1_800_000_000.0)
    first = FD.verify(raw, headers, creds(), 300)
    monkeypatch.setattr("time.time", lambda: 1_800_000_030.0)
    assert FD.verify(raw, headers, creds(), 300) == first
    monkeypatch.setattr("time.time", lambda: 1_800_000_075.0)
    assert FD.verify(raw, headers, creds(), 300) != first
