"""Activity inputs and outputs: one model each. Imported by workflows through passthrough."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class ActivityMessage(BaseModel):
    # Tolerant: these inputs also sit in a ticket's carried outbox, read back by newer code.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class EndpointRef(ActivityMessage):
    name: str
    url: str


class LoadPolicyInput(ActivityMessage):
    opened_at: AwareDatetime


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


class DeliverInput(ActivityMessage):
    event: OutboundEvent
    endpoint: EndpointRef


class DeliveryResult(ActivityMessage):
    webhook_id: str
    endpoint: str
    status_code: int
    attempt: int


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
