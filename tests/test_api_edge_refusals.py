"""A malformed action the HTTP API refuses at its edge (422, before the ticket sees it) is recorded
on the ticket's timeline, like the CLI's and the update validator's refusals: a `refused` row with
the field, `via: api`, the key as actor. Never for a request without a valid key, never a ticket
started by it. Real uvicorn, real worker, dev server.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.webhooks import sign_headers
from tests.apiserver import INBOUND_SECRET, Api, new_ticket, running_api
from workflows.models import workflow_id_for

KEYS = {"ann": ["agent"], "mia": ["auditor"], "helpdesk": ["system", "agent", "lead", "manager"]}


@pytest.fixture(scope="module")
async def api(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running_api(dev_env.client, tmp_path_factory.mktemp("edge"), KEYS) as running:
        yield running


async def refused_rows(http: httpx.AsyncClient, ticket_id: str, count: int) -> list[dict[str, Any]]:
    """The ticket's `refused` rows, once there are `count` (a report is a signal: the ticket records
    it at its next workflow task, so poll, gently)."""
    rows: list[dict[str, Any]] = []
    for _ in range(150):
        answer = await http.get(f"/tickets/{ticket_id}/timeline", params={"source": "state"})
        assert answer.status_code == 200, answer.text
        rows = [e for e in answer.json()["events"] if e["kind"] == "refused"]
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.2)
    raise AssertionError(f"expected {count} refused rows, found {rows}")


async def test_a_malformed_action_gets_422_naming_the_field_and_a_refused_row(api: Api) -> None:
    body = new_ticket()
    tid = body["ticket_id"]
    sideways = {"actor": {"id": "ann", "role": "agent"}, "kind": "sideways", "reason": "x"}
    async with api.client("helpdesk") as http:
        assert (await http.post("/tickets", json=body)).status_code == 201
        before = (await http.get(f"/tickets/{tid}")).json()
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as anonymous:  # no key: 401, nothing recorded
        assert (await anonymous.post(f"/tickets/{tid}/escalate", json=sideways)).status_code == 401
    async with api.client("mia") as http:  # a key that does not serve the route: 403, nothing recorded
        assert (await http.post(f"/tickets/{tid}/escalate", json=sideways)).status_code == 403
    async with api.client("ann") as http:
        refused = await http.post(f"/tickets/{tid}/escalate", json=sideways)
        # The body claims someone else: the row names the key that sent it, not the claim.
        claimed = await http.post(
            f"/tickets/{tid}/acknowledge", json={"actor": {"id": "bob", "role": "manager"}, "x": 1}
        )
    assert refused.status_code == 422
    assert [e["loc"] for e in refused.json()["detail"]] == [["body", "kind"]]
    assert claimed.status_code == 422 and ["body", "x"] in [e["loc"] for e in claimed.json()["detail"]]

    async with api.client("helpdesk") as http:
        rows = await refused_rows(http, tid, 2)
        after = (await http.get(f"/tickets/{tid}")).json()
    first, second = sorted(rows, key=lambda r: r["detail"]["action"], reverse=True)
    assert first["actor"] == "agent:ann" and first["detail"]["action"] == "escalate"
    assert first["detail"]["field"] == "kind" and first["detail"]["via"] == "api"
    assert "sideways" not in json.dumps(first) and first["detail"]["reason"]  # the reason, not the input
    assert second["actor"] == "agent:ann" and second["detail"]["action"] == "acknowledge"
    assert second["detail"]["field"] == "x" and second["detail"]["via"] == "api"
    assert len(rows) == 2  # the 401 and the 403 wrote nothing
    # Recorded, nothing else: no state change, no count of the ticket's own refusals.
    assert (after["state"], after["tier"], after["refused_actions"]) == (
        before["state"],
        before["tier"],
        before["refused_actions"],
    )


async def test_a_malformed_webhook_action_is_recorded_too(api: Api) -> None:
    body = new_ticket()
    tid = body["ticket_id"]
    async with api.client("helpdesk") as http:
        assert (await http.post("/tickets", json=body)).status_code == 201
    event = json.dumps(
        {"type": "ticket.action", "data": {"ticket_id": tid, "action": "pending_customer", "payload": {"note": 7}}}
    )
    headers = sign_headers(INBOUND_SECRET, f"msg_{uuid.uuid4().hex}", event)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        answer = await http.post("/webhooks/helpdesk", content=event, headers=headers)
    assert answer.status_code == 422
    assert any(e["loc"][-1] == "actor" for e in answer.json()["detail"])
    async with api.client("helpdesk") as http:
        (row,) = await refused_rows(http, tid, 1)
    assert row["detail"]["action"] == "pending_customer" and row["detail"]["via"] == "api"
    assert row["detail"]["field"] in ("actor", "note")


async def test_a_malformed_action_on_no_ticket_gets_its_4xx_and_starts_nothing(
    api: Api, dev_env: WorkflowEnvironment
) -> None:
    tid = f"NOPE-{uuid.uuid4().hex[:8]}"
    async with api.client("ann") as http:
        refused = await http.post(f"/tickets/{tid}/escalate", json={"actor": {"id": "ann", "role": "agent"}})
        well_formed = await http.post(f"/tickets/{tid}/acknowledge", json={"actor": {"id": "ann", "role": "agent"}})
    assert refused.status_code == 422 and ["body", "kind"] in [e["loc"] for e in refused.json()["detail"]]
    assert well_formed.status_code == 404
    # The report went out after the answer; give it time to reach Temporal (or not), then look.
    await asyncio.sleep(3)
    async with api.client("helpdesk") as http:
        assert (await http.get(f"/tickets/{tid}")).status_code == 404
    with pytest.raises(RPCError) as missing:
        await dev_env.client.get_workflow_handle(workflow_id_for(tid)).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND
