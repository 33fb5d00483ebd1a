"""An idempotency key sent again with another body is refused (422 naming the key), not answered
200 as if that body had been applied (it was not: the first body was). Same key, same body: still
the status and nothing applied, also after continue-as-new (the fingerprints are carried).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.testing import WorkflowEnvironment

from api.client import TicketClient, keyed_update_id
from tests.apiserver import Api, new_ticket, running_api
from tests.helpers import AGENT
from tests.test_machine import Run
from workflows.decision_types import Action
from workflows.models import Escalate, Resolve, State


def test_the_machine_refuses_a_key_again_with_another_body_and_keeps_the_first() -> None:
    run = Run()
    first = run.send(
        Action("change_priority", {"actor": AGENT, "priority": "urgent", "reason": "r"}, key="k1", digest="a" * 16)
    )
    assert first.refusal is None and run.state.priority.value == "urgent"
    same = run.send(
        Action("change_priority", {"actor": AGENT, "priority": "urgent", "reason": "r"}, key="k1", digest="a" * 16)
    )
    assert same.duplicate and same.refusal is None
    other = run.send(
        Action("change_priority", {"actor": AGENT, "priority": "low", "reason": "r"}, key="k1", digest="b" * 16)
    )
    assert other.refusal is not None and other.refusal.field == "idempotency_key"
    assert run.state.priority.value == "urgent" and run.state.refused == 1
    assert run.state.applied_digests == {"k1": "a" * 16}
    # A key applied before fingerprints existed (a running ticket) is answered as before: a repeat.
    run.send(Action("acknowledge", {"actor": AGENT}, key="old"))
    again = run.send(Action("acknowledge", {"actor": AGENT, "note": "x"}, key="old", digest="c" * 16))
    assert again.duplicate and again.refusal is None and "old" not in run.state.applied_digests
    # Bounded with the keys: the digests of keys pushed out go with them.
    for i in range(70):
        run.send(
            Action(
                "change_priority",
                {"actor": AGENT, "priority": ["low", "high"][i % 2], "reason": "r"},
                key=f"n{i}",
                digest=f"{i:016x}",
            )
        )
    assert set(run.state.applied_digests) <= set(run.state.applied_keys) and "k1" not in run.state.applied_digests


def test_the_update_id_carries_the_body_fingerprint_after_the_key() -> None:
    body = Resolve(actor=AGENT, resolution="refunded")
    update_id = keyed_update_id("resolve", "K#1", body)
    assert update_id.startswith("resolve:K#1#sha256:") and len(update_id) == len("resolve:K#1#sha256:") + 16
    assert update_id == keyed_update_id("resolve", "K#1", Resolve.model_validate(body.model_dump()))
    assert update_id != keyed_update_id("resolve", "K#1", Resolve(actor=AGENT, resolution="refunded!"))
    # A default spelled out is the same body (and a field added later with a default changes nothing).
    escalate = {"actor": AGENT, "kind": "hierarchical", "reason": "r"}
    assert keyed_update_id("escalate", "k", Escalate.model_validate(escalate)) == keyed_update_id(
        "escalate", "k", Escalate.model_validate(escalate | {"to_tier": None, "department": None})
    )


@pytest.fixture(scope="module")
async def api(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    keys = {"helpdesk": ["system", "agent", "lead", "manager", "auditor"]}
    async with running_api(dev_env.client, tmp_path_factory.mktemp("idem"), keys) as running:
        yield running


async def test_a_key_reused_with_another_body_is_a_422_and_applies_nothing(
    api: Api, dev_env: WorkflowEnvironment
) -> None:
    tid = f"IB-{uuid.uuid4().hex[:8]}"
    agent = {"id": "ann", "role": "agent"}
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex[:6]}"}
    async with api.client("helpdesk") as http:
        assert (await http.post("/tickets", json=new_ticket(ticket_id=tid))).status_code == 201
        escalate = {"actor": agent, "kind": "functional", "department": "billing", "reason": "card issue"}
        first = await http.post(f"/tickets/{tid}/escalate", json=escalate, headers=key)
        assert first.status_code == 200 and first.json()["department"] == "billing", first.text
        again = await http.post(f"/tickets/{tid}/escalate", json=escalate, headers=key)
        assert again.status_code == 200 and again.json()["escalation_count"] == 1
        other = escalate | {"department": "support", "reason": "wrong team"}
        refused = await http.post(f"/tickets/{tid}/escalate", json=other, headers=key)
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
        status = (await http.get(f"/tickets/{tid}")).json()
        assert status["department"] == "billing" and status["escalation_count"] == 1
        assert status["state"] == State.open.value and status["refused_actions"] == 1
    timeline = await TicketClient(dev_env.client, api.settings.task_queue).timeline(tid)
    rejected = [e for e in timeline.events if e.kind == "action_rejected"]
    assert [e.detail["field"] for e in rejected] == ["idempotency_key"]
