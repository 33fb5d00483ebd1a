"""The notification part of a policy: endpoints, who is reached through which, flood control and
template overrides, with the event types and template parts a template may be written for.

Apart from `config/schema.py` because the template checks (`config/templates.py`) need only this.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from config.schema import Recipient, Strict, is_frozen


class ChannelKind(StrEnum):
    """How a notice travels. `webhook` is the signed platform feed; the others reach people."""

    webhook = "webhook"
    email = "email"
    slack = "slack"
    teams = "teams"


# Event types a template can be written for (`digest` is the flood-control summary).
EVENT_TYPES = (
    "sla.warning",
    "sla.breached",
    "ticket.escalated",
    "ticket.reassigned",
    "ticket.cc",
    "ticket.resolved",
    "ticket.reopened",
    "ticket.self_service",
    "approval.requested",
    "digest",
)
TEMPLATE_PARTS: dict[str, tuple[str, ...]] = {
    "email": ("subject", "text", "html"),
    "slack": ("title", "text"),
    "teams": ("title", "text"),
}


class Endpoint(Strict):
    """A named destination. Where it is (URL, SMTP server) and its credentials come from settings
    (`ESCALATIONS_ENDPOINTS`), resolved inside the delivery activity: never in a ticket's history.

    A `url` here is accepted for webhook endpoints only (a plain, non-secret URL; legacy); it is
    stripped from the policy a ticket freezes and looked up again by name at delivery."""

    name: str
    channel: ChannelKind = ChannelKind.webhook
    url: str | None = None
    event_types: list[str] = Field(default_factory=list, description="empty: every event type")
    ticket_prefix: str | None = Field(
        default=None,
        max_length=20,
        description="only tickets whose id starts with this (a helpdesk connector's, set as a ticket freezes it)",
    )

    @model_validator(mode="after")
    def _url_only_for_webhooks(self, info: ValidationInfo) -> Endpoint:
        if is_frozen(info):
            return self
        if self.url is not None and self.channel != ChannelKind.webhook:
            raise ValueError(
                f"a {self.channel.value} endpoint takes no url in the policy (it is a secret): "
                "give it in the ESCALATIONS_ENDPOINTS setting under the same name"
            )
        return self


class FloodLimit(Strict):
    """At most `limit` notices per `window` to one recipient through one endpoint; beyond, the
    notices of that window are grouped into one digest sent at the window's end."""

    limit: int = Field(ge=0)
    window: timedelta

    @field_validator("window")
    @classmethod
    def _window(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        if not is_frozen(info) and not timedelta(seconds=1) <= value <= timedelta(days=1):
            raise ValueError("window must be between 1 second and 1 day")
        return value


class RecipientChannels(Strict):
    """How one role or one person is reached: endpoints (email, slack, teams) and flood control."""

    endpoints: list[str] = Field(default_factory=list)
    email: str | None = Field(default=None, description="address for email endpoints (people only)")
    flood: FloodLimit | None = None


TemplateSet = dict[str, dict[str, str]]  # event type (or "default") -> part -> Jinja2 source


class Notifications(Strict):
    endpoints: list[Endpoint] = Field(default_factory=list)
    roles: dict[Recipient, RecipientChannels] = Field(
        default_factory=dict, description="per recipient role: endpoints and flood control"
    )
    people: dict[str, RecipientChannels] = Field(
        default_factory=dict, description="per person id: overrides the role's entry"
    )
    flood: FloodLimit | None = Field(default=None, description="default flood control for people's channels")
    templates: dict[Literal["email", "slack", "teams"], TemplateSet] = Field(
        default_factory=dict, description="overrides of the built-in templates"
    )
    retry_for: timedelta = Field(
        default=timedelta(days=2),
        ge=timedelta(minutes=1),
        description="how long an undelivered notice is retried before it is marked failed (and kept)",
    )
    retry_max_interval: timedelta = Field(
        default=timedelta(minutes=10), ge=timedelta(seconds=1), description="longest wait between two tries"
    )
