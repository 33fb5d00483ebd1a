"""One ticket's workflow state: its input, carried state, policy, and what a run keeps in memory.

The base of `TicketEscalation` (`workflows/ticket.py`), which adds the main loop; on top of it
`ticket_store_sync.py` writes the record store, `ticket_effects.py` applies decisions and runs their
effects, `ticket_handlers.py` answers signals, updates and queries. Imported through the sandbox's
passthrough, so it is loaded once per worker process, not once per ticket. Passthrough code is not
policed by the sandbox, so the rules are on us and on the replay tests: deterministic only, time
from `workflow.now()` (through `_now`), no I/O, no randomness, no mutable module state.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ApplicationError

import workflows.recording as recording
import workflows.ticket_views as views
from config.policy import Policy, policy_from_snapshot
from workflows.decision_types import Ctx
from workflows.metrics import TicketMetrics
from workflows.models import (
    OPENED_AT_RANGE,
    Ticket,
    TicketStatus,
    TicketSummary,
    TimelineEvent,
)
from workflows.state import Carried, PolicyRef, TicketState

NOT_OPENED = "the ticket has not been opened yet; its policy is loading"


class TicketCore:
    """State of one ticket's run; the classes built on it add the store, effects, handlers and loop."""

    def __init__(self, ticket: Ticket | dict[str, Any], carried: Any = None) -> None:
        # The input arrives as a `Ticket`, or as plain data when it does not validate (the type hint
        # is a union on purpose): a new ticket is then refused by `run` with the field and the
        # reason, and a continued one, valid under the rules it was opened with, runs on as it is.
        # No validation error can escape into the SDK, where it would fail the ticket's tasks forever.
        self._invalid: str | None = None
        if isinstance(ticket, Ticket):
            self._ticket = ticket
        else:
            try:
                self._ticket = Ticket.model_validate(ticket)
            except ValidationError as exc:
                first = exc.errors()[0]
                self._invalid = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
                self._ticket = Ticket.model_construct(**(ticket if isinstance(ticket, dict) else {}))
        # The carried state is internal: only a run started by continue-as-new may take it. From
        # anywhere else (a raw start with a second argument, a forged input) it is ignored and
        # recorded on the timeline once the ticket opened: it could name any endpoint.
        opened_at = self._ticket.opened_at if self._invalid is None else None
        if (
            carried is None
            and isinstance(opened_at, datetime)
            and not OPENED_AT_RANGE[0] <= opened_at < OPENED_AT_RANGE[1]
        ):
            # Near the ends of the calendar the SLA and holiday arithmetic overflows.
            low, high = (bound.date().isoformat() for bound in OPENED_AT_RANGE)
            self._invalid = f"opened_at: must lie between {low} and {high}"
        self._carried_refused: str | None = None
        if carried is not None and not workflow.info().continued_run_id:
            self._carried_refused = type(carried).__name__
            carried = None
        if carried is not None and not isinstance(carried, Carried):
            carried = Carried.model_validate(carried)
        self._policy_ref: PolicyRef | None = carried.policy if carried else None
        self._policy: Policy | None = None
        self._state: TicketState | None = carried.state if carried else None
        self._runs = carried.runs + 1 if carried else 1
        self._timeline: list[TimelineEvent] = []
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._woken = False  # set by actions and deliveries: re-plan now
        self._published: dict[str, Any] = {}
        self._reported = 0  # refusals reported by clients in this run (`record_refusal`)
        self._metrics = TicketMetrics()  # metrics only: no history, nothing decided from it
        # The record store: events are numbered and kept here until stored (see `recording.py`).
        self._recorder = recording.Recorder(carried.store if carried else None, self._runs)
        self._store_on = False
        # The time of the opening task: set while the new ticket is opened, so that everything
        # decided before its first wait is decided at the workflow's start time, live and on replay.
        self._opening_at: datetime | None = None
        # When the policy loaded (on the workflow's clock), and the time held while the loop runs
        # on after the opening without waiting (see `TicketEffects._load_policy_and_open`).
        self._loaded_at: datetime | None = None
        self._held_at: datetime | None = None
        # One timer for the nearest due time, kept while that time stays the nearest (an action or
        # a delivery that changes nothing due does not cancel and re-arm it: two events each).
        self._timer: asyncio.Task[None] | None = None
        self._timer_at: datetime | None = None

    # ------------------------------------------------------------------ accessors
    @property
    def state(self) -> TicketState:
        if self._state is None:
            raise ApplicationError(NOT_OPENED, type="NotOpened")
        return self._state

    @property
    def policy(self) -> Policy:
        if self._policy is None:
            ref = self._policy_ref
            if ref is None:
                raise ApplicationError(NOT_OPENED, type="NotOpened")
            self._policy = policy_from_snapshot(ref.fingerprint, ref.document)
        return self._policy

    def _now(self) -> datetime:
        return self._opening_at or self._held_at or workflow.now()

    def _opened(self) -> bool:
        return self._state is not None

    def _ctx(self) -> Ctx:
        info = workflow.info()
        return Ctx(
            now=self._now(),
            workflow_id=info.workflow_id,
            life=info.first_execution_run_id or info.run_id,
            patched=workflow.patched,
        )

    # ------------------------------------------------------------------ views
    def current_status(self) -> TicketStatus:
        return views.ticket_status(
            self._ticket, self.state, self.policy, self._now(), workflow.info().workflow_id, self._policy_version()
        )

    def _summary(self) -> TicketSummary:
        opened = self._ticket.opened_at or workflow.info().start_time
        return views.ticket_summary(self._ticket, self.state, opened, self._policy_version())

    def _policy_version(self) -> str:
        return self._policy_ref.version if self._policy_ref else ""
