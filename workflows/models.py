"""Messages of the `TicketEscalation` workflow: one pydantic model per input, action, query result.

These are the contract's shapes (see ../shared/contract.md and docs/contract.md).
Every timestamp is an aware datetime; naive ones are refused at the edge.

Two kinds of model, on purpose:
- `Message`: what callers send (actions) and what the workflow answers. Unknown fields are
  refused (`extra="forbid"`), so a typo is an error that names the field, not a silent no-op.
- `Persisted` (in `workflows/state.py`) and `Ticket`: what is read back from history, possibly
  written by an older or newer version of this code. Unknown fields are ignored there, so adding a
  field never fails a ticket that is already running.

Every free-text field has a length bound: whatever a caller sends ends up in history, in the
carried state or in a search attribute, and each of those has a hard size limit on the server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from config.policy import Channel, Priority, Role
from workflows.durations import Duration

WORKFLOW_TYPE = "TicketEscalation"

# Bounds on what callers send. Ids end up in search attributes (the server refuses keyword values
# over 2,048 bytes and ends the workflow), texts in history and notices.
Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(max_length=2_000)]
Note = Annotated[str, StringConstraints(max_length=10_000)]
MAX_METADATA_BYTES = 16_384
MAX_ACTION_BYTES = 65_536  # a whole action payload; larger ones are refused before they reach history


# An update id `<action>:<key>#sha256:<16 hex>`: the body's fingerprint after the idempotency key.
DIGEST_MARK = "#sha256:"


def workflow_id_for(ticket_id: str) -> str:
    """The contract's workflow id: one workflow per source-system ticket."""
    return f"ticket-{ticket_id}"


class Message(BaseModel):
    # No NaN/Infinity: they do not survive the JSON round trip into workflow history.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Customer(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    id: Id
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    email: Annotated[str, StringConstraints(max_length=320)] | None = None
    segment: Annotated[str, StringConstraints(max_length=64)] = "standard"


class Ticket(BaseModel):
    """The workflow input: the ticket as the source system knows it.

    Tolerant of unknown fields (a ticket started by a newer client still runs); the HTTP API
    refuses them at its edge (`TicketRequest`).
    """

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    ticket_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")
    subject: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    description: Annotated[str, StringConstraints(max_length=20_000)] = ""
    channel: Channel = Channel.email
    category: Annotated[str, StringConstraints(min_length=1, max_length=100)] = "general"
    priority: Priority = Priority.normal
    customer: Customer
    opened_at: AwareDatetime | None = None
    source: Annotated[str, StringConstraints(max_length=100)] = "unknown"
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _bounded_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, default=str))
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES}")
        return value


# What the HTTP API accepts as `opened_at` (the workflow never sees this check; it is the edge's).
OPENED_AT_RANGE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
OPENED_AT_SKEW = timedelta(minutes=5)  # ... and no later than this ahead of the API's clock (skew)


class TicketRequest(Ticket):
    """A ticket as the HTTP API accepts it: unknown fields are errors that name the field, and
    `opened_at` lies between 2000 and 2200 (a date at the end of time overflows SLA arithmetic)
    and not in the future (`OPENED_AT_SKEW`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("opened_at")
    @classmethod
    def _plausible_opening(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        low, high = OPENED_AT_RANGE
        try:
            inside = low <= value.astimezone(UTC) < high
        except OverflowError:
            inside = False
        if not inside:
            raise ValueError(f"must lie between {low.date()} and {high.date()}")
        # A ticket's clocks start at `opened_at`: one opened in the future would not breach (or
        # escalate) before then, silently. Backdated openings (an import) are fine.
        if value.astimezone(UTC) > datetime.now(UTC) + OPENED_AT_SKEW:
            minutes = int(OPENED_AT_SKEW.total_seconds() // 60)
            raise ValueError(
                f"must not be in the future (at most {minutes} minutes ahead of this server's clock): "
                "its SLA clocks would not run before then"
            )
        return value


class Actor(Message):
    id: Id
    role: Role
    tier: int | None = Field(default=None, ge=0, le=99)


class Acknowledge(Message):
    actor: Actor
    note: Note | None = None


class Reassign(Message):
    actor: Actor
    to_agent: Id | None = None
    to_queue: Id | None = None
    reason: ShortText | None = None


class EscalationKind(StrEnum):
    hierarchical = "hierarchical"
    functional = "functional"


class Escalate(Message):
    actor: Actor
    kind: EscalationKind
    department: Id | None = None
    reason: ShortText = ""
    to_tier: int | None = Field(
        default=None, ge=0, le=99, description="addition: skip-level target, if the policy allows"
    )


class PendingCustomer(Message):
    actor: Actor
    note: Note | None = None


class CustomerReplied(Message):
    note: Note | None = None


class ConfirmSolved(Message):
    """Addition: the customer says the Tier 0 self-service answer solved the problem."""

    note: Note | None = None


class ChangePriority(Message):
    actor: Actor
    priority: Priority
    reason: ShortText = ""


class Resolve(Message):
    actor: Actor
    resolution: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]


class Reopen(Message):
    actor: Actor
    reason: ShortText = ""


class RequestApproval(Message):
    """Addition: a refund or discount; above the actor's authority limit it waits for a manager."""

    actor: Actor
    kind: Literal["refund", "discount"]
    amount: float = Field(gt=0, le=1e12)
    reason: ShortText = ""


