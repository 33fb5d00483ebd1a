"""Hostile input to the HTTP API on real uvicorn and a real dev server: forged, garbled and
replayed webhooks (401), oversized fields (422 naming the field) and bodies (413), bodies no JSON
encoder can carry, tampered page tokens (400), a Temporal server that cannot be reached (503), a
history holding a binary payload, and a carried state smuggled into a raw start."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.webhooks import sign_headers
from api.server import PageTokens
from tests.apiserver import INBOUND_SECRET, Api, free_port, new_ticket, running_api
from tests.conftest import start_dev_server
from workflows.models import workflow_id_for

KEYS = {"helpdesk": ["system"], "ann": ["agent"], "mia": ["manager"]}


@pytest.fixture(scope="module")
async def api(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running_api(dev_env.client, tmp_path_factory.mktemp("hostile"), KEYS) as running:
        yield running


def signed(payload: str, webhook_id: str | None = None, **kw: Any) -> dict[str, str]:
    return sign_headers(INBOUND_SECRET, webhook_id or f"msg_{uuid.uuid4().hex}", payload, **kw)


def signed_bytes(body: bytes) -> dict[str, str]:
    """A valid signature over raw bytes (sign_headers takes text; this body is not UTF-8)."""
    webhook_id, stamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
    key = base64.b64decode(INBOUND_SECRET.removeprefix("whsec_"))
    mac = hmac.digest(key, f"{webhook_id}.{stamp}.".encode() + body, "sha256")
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": stamp,
        "webhook-signature": f"v1,{base64.b64encode(mac).decode()}",
    }


async def post_hook(api: Api, body: str | bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        return await http.post("/webhooks/helpdesk", content=body, headers=headers)


async def test_every_webhook_verification_failure_is_a_401_with_its_reason(api: Api) -> None:
    payload = json.dumps({"type": "ticket.created", "data": new_ticket()})
    good = signed(payload)
    cases: dict[str, tuple[bytes | str, dict[str, str]]] = {
        "garbage signature": (payload, good | {"webhook-signature": "garbage"}),
        "garbage v1 signature": (payload, good | {"webhook-signature": "v1,%%%not-base64"}),
        "empty signature": (payload, good | {"webhook-signature": ""}),
        "no headers": (payload, {"content-type": "application/json"}),
        "timestamp not a number": (payload, good | {"webhook-timestamp": "yesterday"}),
        "timestamp huge": (payload, good | {"webhook-timestamp": "9" * 40}),
        "stale timestamp": (payload, signed(payload, now=datetime.now(UTC) - timedelta(minutes=10))),
        "non-UTF-8 body": (b'{"type": "ticket.created", "data": {"subject": "\xff\xfe"}}', {}),
        "id too long": (payload, signed(payload, webhook_id="m" * 300)),
    }
    raw = cases["non-UTF-8 body"][0]
    assert isinstance(raw, bytes)
    cases["non-UTF-8 body"] = (raw, signed_bytes(raw))
    answers = {name: await post_hook(api, body, headers) for name, (body, headers) in cases.items()}
    wrong = {n: (a.status_code, a.text) for n, a in answers.items() if a.status_code != 401}
    assert not wrong
    assert "not UTF-8" in answers["non-UTF-8 body"].json()["detail"]
    assert "does not match" in answers["garbage signature"].json()["detail"]
    assert "missing header" in answers["no headers"].json()["detail"]


async def test_a_replayed_webhook_id_is_refused_also_by_another_api_process(
    api: Api, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ticket = new_ticket()
    created = json.dumps({"type": "ticket.created", "data": ticket})
    headers = signed(created)
    first = await post_hook(api, created, headers)
    replay = await post_hook(api, created, headers)
    assert first.status_code == 202 and first.json()["created"] is True
    assert replay.status_code == 401 and "already received" in replay.json()["detail"]

    action = json.dumps(
        {
            "type": "ticket.action",
            "data": {"ticket_id": ticket["ticket_id"], "action": "customer_replied", "payload": {"note": "hi"}},
        }
    )
    action_headers = signed(action)
    sent = await post_hook(api, action, action_headers)
    assert sent.status_code == 202, sent.text
    # A second API process (a replica, or this one after a restart) knows nothing in memory:
    # Temporal remembers the webhook's update id.
    async with running_api(dev_env.client, tmp_path, KEYS, worker=False, task_queue=api.settings.task_queue) as other:
        again = await post_hook(other, action, action_headers)
    assert again.status_code == 401 and "already received" in again.json()["detail"]
    async with api.client("ann") as http:
        timeline = (await http.get(f"/tickets/{ticket['ticket_id']}/timeline", params={"source": "state"})).json()
    assert sum(1 for e in timeline["events"] if e["kind"] == "customer_replied") <= 1


async def test_webhook_bodies_that_verify_but_are_wrong_get_422_without_echoing_them(api: Api) -> None:
    lone = '{"type": "ticket.created", "data": {"ticket_id": "X-1", "subject": "\\ud800", "customer": {"id": "c"}}}'
    smuggled = json.dumps({"type": "ticket.created", "data": new_ticket() | {"carried": {"policy": {}}}})
    for body in (lone, smuggled, "not json", '{"type": "ticket.created", "data": {"amount": 1e400}}'):
        answer = await post_hook(api, body, signed(body))
        assert answer.status_code == 422, (body, answer.text)
    # A ticket id no ticket can have (a lone surrogate was answered "webhook-id already received").
    for ticket_id in ('"\\ud800"', '"T-1\\u0000"', '"a/b"', '""', '"' + "x" * 201 + '"', "7"):
        body = '{"type": "ticket.action", "data": {"ticket_id": ' + ticket_id + ', "action": "customer_replied"}}'
        answer = await post_hook(api, body, signed(body))
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "data", "ticket_id"], (
            body,
            answer.text,
        )


async def test_oversized_fields_get_422_naming_the_field(api: Api) -> None:
    tid = new_ticket()["ticket_id"]
    async with api.client() as system, api.client("ann") as agent:
        opened = await system.post("/tickets", json=new_ticket(ticket_id=tid))
        assert opened.status_code == 201
        cases = {
            ("body", "subject"): await system.post("/tickets", json=new_ticket(subject="s" * 501)),
            ("body", "description"): await system.post("/tickets", json=new_ticket(description="d" * 20_001)),
            ("body", "metadata"): await system.post("/tickets", json=new_ticket(metadata={"k": "v" * 17_000})),
            ("body", "customer", "name"): await system.post(
                "/tickets", json=new_ticket(customer={"id": "c", "name": "n" * 201})
            ),
            ("body", "ticket_id"): await system.post("/tickets", json=new_ticket(ticket_id="t" * 201)),
            ("body", "opened_at"): await system.post(
                "/tickets", json=new_ticket(opened_at="0001-01-01T00:00:00+23:59")
            ),
            ("body", "note"): await agent.post(
                f"/tickets/{tid}/acknowledge", json={"actor": {"id": "ann", "role": "agent"}, "note": "n" * 10_001}
            ),
            ("body", "reason"): await agent.post(
                f"/tickets/{tid}/escalate",
                json={"actor": {"id": "ann", "role": "agent"}, "kind": "hierarchical", "reason": "r" * 2_001},
            ),
            ("header", "idempotency-key"): await agent.post(
                f"/tickets/{tid}/acknowledge",
                json={"actor": {"id": "ann", "role": "agent"}},
                headers={"Idempotency-Key": "k" * 201},
            ),
            ("path", "ticket_id"): await agent.get(f"/tickets/{'t' * 201}"),
        }
    for loc, answer in cases.items():
        assert answer.status_code == 422, (loc, answer.text)
        locs = [tuple(e["loc"]) for e in answer.json()["detail"]]
        assert loc in locs, (loc, locs)
        assert len(answer.content) < 4_000  # the refused value is not echoed whole


async def test_bodies_no_encoder_can_carry_never_give_a_500(api: Api) -> None:
    async with api.client() as http:
        url = "/tickets"
        answers = {
            "5 MB body": await http.post(
                url, content=b"{" + b" " * 5_000_000 + b"}", headers={"content-type": "application/json"}
            ),
            "megabyte string": await http.post(url, json=new_ticket(description="x" * 1_100_000)),
            "lone surrogate": await http.post(
                url,
                content=b'{"ticket_id": "S-1", "subject": "\\udc80", "customer": {"id": "c"}}',
                headers={"content-type": "application/json"},
            ),
            "1e400": await http.post(
                f"/tickets/{uuid.uuid4().hex}/request_approval",
                content=b'{"actor": {"id": "x", "role": "system"}, "kind": "refund", "amount": 1e400}',
                headers={"content-type": "application/json"},
            ),
            "NaN": await http.post(url, content=b'{"subject": NaN}', headers={"content-type": "application/json"}),
            "not JSON": await http.post(url, content=b"\x00\xff garbage", headers={"content-type": "application/json"}),
            "wrong content type": await http.post(url, content=b"subject=x", headers={"content-type": "text/plain"}),
            "form": await http.post(url, data={"subject": "x"}),
            "deep": await http.post(
                url, content=b"[" * 50_000 + b"]" * 50_000, headers={"content-type": "application/json"}
            ),
            "huge int": await http.post(
                url, content=b'{"ticket_id": ' + b"9" * 5000 + b"}", headers={"content-type": "application/json"}
            ),
            "no body": await http.post(url),
        }
    codes = {name: a.status_code for name, a in answers.items()}
    assert codes == {
        "5 MB body": 413,
        "megabyte string": 413,
        "lone surrogate": 422,
        "1e400": 422,
        "NaN": 422,
        "not JSON": 422,
        "wrong content type": 415,
        "form": 415,
        "deep": 422,
        "huge int": 422,
        "no body": 422,
    }, {n: (a.status_code, a.text[:200]) for n, a in answers.items()}
    assert answers["1e400"].json()["detail"][0]["msg"].startswith("number 1e400 is out of range")


async def test_a_tampered_page_token_is_a_400(api: Api) -> None:
    forged = PageTokens("some other key").seal(b"anything")
    async with api.client("ann") as http:
        answers = [await http.get("/tickets", params={"page_token": t}) for t in (forged, "garbage!", "QUFB", "")]
    assert [a.status_code for a in answers[:3]] == [400, 400, 400]
    assert answers[3].status_code == 200


async def test_a_ticket_whose_history_holds_a_binary_payload_still_exports(
    api: Api, dev_env: WorkflowEnvironment
) -> None:
    ticket = new_ticket()
    async with api.client() as system, api.client("mia") as reader:
        assert (await system.post("/tickets", json=ticket)).status_code == 201
        handle = dev_env.client.get_workflow_handle(workflow_id_for(ticket["ticket_id"]))
        await handle.signal("acknowledge", b"\x00\xff\xfe binary")
        await handle.signal("customer_replied", "\udcff".encode("utf-8", "surrogatepass"))
        answers = [
            await reader.get(f"/tickets/{ticket['ticket_id']}/timeline", params={"format": f, "source": s})
            for f in ("json", "csv", "md")
            for s in ("history", "state")
        ]
        status = await reader.get(f"/tickets/{ticket['ticket_id']}")
    assert [a.status_code for a in answers] == [200] * 6, [a.text[:300] for a in answers]
    assert status.status_code == 200 and status.json()["refused_actions"] >= 1


async def down_answers(api: Api) -> list[httpx.Response]:
    async with api.client() as system, api.client("ann") as agent:
        return list(
            await asyncio.gather(
                system.post("/tickets", json=new_ticket()),
                agent.get("/tickets"),
                agent.get("/tickets/T-1"),
                agent.get("/tickets/T-1/timeline"),
                agent.post("/tickets/T-1/acknowledge", json={"actor": {"id": "ann", "role": "agent"}}),
            )
        )


async def test_temporal_down_is_a_503_not_a_500(tmp_path: Path) -> None:
    # Never reachable (a lazy client: the first call fails to connect) ...
    nowhere = await Client.connect(f"127.0.0.1:{free_port()}", data_converter=pydantic_data_converter, lazy=True)
    async with running_api(nowhere, tmp_path / "a", KEYS, worker=False) as api:
        never = await down_answers(api)
    # ... and a server that goes away under a connected API.
    env = await start_dev_server(200)
    async with running_api(env.client, tmp_path / "b", KEYS, worker=False) as api:
        async with api.client("ann") as agent:
            assert (await agent.get("/tickets")).status_code == 200
        await env.shutdown()
        gone = await down_answers(api)
    for answer in never + gone:
        assert answer.status_code == 503, answer.text
        assert answer.headers.get("retry-after")


async def test_a_carried_state_from_outside_is_ignored_and_recorded(api: Api, dev_env: WorkflowEnvironment) -> None:
    ticket = new_ticket()
    evil = {
        "policy": {
            "version": "evil",
            "fingerprint": "x",
            "document": {"notifications": {"endpoints": [{"name": "exfil", "url": "http://203.0.113.9/steal"}]}},
        },
        "state": {"tier": 4},
        "runs": 7,
    }
    for n, second in enumerate((evil, "garbage", 42)):
        tid = f"{ticket['ticket_id']}-{n}"
        await dev_env.client.start_workflow(
            "TicketEscalation",
            args=[ticket | {"ticket_id": tid}, second],
            id=workflow_id_for(tid),
            task_queue=api.settings.task_queue,
        )
        async with api.client("mia") as http:
            status = await http.get(f"/tickets/{tid}")
            timeline = await http.get(f"/tickets/{tid}/timeline", params={"source": "state"})
        assert status.status_code == 200, status.text
        assert "evil" not in status.json()["policy_version"] and status.json()["tier"] != 4
        kinds = [e["kind"] for e in timeline.json()["events"]]
        assert "carried_state_refused" in kinds, kinds
