"""A ticket opened "in the future" through the API or a helpdesk webhook is refused naming
`opened_at`: its SLA clocks start at `opened_at`, so it would not breach or escalate before then
(a ticket dated 2199 answered status but stayed silent for 173 years). Backdated openings and a
few minutes of clock skew are accepted."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment

from tests.apiserver import Api, new_ticket, running_api
from tests.test_api_hostile import post_hook, signed
from workflows.models import OPENED_AT_SKEW, Ticket, TicketRequest


def test_the_edge_refuses_a_future_opening_and_the_workflow_input_does_not_judge_it() -> None:
    now = datetime.now(UTC)
    body = new_ticket()
    for later in (OPENED_AT_SKEW + timedelta(minutes=1), timedelta(days=365 * 173)):
        with pytest.raises(ValidationError) as refused:
            TicketRequest.model_validate(body | {"opened_at": (now + later).isoformat()})
        assert refused.value.errors()[0]["loc"] == ("opened_at",)
        assert "future" in refused.value.errors()[0]["msg"]
        Ticket.model_validate(body | {"opened_at": (now + later).isoformat()})  # running tickets: unchanged
    for fine in (now + timedelta(minutes=1), now - timedelta(days=400), datetime(2000, 1, 1, tzinfo=UTC)):
        assert TicketRequest.model_validate(body | {"opened_at": fine.isoformat()}).opened_at == fine


@pytest.fixture(scope="module")
async def api(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running_api(dev_env.client, tmp_path_factory.mktemp("future"), {"helpdesk": ["system"]}) as running:
        yield running


async def test_the_api_and_webhooks_answer_422_naming_opened_at(api: Api) -> None:
    future = "2199-12-31T23:59:59+00:00"
    async with api.client("helpdesk") as http:
        answer = await http.post("/tickets", json=new_ticket(opened_at=future))
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "opened_at"]
    body = json.dumps(
        {"type": "ticket.created", "data": new_ticket(ticket_id=f"F-{uuid.uuid4().hex[:6]}", opened_at=future)}
    )
    hook = await post_hook(api, body, signed(body))
    assert hook.status_code == 422 and hook.json()["detail"][0]["loc"] == ["body", "data", "opened_at"]
