"""Which action each state takes: the state table, one row per action, one cell per state.

A cell either applies the action, and then names the state the ticket ends in and the handler that
does it (`workflows/action_handlers.py`), or refuses it with the reason the caller is given. Rows are
keyed by the action's model, so a handler's type is checked against its row. Once the table accepts
an action, the policy's guards (`workflows/guards.py`) judge roles, reasons and limits.

Timer events are not refusable; where they can happen:
- ladder steps and breaches: on running clocks (open, acknowledged; never while pending_customer,
  whose clocks are paused, nor once resolved, whose clocks are stopped);
- end of the self-service wait: in self_service (the ticket enters its route's tier);
- approval deadline: any state with a pending approval (escalates one tier, CCs the head);
- end of the reopen window: resolved (the workflow completes once its notices are settled).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import workflows.action_handlers as handle
from workflows.draft import ACK, OPEN, PENDING, RESOLVED, SS, Draft
from workflows.models import (
    ACTIONS,
    Acknowledge,
    ChangePriority,
    ConfirmSolved,
    CustomerReplied,
    DecideApproval,
    DiscardNotices,
    Escalate,
    Message,
    PendingCustomer,
    Reassign,
    Redeliver,
    Reopen,
    RequestApproval,
    Resolve,
    State,
)

M = TypeVar("M", bound=Message)

RESUMED: Literal["the state it was paused in"] = "the state it was paused in"
Target = State | Literal["the state it was paused in"]


@dataclass(frozen=True)
class Cell(Generic[M]):
    """One state's answer to one action: applied (target state and handler) or refused (`note` says why)."""

    target: Target | None
    handler: Callable[[Draft, M], None] | None
    note: str = ""

    @property
    def applied(self) -> bool:
        return self.handler is not None


@dataclass(frozen=True)
class To:
    """An applied cell as written in the table; its row adds the handler."""

    target: Target
    note: str = ""


@dataclass(frozen=True)
class Refused:
    reason: str


def row(handler: Callable[[Draft, M], None], cells: Mapping[State, To | Refused]) -> dict[State, Cell[M]]:
    return {
        state: Cell(c.target, handler, c.note) if isinstance(c, To) else Cell(None, None, c.reason)
        for state, c in cells.items()
    }


def stays(handler: Callable[[Draft, M], None]) -> dict[State, Cell[M]]:
    """A row every state applies, leaving the ticket in its state."""
    return row(handler, {state: To(state) for state in State})


RESOLVED_FIRST = Refused("the ticket is resolved; reopen it first")
ONLY_TIER_0 = Refused("only a ticket in Tier 0 self-service can be confirmed solved by the customer")
ONLY_RESOLVED = Refused("only a resolved ticket can be reopened")
RUNNING = "recorded; the clocks were running already"

# Action model -> state -> cell.   States: self_service | open | acknowledged | pending_customer | resolved
TRANSITIONS: dict[type[Message], dict[State, Cell[Any]]] = {
    Acknowledge: row(
        handle.acknowledge,
        {
            SS: To(ACK, "leaves Tier 0 for its route's tier, then acknowledged"),
            OPEN: To(ACK),
            ACK: Refused("already acknowledged"),
            PENDING: Refused("already acknowledged; the ticket waits on the customer"),
            RESOLVED: RESOLVED_FIRST,
        },
    ),
    Reassign: row(
        handle.reassign_ticket,
        {
            SS: To(OPEN, "leaves Tier 0 for its route's tier, then reassigned"),
            OPEN: To(OPEN),
            ACK: To(ACK),
            PENDING: To(PENDING),
            RESOLVED: RESOLVED_FIRST,
        },
    ),
    Escalate: row(
        handle.escalate,
        {
            SS: To(OPEN, "leaves Tier 0: hierarchical to the route's tier, functional to the department"),
            OPEN: To(OPEN),
            ACK: To(OPEN),
            PENDING: To(OPEN, "the new owners' clocks run: the ticket is open again"),
            RESOLVED: RESOLVED_FIRST,
        },
    ),
    PendingCustomer: row(
        handle.pending_customer,
        {
            SS: Refused("a self-service ticket already waits on the customer"),
            OPEN: To(PENDING),
            ACK: To(PENDING),
            PENDING: Refused("already waiting on the customer"),
            RESOLVED: RESOLVED_FIRST,
        },
    ),
    CustomerReplied: row(
        handle.customer_replied,
        {
            SS: To(OPEN, "the customer still needs help: leaves Tier 0"),
            OPEN: To(OPEN, RUNNING),
            ACK: To(ACK, RUNNING),
            PENDING: To(RESUMED, "the clocks resume with their remaining business time"),
            RESOLVED: RESOLVED_FIRST,
        },
    ),
    ConfirmSolved: row(
        handle.confirm_solved,
        {
            SS: To(RESOLVED, "resolved by self-service"),
            OPEN: ONLY_TIER_0,
            ACK: ONLY_TIER_0,
            PENDING: ONLY_TIER_0,
            RESOLVED: Refused("the ticket is resolved already"),
        },
    ),
    ChangePriority: row(
        handle.change_priority,
        {SS: To(SS), OPEN: To(OPEN), ACK: To(ACK), PENDING: To(PENDING), RESOLVED: RESOLVED_FIRST},
    ),
    Resolve: row(
        handle.resolve_ticket,
        {
            SS: To(RESOLVED),
            OPEN: To(RESOLVED),
            ACK: To(RESOLVED),
            PENDING: To(RESOLVED),
            RESOLVED: Refused("the ticket is resolved already"),
        },
    ),
    Reopen: row(
        handle.reopen,
        {
            SS: ONLY_RESOLVED,
            OPEN: ONLY_RESOLVED,
            ACK: ONLY_RESOLVED,
            PENDING: ONLY_RESOLVED,
            RESOLVED: To(OPEN, "within the reopen window: the ticket's tier (Tier 0: the route's tier), clocks anew"),
        },
    ),
    RequestApproval: row(
        handle.request_approval,
        {
            SS: Refused("no agent owns a Tier 0 self-service ticket yet; take it on first"),
            OPEN: To(OPEN),
            ACK: To(ACK),
            PENDING: To(PENDING),
            RESOLVED: RESOLVED_FIRST,
        },
    ),
    DecideApproval: stays(handle.decide_approval),
    Redeliver: stays(handle.redeliver),
    DiscardNotices: stays(handle.discard_notices),
}

# The same table by the contract's action names (what callers send, and what `check` looks up).
TABLE: dict[str, dict[State, Cell[Any]]] = {name: TRANSITIONS[model] for name, model in ACTIONS.items()}
