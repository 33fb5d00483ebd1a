"""`TicketEscalation`: one support ticket as a durable Temporal workflow.

Read top to bottom:
  1. `run` loads the policy (a local activity, so the version is frozen in history) and opens the
     ticket, then loops: start the outbox's due deliveries, sleep until the nearest SLA step, retry
     or action, and let the decision function handle whatever is due.
  2. Agent actions arrive as signals or updates of the same name (handlers in `ticket_handlers.py`).
  3. When history grows long, the ticket continues as new with its carried state (never the
     timeline), once no handler and no delivery is in flight.
  4. Once resolved, its reopen window over and its notices settled, it returns its summary.

What the ticket does in each state is `workflows/transitions.py` (the table) and
`workflows/decisions.py` (the decision function), no Temporal in them. This file and the classes
it builds on (`ticket_core.py`, `ticket_store_sync.py`, `ticket_effects.py`, `ticket_handlers.py`,
with the views in `ticket_views.py`) only apply decisions and run effects. Kept small on purpose:
the sandbox re-executes this module for every ticket.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

# By full name: `from workflows import timers` would load the module through the package's
# attribute lookup, past the sandbox's passthrough, and so execute it again for every ticket.
with workflow.unsafe.imports_passed_through():
    import workflows.timers as timers
    from workflows.decision_types import Tick
    from workflows.models import WORKFLOW_TYPE, Ticket, TicketSummary
    from workflows.ticket_handlers import TicketHandlers


@workflow.defn(name=WORKFLOW_TYPE)
class TicketEscalation(TicketHandlers):
    @workflow.init
    def __init__(self, ticket: Ticket | dict[str, Any], carried: Any = None) -> None:
        super().__init__(ticket, carried)

    @workflow.run
    async def run(self, ticket: Ticket | dict[str, Any], carried: Any = None) -> TicketSummary:
        if self._invalid is not None and self._state is None:
            # A new ticket that does not validate fails at once, naming the field.
            raise ApplicationError(f"invalid ticket: {self._invalid}", type="InvalidTicket", non_retryable=True)
        if self._state is None:
            await self._load_policy_and_open()
            # Actions that arrived while the policy loaded are decided first (at their task's time),
            # so that this task's decisions are published together.
            await workflow.wait_condition(lambda: True)
        else:
            self._store_start()

        # Search attributes are published where the loop blocks, once all of a task's decisions are
        # in (`_wait`, and before each wait below): one upsert per workflow task at most.
        while True:
            if timers.finished(self.state, self.policy, self._now()):
                self._publish()
                self._own_time()
                await workflow.wait_condition(self._settled)
                if timers.finished(self.state, self.policy, workflow.now()):
                    # Not before its last events and its summary are in the record store.
                    if self._store_ready_to_finish():
                        self._publish()
                        return self._summary()
                    self._start_flush(force=True, final=True)
            if workflow.info().is_continue_as_new_suggested():
                # One condition for both: no update half-applied, no delivery whose outcome would be lost;
                # and the events stored first (unless the database has been down for a while: then
                # they are carried). Meanwhile the ticket goes on.
                if self._store_ready_to_continue():
                    self._publish()
                    self._own_time()
                    await workflow.wait_condition(self._settled)
                    if self._store_ready_to_continue():
                        self._publish()
                        workflow.continue_as_new(args=[self._ticket, self._carried()])
                self._start_flush(force=True)
            self._start_deliveries()
            self._start_flush()
            await self._wait(self._next_due())
            self._woken = False
            if self._timer_due():
                self._decide(Tick())
