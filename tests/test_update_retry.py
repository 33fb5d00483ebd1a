"""An action whose update is not answered within one try (`api.retries.UPDATE_TRY`: here no worker
polls for 15 s) is sent again under the same update id and applied exactly once when a worker
comes: one escalation, one `escalated` row, one outbound `ticket.escalated`, and the caller gets
the status (not a 503) within the API's timeout."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.client import TicketClient
from api.retries import UPDATE_TRY
from tests.apiserver import new_ticket, running_api
from workers.worker import build_worker

ALL = ["system", "agent", "lead", "manager", "auditor"]


async def test_an_update_retried_while_no_worker_polls_is_applied_once(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with running_api(
        dev_env.client, tmp_path, {"helpdesk": ALL}, worker=False, api_temporal_timeout_seconds=90
    ) as api:
        tid = f"UR-{uuid.uuid4().hex[:8]}"
        lead = {"id": "lee", "role": "lead"}
        async with httpx.AsyncClient() as outbound:
            worker = build_worker(dev_env.client, api.settings, outbound)
            running = asyncio.create_task(worker.run())
            async with api.client("helpdesk") as http:
                http.timeout = 120
                assert (await http.post("/tickets", json=new_ticket(ticket_id=tid))).status_code == 201
                assert (await http.get(f"/tickets/{tid}")).status_code == 200  # opened: its policy is loaded
                await worker.shutdown()
                await running
                escalate = {"actor": lead, "kind": "hierarchical", "reason": "needs a specialist"}
                sent = asyncio.create_task(http.post(f"/tickets/{tid}/escalate", json=escalate))
                await asyncio.sleep(UPDATE_TRY.total_seconds() + 1)  # at least one try timed out
                assert not sent.done()
                worker = build_worker(dev_env.client, api.settings, outbound)
                running = asyncio.create_task(worker.run())
                try:
                    answer = await sent
                    assert answer.status_code == 200, answer.text
                    assert answer.json()["escalation_count"] == 1 and answer.json()["tier"] == 2
                    for _ in range(100):
                        if api.receiver.events("ticket.escalated"):
                            break
                        await asyncio.sleep(0.2)
                    await asyncio.sleep(2)
                    timeline = await TicketClient(dev_env.client, api.settings.task_queue).timeline(tid)
                    status = (await http.get(f"/tickets/{tid}")).json()
                finally:
                    await worker.shutdown()
                    await running
    assert status["escalation_count"] == 1 and status["tier"] == 2
    assert [e.kind for e in timeline.events].count("escalated") == 1
    assert len(api.receiver.events("ticket.escalated")) == 1


async def test_an_action_the_api_stopped_waiting_for_says_how_to_retry_and_a_keyed_retry_applies_once(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with running_api(
        dev_env.client, tmp_path, {"helpdesk": ALL}, worker=False, api_temporal_timeout_seconds=3
    ) as api:
        tid = f"UT-{uuid.uuid4().hex[:8]}"
        escalate = {"actor": {"id": "lee", "role": "lead"}, "kind": "hierarchical", "reason": "needs a specialist"}
        key = {"Idempotency-Key": "esc-1"}
        async with httpx.AsyncClient() as outbound:
            worker = build_worker(dev_env.client, api.settings, outbound)
            running = asyncio.create_task(worker.run())
            async with api.client("helpdesk") as http:
                assert (await http.post("/tickets", json=new_ticket(ticket_id=tid))).status_code == 201
                assert (await http.get(f"/tickets/{tid}")).status_code == 200
                await worker.shutdown()
                await running
                late = await http.post(f"/tickets/{tid}/escalate", json=escalate, headers=key)
                assert late.status_code == 503 and late.headers["retry-after"] == "5", late.text
                assert "may still be applied" in late.text and "same Idempotency-Key" in late.text
                unkeyed = await http.post(f"/tickets/{tid}/acknowledge", json={"actor": {"id": "a", "role": "agent"}})
                assert unkeyed.status_code == 503 and "may apply it twice" in unkeyed.text
                worker = build_worker(dev_env.client, api.settings, outbound)
                running = asyncio.create_task(worker.run())
                try:
                    api.settings.api_temporal_timeout_seconds = 60  # the retry may wait for the worker
                    retried = await http.post(f"/tickets/{tid}/escalate", json=escalate, headers=key)
                    for _ in range(50):  # the unkeyed acknowledge the API gave up on is applied too
                        status = (await http.get(f"/tickets/{tid}")).json()
                        if status["assignee"] == "a":
                            break
                        await asyncio.sleep(0.2)
                finally:
                    await worker.shutdown()
                    await running
    assert retried.status_code == 200, retried.text
    assert retried.json()["escalation_count"] == 1
    assert status["escalation_count"] == 1 and status["assignee"] == "a"


class _FailingTask:
    """A ticket handle whose server answers "Workflow Task in failed state" `failures` times (as
    Temporal does just after a worker restart), then the status; it records every update id sent."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.ids: list[str] = []

    async def execute_update(self, action: str, body: object, **kwargs: object) -> object:

        self.ids.append(str(kwargs["id"]))
        if len(self.ids) <= self.failures:
            raise RPCError("Workflow Task in failed state.", RPCStatusCode.FAILED_PRECONDITION, b"")
        return "status"


