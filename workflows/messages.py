"""The contract between the workflows and their activities: every activity's input and output.

One pydantic model each. The workflows, the record store and the review import these without
importing any activity (which would pull HTTP clients and templates into workflow code); the
activities implement them. Loaded through the sandbox's passthrough, so it must stay pure.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class ActivityMessage(BaseModel):
    # Tolerant: these inputs also sit in a ticket's carried outbox, read back by newer code.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class EndpointRef(ActivityMessage):
    """An endpoint by name; the activity resolves where it is from settings. `url` is only set in
    notices written before the channels change (it is never written any more)."""

    name: str
    url: str | None = None


class LoadPolicyInput(ActivityMessage):
    opened_at: AwareDatetime
    # The workflow's time when it asked (the same when a worker re-runs the load after a crash).
    requested_at: AwareDatetime | None = None


class PolicySnapshot(ActivityMessage):
    """The policy a ticket runs under, frozen into its history by the (local) activity's result.

    `document` is the validated policy as JSON data; the workflow turns it back into a `Policy`
    through `config.policy.policy_from_snapshot`, which validates each fingerprint once per worker
    process and shares the result between tickets.
    """

    version: str = Field(description="author's version label + content fingerprint")
    fingerprint: str
    source: str
    document: dict[str, Any]
    store_events: bool = True
    # When the policy loaded, on the workflow's clock: its request's time plus the load's duration
    # on the worker's clock. In history with the result, so the same live and on replay. Written by
    # every worker now; absent in results recorded before, whose tickets replay as they ran. See
    # `TicketEffects._load_policy_and_open`.
    loaded_at: AwareDatetime | None = None


class Person(ActivityMessage):
    role: str
    id: str
    email: str | None = None


class OutboundEvent(ActivityMessage):
    """The body of every webhook (the contract's outbound event)."""

    id: str = Field(description="same as the webhook-id header; stable across retries")
    type: str
    occurred_at: AwareDatetime
    ticket_id: str
    workflow_id: str
    tier: int
    department: str
    priority: str
    recipients: list[Person] = Field(default_factory=list)
    cc: list[Person] = Field(default_factory=list)
    rule: str | None = Field(
        default=None, description="policy rule that fired, e.g. ladders.resolution[1] (res-breach)"
    )
    reason: str
    data: dict[str, Any] = Field(default_factory=dict)
    subject: str | None = Field(default=None, description="the ticket's subject")
    deadline: AwareDatetime | None = Field(default=None, description="the SLA deadline the event is about")


Channel = Literal["webhook", "email", "slack", "teams"]


class FloodRef(ActivityMessage):
    """Flood control for one notice: at most `limit` per `window` to `key` (recipient @ endpoint)."""

    key: str
    limit: int
    window: timedelta


class DeliverInput(ActivityMessage):
    event: OutboundEvent
    endpoint: EndpointRef
    channel: Channel = "webhook"
    recipient: Person | None = Field(default=None, description="email: the person written to (and the address)")
    flood: FloodRef | None = None
    templates: dict[str, dict[str, str]] | None = Field(
        default=None,
        description="email, Slack, Teams: the ticket's frozen template overrides for this event type "
        "(event type or default -> part -> source; empty: the built-ins); none: tickets opened before "
        "they were frozen, rendered with the worker's current policy file",
    )

    def key(self) -> str:
        """The notice's identity on every channel (its outbox key): stable across retries."""
        person = f":{self.recipient.id}" if self.channel == "email" and self.recipient else ""
        return f"{self.event.id}@{self.endpoint.name}{person}"


class DeliveryResult(ActivityMessage):
    webhook_id: str
    endpoint: str
    status_code: int
    attempt: int
    digest: str | None = Field(default=None, description="handed to this flood-control workflow")


class DigestEntry(ActivityMessage):
    key: str
    event: OutboundEvent
    sent: bool = Field(description="sent on its own (within the limit) before the digest")


class FloodInput(ActivityMessage):
    """The flood control of one recipient (a person at an endpoint, or a chat endpoint)."""

    flood_key: str
    channel: Channel
    endpoint: EndpointRef
    recipient: Person | None = None
    limit: int
    window: timedelta
    seen: list[str] = Field(default_factory=list, description="recent notice keys, carried across continue-as-new")


class DigestInput(ActivityMessage):
    """One digest window: one recipient through one endpoint, from `start` to `end`."""

    digest_id: str
    flood_key: str
    channel: Channel
    endpoint: EndpointRef
    recipient: Person | None = None
    limit: int
    start: AwareDatetime
    end: AwareDatetime


class AdmitInput(ActivityMessage):
    """A notice handed to its recipient's digest window (the `admit` signal)."""

    key: str
    notice: DeliverInput = Field(description="the notice, without flood control: sent as is if within the limit")
    flood: FloodRef | None = Field(
        default=None, description="the limit and window the ticket's policy gives now (absent before 2026-11-26)"
    )

    @property
    def event(self) -> OutboundEvent:
        return self.notice.event


class DigestDeliverInput(ActivityMessage):
    digest: DigestInput
    entries: list[DigestEntry]
    more: int = Field(default=0, description="entries beyond the listed ones (bounded)")


class DigestSummary(ActivityMessage):
    digest_id: str
    admitted: int
    sent_alone: int
    digested: int
    delivered: bool
    failed: list[str] = Field(default_factory=list, description="notices sent on their own that were given up")


class ReassignInput(ActivityMessage):
    idempotency_key: str
    ticket_id: str
    workflow_id: str
    queue: str | None
    agent: str | None
    reason: str


class ReassignResult(ActivityMessage):
    outcome: Literal["applied", "skipped"]
    detail: str = ""


# ---------------------------------------------------------------------- the record store
class StoredEvent(ActivityMessage):
    """One row of a ticket's record in the store (`store.models.EventRow`)."""

    seq: int = Field(description="event number within the ticket's life, from 0, across continue-as-new")
    stream: Literal["timeline", "action"] = "timeline"
    at: AwareDatetime
    kind: str
    actor: str | None = None
    rule: str | None = None
    clock: str | None = None
    deadline: str | None = None
    tier: int | None = None
    department: str | None = None
    reason: str | None = None
    policy_version: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class TicketRecord(ActivityMessage):
    """The ticket's summary row (`store.models.TicketRow`), as of the batch it comes with."""

    life_id: str
    ticket_id: str
    workflow_id: str
    opened_at: AwareDatetime
    channel: str
    category: str
    priority: str
    segment: str
    source: str = "unknown"
    policy_version: str
    route: str | None = None
    state: str
    tier: int
    department: str
    current_priority: str
    assignee: str | None = None
    escalations: int = 0
    breaches: int = 0
    first_response_at: AwareDatetime | None = None
    resolved_at: AwareDatetime | None = None
    closed_at: AwareDatetime | None = None
    summary: dict[str, Any] | None = None
    ticket: dict[str, Any] | None = Field(default=None, description="the ticket as opened; sent with the first batch")
    complete: bool = True


class StoreBatch(ActivityMessage):
    """Events `first_seq` .. `first_seq + len(events) - 1` of one ticket life, and its summary row."""

    record: TicketRecord
    first_seq: int
    events: list[StoredEvent] = Field(default_factory=list)


class StoreResult(ActivityMessage):
    written: int = Field(description="rows new to the store")
    duplicates: int = Field(default=0, description="rows already there (a retried or repeated flush)")
