"""A ticket's life without Temporal: `open_ticket`, `next_due` and `decide` in a loop at exact instants.

`policy simulate` and `policy backtest` run it; no server, no worker, no SDK. It is the workflow's
own loop (`workflows/ticket.py`, `workflows/ticket_effects.py`) with its effects replaced: every
notice is delivered, successfully, at the instant it is decided, and each input is decided at
exactly its instant (a timer at its due instant, an action at the instant given), where a server
runs them a few milliseconds late. The workflow's order is kept: at one instant, what is due
fires before an action; an action the update validator would refuse never reaches `decide`.

What differs from a ticket on a server, by design: a notice's delivery is decided at the instant
of the decision that sent it (a server settles it a task later, so its `notification_delivered`
row may come after the next action's rows); a reassignment is always `skipped` (nothing calls a
helpdesk); no notice goes through flood control. No decision reads any of these.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import workflows.decisions as decisions
import workflows.timers as timers
from config.policy import Policy
from workflows.decision_types import Action, Ctx, Decision, Delivery, Input, Refusal, Tick
from workflows.models import Ticket, TimelineEvent
from workflows.state import Notice, TicketState

# Ticks in one `advance` are bounded (each fires at least one item), so a policy bug cannot spin.
MAX_TICKS = 100_000
# As the workflow: a failure to compute the next due time is recorded, and looked at again later.
RETRY_AFTER_ERROR = timedelta(hours=1)


@dataclass(frozen=True)
class Sent:
    """A notice as the simulation delivered it: at the instant it was decided."""

    at: datetime
    notice: Notice


@dataclass(frozen=True)
class Refused:
    """An action the ticket refused, by the validator (`recorded=False`) or by `decide`."""

    at: datetime
    action: str
    refusal: Refusal
    recorded: bool


@dataclass
class Simulation:
    """One ticket's life under a frozen policy. Open it with `Simulation.open`, then `act` and
    `advance` in time order; `timeline`, `sent` and `refused` are what happened."""

    policy: Policy
    ticket: Ticket
    state: TicketState
    workflow_id: str
    life: str
    now: datetime
    timeline: list[TimelineEvent] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    finished_at: datetime | None = None

    @classmethod
    def open(
        cls,
        policy: Policy,
        version: str,
        ticket: Ticket,
        *,
        started_at: datetime | None = None,
        workflow_id: str = "simulation",
        life: str = "simulation",
    ) -> Simulation:
        """The ticket opened at `started_at` (the workflow's start time; default its `opened_at`)."""
        start = started_at or ticket.opened_at
        if start is None:
            raise ValueError("opened_at: a simulated ticket needs an opening instant")
        ctx = Ctx(now=start, workflow_id=workflow_id, life=life)
        decision = decisions.open_ticket(policy, version, ticket, ctx)
        sim = cls(policy, ticket, decision.state, workflow_id, life, start)
        sim._apply(decision)
        return sim

    # ------------------------------------------------------------------ inputs
    def advance(self, until: datetime) -> None:
        """Fire everything due up to `until` (inclusive), each at exactly its due instant."""
        for _ in range(MAX_TICKS):
            if self.finished_at is not None:
                return
            due = self._next_due()
            if due is None or due > until:
                self.now = max(self.now, until)
                return
            at = max(due, self.now)
            if timers.finished(self.state, self.policy, at):
                self.finished_at = at
                return
            if timers.tick_due(self.state, self.policy, at):
                self.tick(at)
            elif at > self.now:
                self.now = at  # an internal error's retry: nothing to fire, look again from there
            else:
                self.now = max(self.now, until)  # due, nothing fires: the workflow waits for a wake-up
                return
        raise RuntimeError(f"simulation: more than {MAX_TICKS} ticks before {until.isoformat()}")

    def _next_due(self) -> datetime | None:
        try:
            due = timers.next_due(self.state, self.policy)
        except Exception as exc:  # as `TicketEffects._next_due`: recorded, and retried an hour later
            self.state = self.state.model_copy(update={"internal_errors": self.state.internal_errors + 1})
            detail = {"input": "next_due", "error": repr(exc)[:300]}
            self.timeline.append(TimelineEvent(at=self.now, kind="internal_error", detail=detail))
            return self.now + RETRY_AFTER_ERROR
        return due[0] if due is not None else None

    def tick(self, at: datetime) -> None:
        """A timer fires at `at` (exact or not: replaying a run whose timers were late)."""
        self._decide(Tick(), at)

    def act(
        self, at: datetime, name: str, data: Any, *, key: str | None = None, via: str = "update", exact: bool = True
    ) -> Refusal | None:
        """An action at `at`: what fell due before it fires first (`exact`: each at its own instant),
        then the action, as the workflow's update handler takes it. Returns its refusal, if any."""
        if exact:
            self.advance(at)
        at = max(at, self.now)
        if self.finished_at is not None:
            refusal = Refusal("ticket", "the ticket has completed")
            self.refused.append(Refused(at, name, refusal, recorded=False))
            return refusal
        parsed = decisions.parse_action(name, data)
        if isinstance(parsed, Refusal) and via == "update":  # the validator's: nothing reaches the ticket
            self.refused.append(Refused(at, name, parsed, recorded=False))
            return parsed
        if timers.tick_due(self.state, self.policy, at):  # time first, as `TicketEffects._decide`
            self._decide(Tick(), at)
        action = Action(name, data, via="signal" if via == "signal" else "update", key=key)
        decision = self._decide(action, at)
        if decision.refusal is not None:
            self.refused.append(Refused(at, name, decision.refusal, recorded=True))
        return decision.refusal

    def run(self, actions: Iterable[tuple[datetime, str, Any]], until: datetime) -> None:
        """Each `(instant, action, data)` in time order (ties in the order given), then on to `until`."""
        ordered = sorted(enumerate(actions), key=lambda item: (item[1][0], item[0]))
        for index, (at, name, data) in ordered:
            if at > until:
                break
            self.act(at, name, data, key=f"simulated-{index}")
        self.advance(until)

    # ------------------------------------------------------------------ applying decisions
    def _ctx(self, at: datetime) -> Ctx:
        return Ctx(now=at, workflow_id=self.workflow_id, life=self.life)

    def _decide(self, event: Input, at: datetime) -> Decision:
        self.now = max(self.now, at)
        decision = decisions.decide(self.state, self.policy, self.ticket, event, self._ctx(at))
        self._apply(decision)
        return decision

    def _apply(self, decision: Decision) -> None:
        """The new state and its events; every effect delivered at once (its outcome decided too)."""
        self.state = decision.state
        self.timeline.extend(decision.events)
        for notice in decision.effects:
            self.sent.append(Sent(self.now, notice))
            detail = {"outcome": "skipped"} if notice.activity == "reassign" else {}
            self._decide(Delivery(notice.key, ok=True, detail=detail), self.now)
