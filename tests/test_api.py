"""The HTTP API against a real uvicorn server and a real dev server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.webhooks import sign_headers
from tests.apiserver import INBOUND_SECRET, Api, new_ticket, running_api


@pytest.fixture(scope="module")
async def api(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    keys = {"ann": ["agent"], "lee.lead": ["agent", "lead"], "helpdesk": ["system", "agent", "lead", "manager"]}
    async with running_api(dev_env.client, tmp_path_factory.mktemp("api"), keys) as running:
        yield running


async def test_opening_twice_gives_one_workflow(api: Api) -> None:
    body = new_ticket()
    async with api.client() as http:
        first = await http.post("/tickets", json=body)
        second = await http.post("/tickets", json=body)
        other = await http.post("/tickets", json={**body, "subject": "something else"})
        status = await http.get(f"/tickets/{body['ticket_id']}")
    assert (first.status_code, first.json()["created"]) == (201, True)
    assert (second.status_code, second.json()["created"], second.json()["same_body"]) == (200, False, True)
    # Another body under the same id attaches too, and says it was not the one the ticket runs with.
    assert (other.status_code, other.json()["created"], other.json()["same_body"]) == (200, False, False)
    assert first.json()["workflow_id"] == second.json()["workflow_id"] == f"ticket-{body['ticket_id']}"
    assert status.status_code == 200 and status.json()["department"] == "technical"


async def test_bad_payload_gives_422_naming_the_fields(api: Api) -> None:
    async with api.client() as http:
        response = await http.post("/tickets", json=new_ticket(priority="soon", subject=None))
    assert response.status_code == 422
    locations = {tuple(e["loc"]) for e in response.json()["detail"]}
    assert ("body", "priority") in locations and ("body", "subject") in locations


async def test_wrong_or_missing_key_gives_401(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as http:
        wrong = await http.get("/tickets", headers={"X-API-Key": "esc_guess"})
        missing = await http.post("/tickets", json=new_ticket())
        dev_key = await http.get("/tickets", headers={"Authorization": "Bearer dev-only-key"})
    assert wrong.status_code == missing.status_code == dev_key.status_code == 401


async def test_an_agent_cannot_claim_a_role_or_identity_it_lacks(api: Api) -> None:
    body = new_ticket()
    async with api.client() as http:
        await http.post("/tickets", json=body)
    async with api.client("ann") as http:
        as_manager = await http.post(
            f"/tickets/{body['ticket_id']}/acknowledge", json={"actor": {"id": "ann", "role": "manager"}}
        )
        as_someone_else = await http.post(
            f"/tickets/{body['ticket_id']}/acknowledge", json={"actor": {"id": "bob", "role": "agent"}}
        )
        as_herself = await http.post(
            f"/tickets/{body['ticket_id']}/acknowledge", json={"actor": {"id": "ann", "role": "agent"}}
        )
    assert as_manager.status_code == 403 and "may not act as role 'manager'" in as_manager.json()["detail"]
    assert as_someone_else.status_code == 403
    assert as_herself.status_code == 200 and as_herself.json()["state"] == "acknowledged"


async def test_an_action_retried_with_one_idempotency_key_is_applied_once(api: Api) -> None:
    body = new_ticket()
    tid = body["ticket_id"]
    escalate = {"actor": {"id": "lee.lead", "role": "lead"}, "kind": "hierarchical", "reason": "needs tier 2"}
    async with api.client() as http:
        await http.post("/tickets", json=body)
        first = await http.post(f"/tickets/{tid}/escalate", json=escalate, headers={"Idempotency-Key": "req-7"})
        retry = await http.post(f"/tickets/{tid}/escalate", json=escalate, headers={"Idempotency-Key": "req-7"})
        other = await http.post(f"/tickets/{tid}/escalate", json=escalate, headers={"Idempotency-Key": "req-8"})
    assert first.status_code == retry.status_code == other.status_code == 200
    assert first.json()["escalation_count"] == retry.json()["escalation_count"] == 1  # the retry applied nothing
    assert other.json()["escalation_count"] == 2 and other.json()["tier"] == 3


async def test_refused_actions_give_409_or_422_with_the_reason_and_change_nothing(api: Api) -> None:
    body = new_ticket()
    tid = body["ticket_id"]
    async with api.client() as http:
        await http.post("/tickets", json=body)
        before = (await http.get(f"/tickets/{tid}")).json()
        unknown = await http.post(
            f"/tickets/{tid}/escalate",
            json={
                "actor": {"id": "lee.lead", "role": "lead"},
                "kind": "functional",
                "department": "astrology",
                "reason": "stars",
            },
        )
        wrong_state = await http.post(
            f"/tickets/{tid}/reopen", json={"actor": {"id": "lee.lead", "role": "lead"}, "reason": "again"}
        )
        after = (await http.get(f"/tickets/{tid}")).json()
        missing = await http.get("/tickets/NOPE-1")
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "department"]
    assert "unknown department 'astrology'" in unknown.json()["detail"][0]["msg"]
    assert wrong_state.status_code == 409
    assert wrong_state.json()["detail"][0]["msg"] == "only a resolved ticket can be reopened"
    assert after.pop("refused_actions") == before.pop("refused_actions") + 2  # counted and recorded
    for status in (before, after):
        for clock in status["clocks"]:
            clock.pop("elapsed")
    assert before == after
    assert missing.status_code == 404


async def test_inbound_webhooks_refuse_forgeries_and_replays(api: Api) -> None:
    body = new_ticket()
    payload = json.dumps({"type": "ticket.created", "data": body})
    good = sign_headers(INBOUND_SECRET, "msg_in_1", payload)
    forged = sign_headers("whsec_" + "Zm9yZ2VkLXNlY3JldC1mb3ItdGVzdGluZy0xMjM0NTY=", "msg_in_2", payload)
    stale = sign_headers(INBOUND_SECRET, "msg_in_3", payload, now=datetime.now(UTC) - timedelta(minutes=10))
    async with httpx.AsyncClient(base_url=api.url) as http:
        forged_answer = await http.post("/webhooks/helpdesk", content=payload, headers=forged)
        stale_answer = await http.post("/webhooks/helpdesk", content=payload, headers=stale)
        good_answer = await http.post("/webhooks/helpdesk", content=payload, headers=good)
    assert forged_answer.status_code == 401 and "signature" in forged_answer.json()["detail"]
    assert stale_answer.status_code == 401
    assert good_answer.status_code == 202 and good_answer.json()["created"] is True

    action = json.dumps(
        {
            "type": "ticket.action",
            "data": {"ticket_id": body["ticket_id"], "action": "customer_replied", "payload": {"note": "more detail"}},
        }
    )
    unknown = json.dumps({"type": "ticket.action", "data": {"ticket_id": "NOPE-9", "action": "customer_replied"}})
    async with httpx.AsyncClient(base_url=api.url) as http:
        sent = await http.post(
            "/webhooks/helpdesk", content=action, headers=sign_headers(INBOUND_SECRET, "msg_in_4", action)
        )
        missing = await http.post(
            "/webhooks/helpdesk", content=unknown, headers=sign_headers(INBOUND_SECRET, "msg_in_5", unknown)
        )
    assert sent.status_code == 202 and missing.status_code == 404


async def test_list_and_search_paged(api: Api) -> None:
    category = f"cat{uuid.uuid4().hex[:6]}"
    async with api.client() as http:
        for _ in range(3):
            await http.post("/tickets", json=new_ticket(category=category))
        for _ in range(200):  # visibility is eventually consistent: page once all three are indexed
            if len((await http.get("/tickets", params={"category": category})).json()["tickets"]) == 3:
                break
            await asyncio.sleep(0.1)
        by_category: dict[str, str | int] = {"category": category, "department": "support", "page_size": 2}
        page = (await http.get("/tickets", params=by_category)).json()
        second = (await http.get("/tickets", params=by_category | {"page_token": page["next_page_token"]})).json()
        bad = await http.get("/tickets", params={"tier": 99})
        soon = datetime.now(UTC) + timedelta(days=2)
        params: dict[str, str | int] = {
            "category": category,
            "channel": "web",
            "min_escalations": 0,
            "deadline_before": soon.isoformat(),
        }
        for _ in range(100):  # visibility is eventually consistent: wait until all three are indexed
            filtered = (await http.get("/tickets", params=params)).json()
            if len(filtered["tickets"]) == 3:
                break
            await asyncio.sleep(0.1)
        naive = await http.get("/tickets", params={"deadline_before": "2030-01-01T00:00:00"})
    assert len(page["tickets"]) == 2 and second["tickets"]
    assert {t["ticket_id"] for t in page["tickets"]}.isdisjoint({t["ticket_id"] for t in second["tickets"]})
    assert all(t["department"] == "support" for t in page["tickets"] + second["tickets"])
    assert bad.status_code == 422 and naive.status_code == 422
    assert len(filtered["tickets"]) == 3 and {t["department"] for t in filtered["tickets"]} == {"support"}
