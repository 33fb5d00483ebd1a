"""The Zendesk connector against Zendesk's documented payloads and a local Zendesk (tests/fakes/zendesk.py).

The event bodies are the documented examples of Zendesk's webhook ticket events reference (envelope
`{type, account_id, id, time, zendesk_event_version, subject, detail, event}`), ids adjusted; they are
signed as Zendesk signs: base64(HMAC-SHA256(secret, timestamp + body)), with the test secret Zendesk
documents for webhooks not yet created.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from activities.helpdesks.base import Connector, HelpdeskError, InboundInvalid, InboundRefused
from activities.helpdesks.zendesk import EVENT_TYPES, Zendesk
from config.helpdesk_schema import HelpdeskMapping
from config.settings import EndpointSettings
from tests.fakes.zendesk import FakeZendesk
from workflows.messages import OutboundEvent, Person
from workflows.models import ACTIONS, TicketRequest

SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="  # Zendesk's documented test signing secret
API_USER = 900001
ALICE, BOB = "8447388090495", "8447388090496"  # agents there
BILLING_T1, BILLING_T2 = 8447320466430, 8447320466431  # groups there
ZD = Zendesk()
MAPPING = HelpdeskMapping(
    kind="zendesk",
    queues={"billing-t1": str(BILLING_T1), "billing-t2": str(BILLING_T2)},
    agents={"alice": ALICE, "bob": BOB},
    categories={"problem": "technical", "refund": "billing"},
    segment_tags={"8447346622462": "enterprise"},
    own_user=str(API_USER),
)

# The documented ticket.created example.
CREATED: dict[str, Any] = {
    "account_id": 22129848,
    "detail": {
        "actor_id": ALICE,
        "assignee_id": ALICE,
        "brand_id": "8447346621310",
        "created_at": "2025-01-08T10:12:07Z",
        "custom_status": "8447320465790",
        "description": "Customer is experiencing login issues with the mobile app",
        "external_id": None,
        "form_id": "8646151517822",
        "group_id": str(BILLING_T1),
        "id": "5158",
        "is_public": True,
        "organization_id": "8447346622462",
        "priority": "HIGH",
        "requester_id": "8447388090494",
        "status": "OPEN",
        "subject": "Cannot login to mobile app",
        "submitter_id": "8447388090494",
        "tags": ["mobile", "login"],
        "type": "PROBLEM",
        "updated_at": "2025-01-08T10:12:07Z",
        "via": {"channel": "web_service"},
    },
    "event": {},
    "id": "cbe4028c-7239-495d-b020-f22348516046",
    "subject": "zen:ticket:5158",
    "time": "2025-01-08T10:12:07.672717030Z",
    "type": "zen:event-type:ticket.created",
    "zendesk_event_version": "2022-11-06",
}


def change(kind: str, event: dict[str, Any], actor: str | None = ALICE) -> dict[str, Any]:
    """A documented change event: the same ticket detail, this event type and `event` object."""
    body = copy.deepcopy(CREATED)
    body |= {"type": f"zen:event-type:ticket.{kind}", "id": f"evt-{kind}", "event": event}
    body["detail"]["actor_id"] = actor
    return body


def signed(
    body: dict[str, Any] | bytes, *, secret: str = SECRET, at: datetime | None = None
) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stamp = (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    mac = base64.b64encode(hmac.new(secret.encode(), stamp.encode() + raw, hashlib.sha256).digest()).decode()
    return raw, {"X-Zendesk-Webhook-Signature": mac, "X-Zendesk-Webhook-Signature-Timestamp": stamp}


def creds(url: str = "http://127.0.0.1:9", token: str = "zd-api-token-0001") -> EndpointSettings:
    return EndpointSettings.model_validate(
        {"url": url, "username": "escalations@example.com", "token": token, "secret": SECRET, "timeout_seconds": 5}
    )


def outbound(type_: str, ticket_id: str = "ZD-5158", **fields: Any) -> OutboundEvent:
    values: dict[str, Any] = {
        "id": "msg_ticket-ZD-5158_abc_3",
        "type": type_,
        "occurred_at": datetime(2026, 3, 2, 9, tzinfo=UTC),
        "ticket_id": ticket_id,
        "workflow_id": f"ticket-{ticket_id}",
        "tier": 2,
        "department": "billing",
        "priority": "urgent",
        "rule": "ladders.resolution[1]",
        "reason": "resolution SLA breached",
    }
    return OutboundEvent.model_validate(values | fields)


@pytest.fixture
def zendesk() -> Iterator[FakeZendesk]:
    with FakeZendesk() as fake:
        fake.add_group(BILLING_T1, "Billing T1")
        fake.add_group(BILLING_T2, "Billing T2")
        fake.add_user(int(ALICE), "alice@example.com")
        fake.add_user(int(BOB), "bob@example.com")
        fake.add_ticket(5158, assignee_id=int(ALICE), group_id=BILLING_T1)
        yield fake


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


def test_it_is_a_connector() -> None:
    connector: Connector = ZD
    assert connector.kind == "zendesk"


# --- verify -----------------------------------------------------------------------------------


def test_a_signed_fresh_event_is_verified_and_named_by_its_envelope_id() -> None:
    assert ZD.verify(*signed(CREATED), creds(), 300) == "cbe4028c-7239-495d-b020-f22348516046"
    raw, headers = signed(b"[1, 2]")  # authentic, but no envelope: `read` says what is wrong
    assert ZD.verify(raw, {k.lower(): v for k, v in headers.items()}, creds(), 300) == ""


@pytest.mark.parametrize(
    ("mangle", "why"),
    [
        (
            lambda raw, h: (
                raw,
                h | {"X-Zendesk-Webhook-Signature": signed(raw, secret="forged")[1]["X-Zendesk-Webhook-Signature"]},
            ),
            "does not match",
        ),
        (lambda raw, h: (raw.replace(b"5158", b"5159"), h), "does not match"),
        (
            lambda raw, h: (raw, {"X-Zendesk-Webhook-Signature-Timestamp": h["X-Zendesk-Webhook-Signature-Timestamp"]}),
            "missing X-Zendesk-Webhook-Signature header",
        ),
        (
            lambda raw, h: (raw, {"X-Zendesk-Webhook-Signature": h["X-Zendesk-Webhook-Signature"]}),
            "missing X-Zendesk-Webhook-Signature-Timestamp header",
        ),
        (lambda raw, h: (raw, h | {"X-Zendesk-Webhook-Signature": "not base64!"}), "not base64"),
        (lambda raw, h: signed(b'{"id": "\xff"}'), "not UTF-8"),
    ],
    ids=["forged", "changed-body", "no-signature", "no-timestamp", "bad-base64", "not-utf8"],
)
def test_unauthentic_requests_are_refused_in_one_line(mangle: Any, why: str) -> None:
    raw, headers = mangle(*signed(CREATED))
    with pytest.raises(InboundRefused, match=why) as refused:
        ZD.verify(raw, headers, creds(), 300)
    assert "\n" not in str(refused.value)


def test_a_stale_or_future_timestamp_is_refused() -> None:
    for skew in (timedelta(minutes=-10), timedelta(minutes=10)):
        with pytest.raises(InboundRefused, match="stale request"):
            ZD.verify(*signed(CREATED, at=datetime.now(UTC) + skew), creds(), 300)
    ZD.verify(*signed(CREATED, at=datetime.now(UTC) - timedelta(minutes=4)), creds(), 300)


# --- read -------------------------------------------------------------------------------------


def test_the_documented_created_event_opens_a_ticket() -> None:
    got = ZD.read(json.dumps(CREATED).encode(), MAPPING, "cbe4028c-7239-495d-b020-f22348516046")
    assert got.actions == [] and got.ignored is None and got.open is not None
    assert got.open == {
        "ticket_id": "ZD-5158",
        "subject": "Cannot login to mobile app",
        "description": "Customer is experiencing login issues with the mobile app",
        "channel": "web",  # web_service (the API) is the closest of ours
        "category": "technical",  # their type PROBLEM, through the mapping
        "priority": "high",
        "customer": {"id": "8447388090494", "segment": "enterprise"},  # by organization
        "opened_at": "2025-01-08T10:12:07+00:00",
        "source": "zendesk",
    }
    TicketRequest.model_validate(got.open)


def test_created_defaults_and_a_future_creation_is_clamped() -> None:
    body = copy.deepcopy(CREATED)
    future = datetime.now(UTC) + timedelta(days=2)
    body["detail"] |= {"created_at": future.isoformat(), "priority": None, "type": None, "tags": []}
    body["detail"] |= {"via": {"channel": "carrier_pigeon"}, "organization_id": None, "subject": ""}
    opened = ZD.read(json.dumps(body).encode(), MAPPING, "e1").open
    assert opened is not None
    assert (opened["channel"], opened["category"], opened["priority"]) == ("email", "general", "normal")
    assert opened["customer"]["segment"] == "standard"
    assert opened["subject"] == "Customer is experiencing login issues with the mobile app"
    assert datetime.fromisoformat(opened["opened_at"]) <= datetime.now(UTC)
    TicketRequest.model_validate(opened)


@pytest.mark.parametrize(
    ("kind", "event", "action", "payload"),
    [
        (
            "agent_assignment_changed",
            {"previous": int(ALICE), "current": int(BOB)},
            "reassign",
            {"to_agent": "bob", "reason": "assigned in Zendesk"},
        ),
        (
            "group_assignment_changed",
            {"previous": str(BILLING_T1), "current": str(BILLING_T2)},
            "reassign",
            {"to_queue": "billing-t2", "reason": f"moved to group {BILLING_T2} in Zendesk"},
        ),
        (
            "priority_changed",
            {"current": "URGENT", "previous": "HIGH"},
            "change_priority",
            {"priority": "urgent", "reason": "changed in Zendesk"},
        ),
        ("status_changed", {"current": "SOLVED", "previous": "OPEN"}, "resolve", {"resolution": "solved in Zendesk"}),
        ("status_changed", {"current": "CLOSED", "previous": "SOLVED"}, "resolve", {"resolution": "closed in Zendesk"}),
        ("status_changed", {"current": "PENDING", "previous": "OPEN"}, "pending_customer", {}),
        ("status_changed", {"current": "OPEN", "previous": "PENDING"}, "customer_replied", None),
        (
            "comment_added",
            {
                "comment": {
                    "id": "9876543210",
                    "body": "We are investigating this issue.",
                    "is_public": True,
                    "author": {"id": ALICE, "is_staff": True, "name": "Support Agent"},
                }
            },
            "acknowledge",
            {},
        ),
    ],
)
def test_documented_changes_become_actions_by_the_agent(
    kind: str, event: dict[str, Any], action: str, payload: dict[str, Any] | None
) -> None:
    got = ZD.read(json.dumps(change(kind, event)).encode(), MAPPING, f"evt-{kind}")
    assert got.ignored is None and got.open is None and len(got.actions) == 1
    act = got.actions[0]
    expected = {} if payload is None else {"actor": {"id": "alice", "role": "agent"}} | payload
    assert (act.ticket_id, act.action, act.payload, act.key) == ("ZD-5158", action, expected, f"evt-{kind}:0")
    ACTIONS[action].model_validate(act.payload)


def test_an_unlisted_agent_keeps_their_id_and_no_actor_is_the_system() -> None:
    got = ZD.read(json.dumps(change("priority_changed", {"current": "LOW"}, actor="123")).encode(), MAPPING, "e")
    assert got.actions[0].payload["actor"] == {"id": "123", "role": "agent"}
    got = ZD.read(json.dumps(change("priority_changed", {"current": "LOW"}, actor=None)).encode(), MAPPING, "e")
    assert got.actions[0].payload["actor"] == {"id": "zendesk", "role": "system"}


def test_echoes_of_our_own_changes_are_ignored() -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("group_assignment_changed", {"current": str(BILLING_T2)}),
        ("priority_changed", {"current": "URGENT"}),
        ("comment_added", {"comment": {"is_public": False, "author": {"id": str(API_USER), "is_staff": True}}}),
    ]
    for kind, event in cases:
        got = ZD.read(json.dumps(change(kind, event, actor=str(API_USER))).encode(), MAPPING, "e")
        assert got.actions == [] and got.open is None
        assert got.ignored is not None and got.ignored.startswith("our own change")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (change("group_assignment_changed", {"current": "404"}), "group 404 is not mapped"),
        (
            change("comment_added", {"comment": {"is_public": False, "author": {"id": ALICE, "is_staff": True}}}),
            "private note",
        ),
        (
            change(
                "comment_added", {"comment": {"is_public": True, "author": {"id": "8447388090494", "is_staff": False}}}
            ),
            "end user",
        ),
        (change("agent_assignment_changed", {"current": None}), "unassigned"),
        (change("status_changed", {"current": "HOLD", "previous": "OPEN"}), "means nothing here"),
        (change("tags_changed", {"current": ["vip"]}), "not an event this product uses"),
        (
            {"type": "zen:event-type:user.active_changed", "id": "2b24ef10", "detail": {}, "event": {}},
            "not an event this product uses",
        ),
    ],
)
def test_events_of_no_use_are_ignored_with_a_reason(body: dict[str, Any], why: str) -> None:
    got = ZD.read(json.dumps(body).encode(), MAPPING, "")
    assert got.actions == [] and got.open is None and got.ignored is not None and why in got.ignored


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"[]", "body"),
        (json.dumps({k: v for k, v in CREATED.items() if k != "id"}).encode(), "id"),
        (json.dumps({k: v for k, v in CREATED.items() if k != "detail"}).encode(), "detail"),
        (json.dumps(CREATED | {"detail": CREATED["detail"] | {"id": "abc"}}).encode(), "detail.id"),
        (json.dumps(CREATED | {"detail": CREATED["detail"] | {"requester_id": None}}).encode(), "detail.requester_id"),
        (
            json.dumps(CREATED | {"detail": CREATED["detail"] | {"created_at": "soon"}, "time": None}).encode(),
            "detail.created_at",
        ),
        (json.dumps(change("priority_changed", {})).encode(), "event.current"),
    ],
)
def test_bad_shapes_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(InboundInvalid) as invalid:
        ZD.read(body, MAPPING, "")
    assert invalid.value.field == field


# --- apply ------------------------------------------------------------------------------------


async def test_an_escalation_moves_the_group_sets_the_priority_and_leaves_a_private_note(
    zendesk: FakeZendesk, client: httpx.AsyncClient
) -> None:
    applied = await ZD.apply(outbound("ticket.escalated"), "billing-t2", [], MAPPING, creds(zendesk.url), client, "k1")
    assert applied.calls == ["PUT /api/v2/tickets/5158 200"] and applied.skipped is None
    ticket = zendesk.tickets[5158]
    assert (ticket["group_id"], ticket["assignee_id"], ticket["priority"]) == (BILLING_T2, None, "urgent")
    [note] = ticket["comments"]
    assert note["public"] is False and note["author_id"] == API_USER
    assert "resolution SLA breached" in note["body"] and "ladders.resolution[1]" in note["body"]
    assert note["body"].endswith("[escalations:k1]")
    [request] = zendesk.requests
    expected = base64.b64encode(b"escalations@example.com/token:zd-api-token-0001").decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.method == "PUT" and request.json()["ticket"]["comment"]["public"] is False


async def test_a_reassignment_to_an_agent_sets_the_assignee(zendesk: FakeZendesk, client: httpx.AsyncClient) -> None:
    event = outbound("ticket.reassigned", data={"to": {"agent": "bob", "queue": "billing-t1"}}, priority="low")
    await ZD.apply(event, "billing-t1", [], MAPPING, creds(zendesk.url), client, "k2")
    ticket = zendesk.tickets[5158]
    assert (ticket["group_id"], ticket["assignee_id"], ticket["priority"]) == (BILLING_T1, int(BOB), "low")


async def test_cc_breach_and_resolution(zendesk: FakeZendesk, client: httpx.AsyncClient) -> None:
    heads = ["dana@example.com", "erin@example.com"]
    cc = outbound("ticket.cc", cc=[Person(role="department_head", id="dana", email=heads[0])])
    await ZD.apply(cc, None, heads, MAPPING, creds(zendesk.url), client, "k3")
    assert zendesk.tickets[5158]["email_ccs"] == heads
    assert zendesk.requests[-1].json()["ticket"]["email_ccs"][0] == {"user_email": heads[0], "action": "put"}
    await ZD.apply(outbound("sla.breached"), "billing-t1", [], MAPPING, creds(zendesk.url), client, "k4")
    ticket = zendesk.tickets[5158]
    assert (ticket["status"], ticket["group_id"]) == ("open", BILLING_T1)  # a breach only leaves a note
    await ZD.apply(outbound("ticket.resolved"), None, [], MAPPING, creds(zendesk.url), client, "k5")
    assert ticket["status"] == "solved"
    assert [c["body"].rsplit("\n", 1)[-1] for c in ticket["comments"]] == [f"[escalations:k{i}]" for i in (3, 4, 5)]
    assert all(c["public"] is False for c in ticket["comments"])
    closing = MAPPING.model_copy(update={"resolved_status": "closed"})
    await ZD.apply(outbound("ticket.resolved"), None, [], closing, creds(zendesk.url), client, "k6")
    assert ticket["status"] == "closed"


async def test_what_is_not_zendesk_business_is_skipped(zendesk: FakeZendesk, client: httpx.AsyncClient) -> None:
    elsewhere = await ZD.apply(
        outbound("ticket.escalated", "T-1"), "billing-t2", [], MAPPING, creds(zendesk.url), client, "k"
    )
    assert elsewhere.calls == [] and elsewhere.skipped is not None and "T-1" in elsewhere.skipped
    warning = await ZD.apply(outbound("sla.warning"), None, [], MAPPING, creds(zendesk.url), client, "k")
    assert warning.skipped is not None
    nobody = await ZD.apply(outbound("ticket.cc"), None, [], MAPPING, creds(zendesk.url), client, "k")
    assert nobody.skipped is not None and zendesk.requests == []
    with pytest.raises(HelpdeskError, match="'billing-t9'") as unmapped:
        await ZD.apply(outbound("ticket.escalated"), "billing-t9", [], MAPPING, creds(zendesk.url), client, "k")
    assert unmapped.value.permanent and zendesk.requests == []


async def test_a_rate_limit_is_retried_after_what_zendesk_says(zendesk: FakeZendesk, client: httpx.AsyncClient) -> None:
    zendesk.rate_limit_next(1, retry_after=7)
    with pytest.raises(HelpdeskError) as limited:
        await ZD.apply(outbound("sla.breached"), None, [], MAPPING, creds(zendesk.url), client, "k")
    assert (limited.value.status, limited.value.permanent, limited.value.retry_after) == (429, False, 7.0)
    applied = await ZD.apply(outbound("sla.breached"), None, [], MAPPING, creds(zendesk.url), client, "k")
    assert applied.calls == ["PUT /api/v2/tickets/5158 200"]


async def test_failures_are_permanent_or_not_as_retrying_can_help(
    zendesk: FakeZendesk, client: httpx.AsyncClient
) -> None:
    with pytest.raises(HelpdeskError, match="Couldn't authenticate you") as denied:
        await ZD.apply(outbound("sla.breached"), None, [], MAPPING, creds(zendesk.url, "wrong-token"), client, "k")
    assert (denied.value.status, denied.value.permanent) == (401, True) and "wrong-token" not in str(denied.value)
    with pytest.raises(HelpdeskError, match="RecordNotFound") as missing:
        await ZD.apply(outbound("sla.breached", "ZD-999"), None, [], MAPPING, creds(zendesk.url), client, "k")
    assert (missing.value.status, missing.value.permanent) == (404, True)
    zendesk.down = True
    with pytest.raises(HelpdeskError) as down:
        await ZD.apply(outbound("sla.breached"), None, [], MAPPING, creds(zendesk.url), client, "k")
    assert (down.value.status, down.value.permanent) == (503, False)
    zendesk.stop()
    with pytest.raises(HelpdeskError) as refused:
        await ZD.apply(outbound("sla.breached"), None, [], MAPPING, creds(zendesk.url), client, "k")
    assert (refused.value.status, refused.value.permanent) == (None, False)
    assert zendesk.tickets[5158]["comments"] == []


# --- check and setup ---------------------------------------------------------------------------


async def test_check_answers_in_one_line(zendesk: FakeZendesk, client: httpx.AsyncClient) -> None:
    good = await ZD.check(MAPPING, creds(zendesk.url), client)
    assert good.ok and good.own_user == str(API_USER) and good.message.startswith("ok: escalations@example.com")
    assert "2 groups" in good.message
    bad_token = await ZD.check(MAPPING, creds(zendesk.url, "wrong-token"), client)
    assert not bad_token.ok and bad_token.message.startswith("bad credentials: Couldn't authenticate you")
    missing = MAPPING.model_copy(update={"queues": {**MAPPING.queues, "vip-t3": "360009"}})
    no_group = await ZD.check(missing, creds(zendesk.url), client)
    assert (no_group.ok, no_group.message) == (False, "group 360009 for queue vip-t3 not found")
    other = await ZD.check(MAPPING.model_copy(update={"own_user": "1"}), creds(zendesk.url), client)
    assert not other.ok and f"set own_user: {API_USER}" in other.message
    zendesk.stop()
    unreachable = await ZD.check(MAPPING, creds(zendesk.url), client)
    assert not unreachable.ok
    for answer in (good, bad_token, no_group, other, unreachable):
        assert "\n" not in answer.message and "zd-api-token" not in answer.message


def test_setup_text_says_what_to_paste() -> None:
    text = ZD.setup_text(MAPPING, "https://esc.example.com/helpdesks/zendesk")
    for needle in (
        "https://esc.example.com/helpdesks/zendesk",
        "POST",
        "JSON",
        "Signing secret",
        "`secret`",
        *EVENT_TYPES,
    ):
        assert needle in text