async def test_a_failing_workflow_task_is_waited_out_under_one_update_id(monkeypatch: object) -> None:
    """Sent again with back-off under the same update id while the ticket's task fails; applied when
    it recovers. A task that keeps failing past `STALLED_SECONDS` ends in `TicketStalled` (an
    UNAVAILABLE answer: the API's 503 with Retry-After, the CLI's exit 1), saying nothing was applied."""
    import pytest

    import api.client as client_module
    from api.retries import TicketStalled

    lead = {"id": "lee", "role": "lead"}
    tickets = TicketClient(None, "tq")  # type: ignore[arg-type]
    recovering = _FailingTask(failures=3)
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(tickets, "handle", lambda _tid: recovering)
        answer: object = await tickets.act("T-1", "acknowledge", {"actor": lead}, key="k-1")
        assert answer == "status"
        assert len(recovering.ids) == 4 and len(set(recovering.ids)) == 1

        stuck = _FailingTask(failures=10_000)
        mp.setattr(tickets, "handle", lambda _tid: stuck)
        mp.setattr(client_module, "STALLED_SECONDS", 1.0)
        with pytest.raises(TicketStalled, match="not applied: send it again with the same key") as raised:
            await tickets.act("T-1", "acknowledge", {"actor": lead}, key="k-2")
        assert raised.value.update_id == stuck.ids[0] and len(set(stuck.ids)) == 1 and len(stuck.ids) >= 2
    finally:
        mp.undo()


class _BusyQueries:
    """A handle whose server answers the first `busy` queries RESOURCE_EXHAUSTED, as Temporal does
    once its buffer of queries waiting for a ticket's running task is full."""

    def __init__(self, busy: int) -> None:
        self.busy, self.calls = busy, 0

    async def query(self, name: str, **_kwargs: object) -> str:
        self.calls += 1
        if self.calls <= self.busy:
            raise RPCError("consistent query buffer is full", RPCStatusCode.RESOURCE_EXHAUSTED, b"")
        return name


async def test_a_query_the_server_is_too_busy_for_is_sent_again() -> None:
    """Ten GETs of one ticket while its actions run: the server buffers one query per running task
    and answers the rest "busy"; each is sent again with back-off instead of answering 503."""
    import pytest

    import api.retries as retries

    handle = _BusyQueries(busy=4)
    assert await retries.query_patiently(handle, "status", str) == "status"  # type: ignore[arg-type]
    assert handle.calls == 5
    always = _BusyQueries(busy=10_000)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(retries, "QUERY_BUSY_TRIES", 5)
        with pytest.raises(RPCError, match="buffer is full"):
            await retries.query_patiently(always, "status", str)  # type: ignore[arg-type]
    assert always.calls == 6
