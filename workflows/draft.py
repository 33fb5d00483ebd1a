"""A decision while it is being made: a private copy of the state, and what the decision collects.

Every step of a decision (an action's handler, a timer firing, a delivery's outcome) takes the
`Draft` and changes its `state`, appends timeline events with `record` and effects to the outbox
(`workflows/outbox.py`). `decide()` (`workflows/decisions.py`) turns it into a `Decision`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from config.policy import Calendar, Policy, Role
from workflows.decision_types import Ctx, Decision, Refusal
from workflows.models import Actor, State, Ticket, TimelineEvent
from workflows.state import Notice, TicketState

SS, OPEN, ACK, PENDING, RESOLVED = (
    State.self_service,
    State.open,
    State.acknowledged,
    State.pending_customer,
    State.resolved,
)
SYSTEM = Actor(id="escalation-policy", role=Role.system)
CUSTOMER = "customer"


class Draft:
    """Applies one input to a private copy of the state, collecting events and effects."""

    def __init__(self, state: TicketState, policy: Policy, ticket: Ticket, ctx: Ctx) -> None:
        self.state = state
        self.policy = policy
        self.ticket = ticket
        self.ctx = ctx
        self.now = ctx.now
        self.events: list[TimelineEvent] = []
        self.effects: list[Notice] = []
        self.refusal: Refusal | None = None
        self.duplicate = False

    def result(self) -> Decision:
        return Decision(self.state, self.events, self.effects, self.refusal, self.duplicate)

    def record(
        self, what: str, /, *, by: Actor | str | None = None, when: datetime | None = None, **detail: Any
    ) -> None:
        who = f"{by.role.value}:{by.id}" if isinstance(by, Actor) else by
        self.events.append(TimelineEvent(at=when or self.now, kind=what, actor=who, detail=detail))

    def calendar(self) -> Calendar:
        """The business calendar of the ticket's route (its clocks run on it)."""
        return self.policy.calendars[self.state.route.calendar]
