"""The state machine's promises, on the real workflow: random action sequences on the time-skipping server.

Shorter sequences than `test_machine.py` (each step is a round trip to a real server), the same
invariants: no workflow task ever fails, `status` always answers, every action the ticket refuses
is on its timeline, the status's counts equal the timeline's, and an open, unpaused ticket always
has a future deadline or a top-tier reminder. Each example is one ticket, terminated at its end
(one running ticket at a time: the time-skipping server's clock serves them all).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.client import TicketClient
from tests.conftest import TEST_CONVERTER, make_settings, policy_doc
from tests.helpers import AGENT, LEAD, MANAGER, ticket
from tests.receiver import start_receiver
from workers.connection import binary, register_search_attributes
from workers.worker import build_worker
from workflows.models import State

T = TypeVar("T")
ACTORS = [AGENT, LEAD, MANAGER, {"id": "bot", "role": "system"}]
PAYLOADS: dict[str, list[dict[str, Any]]] = {
    "acknowledge": [{}],
    "reassign": [{"to_agent": "bob"}, {"to_queue": "billing-t1", "reason": "billing"}, {"to_agent": "x" * 3000}],
    "escalate": [
        {"kind": "hierarchical", "reason": "hard"},
        {"kind": "functional", "department": "technical", "reason": "a bug"},
        {"kind": "functional", "department": "astrology", "reason": "stars"},
        {"kind": "hierarchical", "reason": ""},
    ],
    "pending_customer": [{"note": "need details"}],
    "change_priority": [{"priority": "urgent", "reason": "angry"}, {"priority": 5, "reason": "x"}],
    "resolve": [{"resolution": "done"}, {"resolution": ""}],
    "reopen": [{"reason": "broke again"}],
    "request_approval": [{"kind": "refund", "amount": 900, "reason": "double charge"}],
    "decide_approval": [{"approval_id": "apr-1", "approved": True}],
    "redeliver": [{"reason": "retry"}],
}
NO_ACTOR: dict[str, list[dict[str, Any]]] = {"customer_replied": [{}, {"note": "here you go"}], "confirm_solved": [{}]}


class World:
    """One event loop, one time-skipping server and one worker for the whole test."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.env = self.run(
            WorkflowEnvironment.start_time_skipping(
                data_converter=TEST_CONVERTER,
                test_server_existing_path=str(binary("temporal-test-server")),
            )
        )
        self.run(register_search_attributes(self.env.client, "default"))
        policy = tmp / "policy.yaml"
        policy.write_text(yaml.safe_dump(policy_doc()))
        self.http = httpx.AsyncClient()
        self.task_queue = f"tq-{uuid.uuid4().hex[:8]}"
        self.receiver = start_receiver()
        settings_ = make_settings(policy, self.receiver)

        async def make_worker() -> Worker:  # the SDK builds a worker inside a running loop
            return build_worker(self.env.client, settings_, self.http, self.task_queue)

        self.worker = self.run(make_worker())
        self.worker_task = self.loop.create_task(self.worker.run())
        self.tickets = TicketClient(self.env.client, self.task_queue)
        self.steps = 0  # actions and waits sent, over all examples: the run did real work

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.worker.shutdown())
        self.run(self.http.aclose())
        self.run(self.env.shutdown())
        self.loop.close()
        self.receiver.server.shutdown()