class DecideApproval(Message):
    actor: Actor
    approval_id: Id
    approved: bool
    note: Note | None = None


class Redeliver(Message):
    """Addition: retry every undelivered or given-up notice of this ticket now (operators)."""

    actor: Actor
    reason: ShortText = ""


class DiscardNotices(Message):
    """Addition: give up the ticket's failed notices for good (operators); each is recorded."""

    actor: Actor
    reason: ShortText


class State(StrEnum):
    self_service = "self_service"
    open = "open"
    acknowledged = "acknowledged"
    pending_customer = "pending_customer"
    resolved = "resolved"


class ClockName(StrEnum):
    first_response = "first_response"
    resolution = "resolution"


class ClockStatus(Message):
    name: ClockName
    state: Literal["running", "paused", "stopped"]
    target: Duration
    started_at: AwareDatetime
    deadline: AwareDatetime | None
    elapsed: Duration
    paused: Duration
    breached: bool
    breached_at: AwareDatetime | None


class Approval(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

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


class RouteDecision(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    route: str
    reason: str
    tier: int
    department: str
    calendar: str
    priority: Priority
    self_service: bool = False


class NoticeStatus(Message):
    """A notice (webhook or helpdesk call) that has not been delivered yet."""

    key: str = Field(description="webhook-id (or helpdesk idempotency key) @ endpoint")
    type: str
    endpoint: str
    status: Literal["pending", "undelivered", "failed"]
    attempts: int
    last_error: str | None
    next_attempt_at: AwareDatetime | None
    give_up_at: AwareDatetime


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
    undelivered_count: int = Field(default=0, description="notices not delivered yet after at least one try")
    undelivered: list[NoticeStatus] = Field(default_factory=list, description="the first 20 of them")
    refused_actions: int = 0
    internal_errors: int = Field(default=0, description="decisions that failed unexpectedly (and were refused)")
    notices_dropped: int = Field(default=0, description="notices dropped from a full outbox (each on the timeline)")


class TicketSummary(Message):
    """The workflow's result once a resolved ticket's reopen window has passed."""

    ticket_id: str
    final_state: State
    tiers_visited: list[int]
    departments_visited: list[str]
    escalations: int
    breaches: int
    time_to_first_response: Duration | None
    time_to_resolution: Duration | None
    policy_version: str
    refused_actions: int = 0
    notices_delivered: int = 0
    notices_failed: int = 0
    notices_dropped: int = 0


class Timeline(Message):
    ticket_id: str
    events: list[TimelineEvent]
    earlier_runs: int = Field(
        default=0, description="runs before this one (continue-as-new); their events are in their own histories"
    )


REFUSAL_SIGNAL = "record_refusal"
MAX_REPORTED_REFUSALS = 100  # `refused` rows per run; beyond, one row says so and the rest are only counted


class RefusalReport(Message):
    """Signal `record_refusal`: a client (the API, the CLI, the Python client) tells the ticket about
    an action it refused before the ticket could record it (an update refused by the validator
    leaves nothing in history; an edge refuses a malformed payload). The ticket records a `refused`
    row and changes nothing else: no state, no count, no notice. Not an action (not in `ACTIONS`)."""

    action: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    field: Annotated[str, StringConstraints(max_length=200)] = "payload"
    reason: ShortText
    actor: Actor | None = None
    via: Literal["update", "api", "cli", "client"] = "update"
    update_id: Id | None = None


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
    "redeliver": Redeliver,
    "discard_notices": DiscardNotices,
}
