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

The decisions live in `workflows/machine.py` (state changes) and in pure modules (clock, sla,
routing, guards, notices); this file is the Temporal surface: handlers, queries and the loop. It is
kept small on purpose: the sandbox re-executes it for every ticket.
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
        Acknowledge,
        ChangePriority,
        ConfirmSolved,
        CustomerReplied,
        DecideApproval,
        Escalate,
        PendingCustomer,
        Reassign,
        Reopen,
        RequestApproval,
        Resolve,
        Ticket,
        TicketStatus,
        TicketSummary,
        Timeline,
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

    # Each action is a signal and an update with the same name and payload (the contract).
    @workflow.signal(name="acknowledge")
    async def acknowledge_signal(self, a: Acknowledge) -> None:
        await self._signal("acknowledge", a)

    @workflow.update(name="acknowledge")
    async def acknowledge(self, a: Acknowledge) -> TicketStatus:
        return await self._update("acknowledge", a)

    @acknowledge.validator
    def _v_acknowledge(self, a: Acknowledge) -> None:
        self._validate("acknowledge", a)

    @workflow.signal(name="reassign")
    async def reassign_signal(self, a: Reassign) -> None:
        await self._signal("reassign", a)

    @workflow.update(name="reassign")
    async def reassign(self, a: Reassign) -> TicketStatus:
        return await self._update("reassign", a)

    @reassign.validator
    def _v_reassign(self, a: Reassign) -> None:
        self._validate("reassign", a)

    @workflow.signal(name="escalate")
    async def escalate_signal(self, a: Escalate) -> None:
        await self._signal("escalate", a)

    @workflow.update(name="escalate")
    async def escalate(self, a: Escalate) -> TicketStatus:
        return await self._update("escalate", a)

    @escalate.validator
    def _v_escalate(self, a: Escalate) -> None:
        self._validate("escalate", a)

    @workflow.signal(name="pending_customer")
    async def pending_customer_signal(self, a: PendingCustomer) -> None:
        await self._signal("pending_customer", a)

    @workflow.update(name="pending_customer")
    async def pending_customer(self, a: PendingCustomer) -> TicketStatus:
        return await self._update("pending_customer", a)

    @pending_customer.validator
    def _v_pending_customer(self, a: PendingCustomer) -> None:
        self._validate("pending_customer", a)

    @workflow.signal(name="customer_replied")
    async def customer_replied_signal(self, a: CustomerReplied) -> None:
        await self._signal("customer_replied", a)

    @workflow.update(name="customer_replied")
    async def customer_replied(self, a: CustomerReplied) -> TicketStatus:
        return await self._update("customer_replied", a)

    @customer_replied.validator
    def _v_customer_replied(self, a: CustomerReplied) -> None:
        self._validate("customer_replied", a)

    @workflow.signal(name="confirm_solved")
    async def confirm_solved_signal(self, a: ConfirmSolved) -> None:
        await self._signal("confirm_solved", a)

    @workflow.update(name="confirm_solved")
    async def confirm_solved(self, a: ConfirmSolved) -> TicketStatus:
        return await self._update("confirm_solved", a)

    @confirm_solved.validator
    def _v_confirm_solved(self, a: ConfirmSolved) -> None:
        self._validate("confirm_solved", a)

    @workflow.signal(name="change_priority")
    async def change_priority_signal(self, a: ChangePriority) -> None:
        await self._signal("change_priority", a)

    @workflow.update(name="change_priority")
    async def change_priority(self, a: ChangePriority) -> TicketStatus:
        return await self._update("change_priority", a)

    @change_priority.validator
    def _v_change_priority(self, a: ChangePriority) -> None:
        self._validate("change_priority", a)

    @workflow.signal(name="resolve")
    async def resolve_signal(self, a: Resolve) -> None:
        await self._signal("resolve", a)

    @workflow.update(name="resolve")
    async def resolve(self, a: Resolve) -> TicketStatus:
        return await self._update("resolve", a)

    @resolve.validator
    def _v_resolve(self, a: Resolve) -> None:
        self._validate("resolve", a)

    @workflow.signal(name="reopen")
    async def reopen_signal(self, a: Reopen) -> None:
        await self._signal("reopen", a)

    @workflow.update(name="reopen")
    async def reopen(self, a: Reopen) -> TicketStatus:
        return await self._update("reopen", a)

    @reopen.validator
    def _v_reopen(self, a: Reopen) -> None:
        self._validate("reopen", a)

    @workflow.signal(name="request_approval")
    async def request_approval_signal(self, a: RequestApproval) -> None:
        await self._signal("request_approval", a)

    @workflow.update(name="request_approval")
    async def request_approval(self, a: RequestApproval) -> TicketStatus:
        return await self._update("request_approval", a)

    @request_approval.validator
    def _v_request_approval(self, a: RequestApproval) -> None:
        self._validate("request_approval", a)

    @workflow.signal(name="decide_approval")
    async def decide_approval_signal(self, a: DecideApproval) -> None:
        await self._signal("decide_approval", a)

    @workflow.update(name="decide_approval")
    async def decide_approval(self, a: DecideApproval) -> TicketStatus:
        return await self._update("decide_approval", a)

    @decide_approval.validator
    def _v_decide_approval(self, a: DecideApproval) -> None:
        self._validate("decide_approval", a)

    # ------------------------------------------------------------------ queries
    @workflow.query(name="status")
    def status(self) -> TicketStatus:
        return self.current_status()

    @workflow.query(name="timeline")
    def timeline(self) -> Timeline:
        return self.current_timeline()