class RealTicket(RuleBasedStateMachine):
    world: World
    opened = 0

    def __init__(self) -> None:
        super().__init__()
        self.tid = ""

    @initialize(kind=st.sampled_from(["default", "self_service", "vip_billing"]))
    def open(self, kind: str) -> None:
        fields: dict[str, Any] = {"ticket_id": f"S-{uuid.uuid4().hex[:8]}"}
        if kind == "self_service":
            fields |= {"category": "how-to", "channel": "web"}
        elif kind == "vip_billing":
            fields |= {"category": "billing", "customer": {"id": "c", "segment": "vip"}}
        self.tid = fields["ticket_id"]
        RealTicket.opened += 1
        self.world.run(self.world.tickets.open(ticket(**fields)))

    @rule(
        name=st.sampled_from(sorted(PAYLOADS)),
        pick=st.integers(0, 3),
        actor=st.sampled_from(ACTORS),
        as_signal=st.booleans(),
    )
    def act(self, name: str, pick: int, actor: dict[str, Any], as_signal: bool) -> None:
        options = PAYLOADS[name]
        self.send(name, {"actor": actor, **options[pick % len(options)]}, as_signal)

    @rule(name=st.sampled_from(sorted(NO_ACTOR)), pick=st.integers(0, 1), as_signal=st.booleans())
    def customer(self, name: str, pick: int, as_signal: bool) -> None:
        options = NO_ACTOR[name]
        self.send(name, options[pick % len(options)], as_signal)

    @rule(raw=st.sampled_from([None, [], "text", 5, b"\x00\xff"]), name=st.sampled_from(["acknowledge", "nope"]))
    def garbage_signal(self, raw: Any, name: str) -> None:
        handle = self.world.tickets.handle(self.tid)
        if raw is None:
            self.world.run(handle.signal(name))
        else:
            self.world.run(handle.signal(name, raw))
        self.settle()

    @rule(minutes=st.sampled_from([1, 30, 4 * 60, 26 * 60]))
    def wait(self, minutes: int) -> None:
        self.world.steps += 1
        self.world.run(self.world.env.sleep(timedelta(minutes=minutes)))

    def send(self, name: str, payload: dict[str, Any], as_signal: bool) -> None:
        self.world.steps += 1
        tickets = self.world.tickets
        if as_signal:
            self.world.run(tickets.handle(self.tid).signal(name, payload))
            self.settle()
            return
        try:
            self.world.run(tickets.handle(self.tid).execute_update(name, payload))
        except WorkflowUpdateFailedError as err:
            # Every refusal, by the payload check or by the ticket, is the same kind of answer.
            assert isinstance(err.cause, ApplicationError) and err.cause.type == "ActionRejected", err.cause
            assert err.cause.non_retryable
        except RPCError as err:  # a closed ticket (reopen window over) refuses updates at the server
            assert "already completed" in str(err).lower() or "not found" in str(err).lower(), err

    def settle(self) -> None:
        self.world.run(self.world.env.sleep(timedelta(seconds=1)))

    def closed(self) -> bool:
        # The raw call: the SDK's `describe()` fails to decode an unset datetime search attribute
        # from the time-skipping server.
        request = DescribeWorkflowExecutionRequest(
            namespace="default", execution=WorkflowExecution(workflow_id=f"ticket-{self.tid}")
        )
        answer = self.world.run(self.world.env.client.workflow_service.describe_workflow_execution(request))
        return answer.workflow_execution_info.status != WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING

    @invariant()
    def no_workflow_task_failed_and_status_answers(self) -> None:
        if not self.tid:
            return

        async def failed_tasks() -> list[str]:
            failures = []
            async for event in self.world.tickets.handle(self.tid).fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    failures.append(event.workflow_task_failed_event_attributes.failure.message)
            return failures

        assert self.world.run(failed_tasks()) == []
        if self.closed():
            return
        # A timer that fell due at the end of a skip may still be in progress: compare the timeline
        # with the status only when the status is the same before and after reading it.
        status = self.world.run(self.world.tickets.status(self.tid))
        timeline = self.world.run(self.world.tickets.timeline(self.tid)).events
        again = self.world.run(self.world.tickets.status(self.tid))
        assert status.internal_errors == 0
        if again.model_dump(exclude={"clocks"}) != status.model_dump(exclude={"clocks"}):
            return
        kinds = [e.kind for e in timeline]
        assert status.refused_actions == kinds.count("action_rejected")
        assert status.escalation_count == kinds.count("escalated")
        assert status.sla_breached == ("sla_breached" in kinds)
        if status.state in (State.open, State.acknowledged):
            running = [c for c in status.clocks if c.state == "running"]
            assert running, f"an open ticket with no running clock: {status}"

    def teardown(self) -> None:
        if self.tid and not self.closed():
            self.world.run(self.world.tickets.handle(self.tid).terminate("end of example"))


def test_random_actions_on_the_real_workflow(tmp_path: Path) -> None:
    world = World(tmp_path)
    RealTicket.world = world
    try:
        run_state_machine_as_test(
            RealTicket,
            settings=settings(
                max_examples=12,
                stateful_step_count=10,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
            ),
        )
        print(f"{world.steps} actions and waits on {RealTicket.opened} tickets")
        assert world.steps >= 20
    finally:
        world.close()
