"""`TicketEscalation`: one support ticket as a durable Temporal workflow.

Read top to bottom:
  1. `run` loads the policy (a local activity, so the version is frozen in history), routes the
     ticket, then loops: sleep until the nearest SLA step or until an action arrives, fire what is due.
  2. Agent actions arrive as signals or updates of the same name. Both go through the same guard
     (`workflows.guards`); an update is refused by its validator, a refused signal is recorded on
     the timeline. Accepted actions change state at once and queue side effects.
  3. Side effects (webhooks, helpdesk reassignment) run as activities in the background, so a slow
     receiver never delays a deadline; their outcome lands on the timeline.
  4. Once resolved, the ticket waits out the policy's reopen window, then returns its summary.

The decisions, and the contract's signal/update/query handlers, live in `workflows/machine.py`
(imported once per worker through passthrough; this class inherits them), the arithmetic in pure
modules (clock, sla, routing, guards, notices). This file is the workflow definition and its main
loop, kept small on purpose: the sandbox re-executes it for every ticket.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.models import LoadPolicyInput, PolicySnapshot
    from workflows.machine import POLICY_OPTIONS, TicketMachine
    from workflows.models import (
        WORKFLOW_TYPE,
        Ticket,
        TicketSummary,
    )


@workflow.defn(name=WORKFLOW_TYPE)
class TicketEscalation(TicketMachine):
    @workflow.init
    def __init__(self, ticket: Ticket) -> None:
        super().__init__(ticket)

    # ------------------------------------------------------------------ main loop
    @workflow.run
    async def run(self, ticket: Ticket) -> TicketSummary:
        if self._snap is None:
            await self._load_policy_and_open()
        else:
            self._publish()

        while not self._finished():
            if workflow.info().is_continue_as_new_suggested() and not self._effects:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._ticket.model_copy(update={"carried_state": self.snap}))
            due = self._next_due()
            timeout = None if due is None else max(due[0] - workflow.now(), timedelta(milliseconds=1))
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._woken, timeout=timeout, timeout_summary=due[1] if due else None
                )
            self._woken = False
            self._fire_due()

        await workflow.wait_condition(lambda: not self._effects and workflow.all_handlers_finished())
        return self._summary()

    async def _load_policy_and_open(self) -> None:
        # A local activity: its result (the policy and its version) is recorded in history as a
        # marker, without a round trip through a task queue. A method of its own so that the raw
        # snapshot does not stay alive in `run`'s frame for the ticket's whole life.
        snapshot: PolicySnapshot = await workflow.execute_local_activity(
            "load_policy",
            LoadPolicyInput(opened_at=self._ticket.opened_at or workflow.now()),
            result_type=PolicySnapshot,
            **POLICY_OPTIONS,
        )
        self._open(snapshot)
