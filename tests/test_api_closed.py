"""Tickets whose workflow has closed, through the HTTP API, inbound webhooks and the CLI.

An action on a closed ticket is refused as such (409, CLI exit 3), not answered "no such ticket"
(the ticket exists: its status and timeline still answer). A ticket whose workflow closed before
it opened (it failed on invalid input sent by a raw Temporal start) answers `status` at once with
409 naming how it closed, not a 503 "is a worker running?" after the API's whole timeout.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from tests.apiserver import Api, new_ticket, running_api
from tests.test_api_hostile import post_hook, signed
from tests.test_cli import cli
from workflows.models import WORKFLOW_TYPE, workflow_id_for

AGENT = {"id": "ann", "role": "agent"}


@pytest.fixture(scope="module")
async def api(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    keys = {"helpdesk": ["system", "agent", "lead", "manager", "auditor"], "ann": ["agent"]}
    # A long timeout: a ticket that cannot answer must say so at once, not when the API gives up.
    async with running_api(
        dev_env.client, tmp_path_factory.mktemp("closed"), keys, api_temporal_timeout_seconds=60
    ) as running:
        yield running


async def test_an_action_on_a_closed_ticket_is_refused_as_closed_not_missing(
    api: Api, dev_env: WorkflowEnvironment
) -> None:
    tid = f"CL-{uuid.uuid4().hex[:8]}"
    async with api.client("helpdesk") as http:
        assert (await http.post("/tickets", json=new_ticket(ticket_id=tid))).status_code == 201
        assert (await http.get(f"/tickets/{tid}")).status_code == 200
        await dev_env.client.get_workflow_handle(workflow_id_for(tid)).terminate("test: closed ticket")

        answer = await http.post(f"/tickets/{tid}/acknowledge", json={"actor": AGENT})
        assert answer.status_code == 409, answer.text
        assert "closed" in answer.text and "terminated" in answer.text
        assert (await http.get(f"/tickets/{tid}")).status_code == 200  # it still answers
        missing = await http.post(f"/tickets/NOPE-{uuid.uuid4().hex[:8]}/acknowledge", json={"actor": AGENT})
        assert missing.status_code == 404

        event = {
            "type": "ticket.action",
            "data": {"ticket_id": tid, "action": "acknowledge", "payload": {"actor": AGENT}},
        }
        body = json.dumps(event)
        hook = await post_hook(api, body, signed(body))
        assert hook.status_code == 409, hook.text

    code, _, err = await cli_for(api, dev_env, "act", tid, "acknowledge", json.dumps({"actor": AGENT}))
    assert code == 3 and err.startswith("error: acknowledge refused: state: the ticket is closed"), err
    code, _, err = await cli_for(api, dev_env, "act", tid, "acknowledge", json.dumps({"actor": AGENT}), "--signal")
    assert code == 3 and "closed" in err and "terminated" in err, err
    # A signal has no id: a key with it would be ignored, and a retry applied twice.
    code, _, err = await cli_for(
        api, dev_env, "act", tid, "acknowledge", json.dumps({"actor": AGENT}), "--signal", "--idempotency-key", "k"
    )
    assert code == 2 and err.startswith("error: --idempotency-key:"), err


async def cli_for(api: Api, env: WorkflowEnvironment, *args: str) -> tuple[int, str, str]:
    return await cli(env, api.settings.task_queue, *args)


async def test_a_ticket_that_failed_before_opening_says_so_at_once(api: Api, dev_env: WorkflowEnvironment) -> None:
    tid = f"FO-{uuid.uuid4().hex[:8]}"
    raw: Any = {"ticket_id": tid}  # no subject, no customer: a raw start the API would have refused
    handle = await dev_env.client.start_workflow(
        WORKFLOW_TYPE, raw, id=workflow_id_for(tid), task_queue=api.settings.task_queue
    )
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    async with api.client("ann") as http:
        started = time.monotonic()
        answer = await http.get(f"/tickets/{tid}")
        took = time.monotonic() - started
    assert answer.status_code == 409, answer.text
    assert "failed" in answer.text
    assert took < 30, took  # not the API's whole timeout (60 s here)

    code, _, err = await cli_for(api, dev_env, "status", tid)
    assert code == 3 and "failed" in err, err
