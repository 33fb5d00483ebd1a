"""Idempotency keys and webhook ids outlive continue-as-new (a dev server that suggests it every
20 history events): after the ticket continued as new, the same key with the same body applies
nothing (200, the status), with another body is refused (422), and a replayed helpdesk webhook is
refused (401) by an API process that never saw it, as before the new run; a request the ticket
refused is answered with the same refusal, recorded once."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from tests.apiserver import new_ticket, running_api
from tests.conftest import start_dev_server
from tests.test_api_hostile import post_hook, signed

ALL = ["system", "agent", "lead", "manager", "auditor"]


async def test_keys_and_webhook_ids_are_remembered_across_continue_as_new(tmp_path: Path) -> None:
    env = await start_dev_server(20)
    try:
        async with running_api(env.client, tmp_path / "a", {"helpdesk": ALL}) as api:
            tid = f"KR-{uuid.uuid4().hex[:8]}"
            agent = {"id": "ann", "role": "agent"}
            key = {"Idempotency-Key": "k-escalate"}
            escalate = {"actor": {"id": "lee", "role": "lead"}, "kind": "hierarchical", "reason": "needs a specialist"}
            hook_event = json.dumps(
                {
                    "type": "ticket.action",
                    "data": {"ticket_id": tid, "action": "acknowledge", "payload": {"actor": agent}},
                }
            )
            hook_id = f"msg_{uuid.uuid4().hex}"
            async with api.client("helpdesk") as http:
                opened = await http.post("/tickets", json=new_ticket(ticket_id=tid))
                assert opened.status_code == 201
                first_run = (await env.client.get_workflow_handle(f"ticket-{tid}").describe()).run_id
                assert (await post_hook(api, hook_event, signed(hook_event, hook_id))).status_code == 202
                first = await http.post(f"/tickets/{tid}/escalate", json=escalate, headers=key)
                assert first.status_code == 200 and first.json()["escalation_count"] == 1, first.text
                # Refused (an agent, too soon in the tier): the same request again gets the same answer.
                too_soon = {"actor": agent, "kind": "hierarchical", "reason": "impatient"}
                refused_key = {"Idempotency-Key": "k-too-soon"}
                refused = await http.post(f"/tickets/{tid}/escalate", json=too_soon, headers=refused_key)
                assert refused.status_code == 422, refused.text
                for i in range(4):  # enough history for the server to suggest continue-as-new
                    await http.post(f"/tickets/{tid}/pending_customer", json={"actor": agent, "note": f"ask {i}"})
                    await http.post(f"/tickets/{tid}/customer_replied", json={"note": f"reply {i}"})
                for _ in range(150):
                    described = await env.client.get_workflow_handle(f"ticket-{tid}").describe()
                    if described.run_id != first_run:
                        break
                    await asyncio.sleep(0.2)
                assert described.run_id != first_run, "the ticket did not continue as new"

                again = await http.post(f"/tickets/{tid}/escalate", json=escalate, headers=key)
                assert again.status_code == 200 and again.json()["escalation_count"] == 1, again.text
                other = await http.post(f"/tickets/{tid}/escalate", json=escalate | {"reason": "other"}, headers=key)
                assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
                # In the new run the refused request is answered as before, not judged (nor recorded) again.
                again_refused = await http.post(f"/tickets/{tid}/escalate", json=too_soon, headers=refused_key)
                assert again_refused.status_code == 422 and again_refused.json() == refused.json()

            # Another API process (a replica, or this one restarted) has not seen the webhook id.
            async with running_api(
                env.client, tmp_path / "b", {"helpdesk": ALL}, worker=False, task_queue=api.settings.task_queue
            ) as replica:
                replay = await post_hook(replica, hook_event, signed(hook_event, hook_id))
                assert replay.status_code == 401, replay.text
                async with replica.client("helpdesk") as http:
                    status = (await http.get(f"/tickets/{tid}")).json()
            assert status["escalation_count"] == 1 and status["refused_actions"] == 2  # too soon once, the key's misuse
    finally:
        await env.shutdown()
