"""Messages of the `TicketEscalation` workflow: one pydantic model per input, action, query result.

These are the contract's shapes (see ../shared/contract.md and the README's contract section).
Every timestamp is an aware datetime; naive ones are refused at the edge.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from config.policy import Channel, Policy, Priority, Role

WORKFLOW_TYPE = "TicketEscalation"


def workflow_id_for(ticket_id: str) -> str:
    """The contract's workflow id: one workflow per source-system ticket."""
    return f"ticket-{ticket_id}"


class Message(BaseModel):
    # No NaN/Infinity: they do not survive the JSON round trip into workflow history.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Customer(Message):
    id: str = Field(min_length=1)
    name: str | None = None
    email: str | None = None
    segment: str = "standard"


class Ticket(Message):
    """The workflow input: the ticket as the source system knows it."""

    ticket_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")
    subject: str = Field(min_length=1)
    description: str = ""
    channel: Channel = Channel.email
    category: str = "general"
    priority: Priority = Priority.normal
    customer: Customer
    opened_at: AwareDatetime | None = None
    source: str = "unknown"
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Internal: set only when the workflow continues as new, never by callers.
    carried_state: TicketSnapshot | None = None


class Actor(Message):
    id: str = Field(min_length=1)
    role: Role
    tier: int | None = Field(default=None, ge=0)


class Acknowledge(Message):
    actor: Actor
    note: str | None = None


class Reassign(Message):
    actor: Actor
    to_agent: str | None = None
    to_queue: str | None = None
    reason: str | None = None


class EscalationKind(StrEnum):
    hierarchical = "hierarchical"
    functional = "functional"


class Escalate(Message):
    actor: Actor
    kind: EscalationKind
    department: str | None = None
    reason: str = ""
    to_tier: int | None = Field(default=None, description="addition: skip-level target, if the policy allows")


class PendingCustomer(Message):
    actor: Actor
    note: str | None = None


class CustomerReplied(Message):
    note: str | None = None


class ConfirmSolved(Message):
    """Addition: the customer says the Tier 0 self-service answer solved the problem."""

    note: str | None = None


class ChangePriority(Message):
    actor: Actor
    priority: Priority
    reason: str = ""


class Resolve(Message):
    actor: Actor
    resolution: str = Field(min_length=1)


class Reopen(Message):
    actor: Actor
    reason: str = ""


class RequestApproval(Message):
    """Addition: a refund or discount; above the actor's authority limit it waits for a manager."""

    actor: Actor
    kind: Literal["refund", "discount"]
    amount: float = Field(gt=0)
    reason: str = ""


class DecideApproval(Message):
    actor: Actor
    approval_id: str
    approved: bool
    note: str | None = None


class State(StrEnum):
    self_service = "self_service"
    open = "open"
    acknowledged = "acknowledged"
    pending_customer = "pending_customer"
    resolved = "resolved"


class ClockName(StrEnum):
    first_response = "first_response"
    resolution = "resolution"


class Clock(Message):
    """One SLA clock. Business time consumed so far = `consumed` + time since `running_since`."""

    name: ClockName
    calendar: str
    target: timedelta
    started_at: AwareDatetime
    consumed: timedelta = timedelta(0)
    running_since: AwareDatetime | None = None
    paused_since: AwareDatetime | None = None
    paused_total: timedelta = timedelta(0)
    deadline: AwareDatetime | None = None
    breached_at: AwareDatetime | None = None
    stopped_at: AwareDatetime | None = None
    fired: dict[str, int] = Field(default_factory=dict, description="ladder step id -> times fired")


class ClockStatus(Message):
    name: ClockName
    state: Literal["running", "paused", "stopped"]
    target: timedelta
    started_at: AwareDatetime
    deadline: AwareDatetime | None
    elapsed: timedelta
    paused: timedelta
    breached: bool
    breached_at: AwareDatetime | None


class Approval(Message):
    id: str
    kind: Literal["refund", "discount"]
    amount: float
    requested_by: str
    reason: str
    requested_at: AwareDatetime
    deadline: AwareDatetime
    status: Literal["pending", "approved", "rejected", "timed_out"] = "pending"
    decided_by: str | None = None


class TimelineEvent(Message):
    at: AwareDatetime
    kind: str
    actor: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class RouteDecision(Message):
    route: str
    reason: str
    tier: int
    department: str
    calendar: str
    priority: Priority
    self_service: bool = False


class TicketSnapshot(Message):
    """Everything the workflow carries across continue-as-new."""

    policy: Policy
    policy_version: str
    route: RouteDecision
    state: State
    resume_state: State | None = None
    tier: int
    department: str
    priority: Priority
    assignee: str | None = None
    queue: str | None = None
    clocks: dict[ClockName, Clock] = Field(default_factory=dict)
    tier_entered_at: AwareDatetime
    tiers_visited: list[int] = Field(default_factory=list)
    departments_visited: list[str] = Field(default_factory=list)
    escalations: int = 0
    breaches: int = 0
    first_response_at: AwareDatetime | None = None
    resolved_at: AwareDatetime | None = None
    approvals: list[Approval] = Field(default_factory=list)
    timeline: list[TimelineEvent] = Field(default_factory=list)
    notification_seq: int = 0
    self_service_until: AwareDatetime | None = None


class TicketStatus(Message):
    """The `status` query result, and the answer of every accepted action update."""

    ticket_id: str
    workflow_id: str
    state: State
    tier: int
    department: str
    assignee: str | None
    queue: str | None
    priority: Priority
    clocks: list[ClockStatus]
    next_deadline: AwareDatetime | None
    sla_breached: bool
    escalation_count: int
    policy_version: str
    route: str
    pending_approvals: list[Approval]


class TicketSummary(Message):
    """The workflow's result once a resolved ticket's reopen window has passed."""

    ticket_id: str
    final_state: State
    tiers_visited: list[int]
    departments_visited: list[str]
    escalations: int
    breaches: int
    time_to_first_response: timedelta | None
    time_to_resolution: timedelta | None
    policy_version: str


class Timeline(Message):
    ticket_id: str
    events: list[TimelineEvent]


Ticket.model_rebuild()

# Action name -> payload model: the contract's agent actions plus this product's additions.
ACTIONS: dict[str, type[Message]] = {
    "acknowledge": Acknowledge,
    "reassign": Reassign,
    "escalate": Escalate,
    "pending_customer": PendingCustomer,
    "customer_replied": CustomerReplied,
    "confirm_solved": ConfirmSolved,
    "change_priority": ChangePriority,
    "resolve": Resolve,
    "reopen": Reopen,
    "request_approval": RequestApproval,
    "decide_approval": DecideApproval,
}
