"""The policy's `helpdesks` section: how a helpdesk's ids, groups, priorities and statuses map to
this product's channel, category, priority, department and queue.

One entry per connector endpoint (its name is the key, the same name as in
`notifications.endpoints` and `ESCALATIONS_ENDPOINTS`, where its URL and credentials are). The
section is deployment data, not a decision: it is validated with the policy (`policy check`) but
not frozen into a ticket's history, so a corrected group id applies to running tickets too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from config.notification_schema import ChannelKind
from config.schema import Channel, Priority, Strict

Kind = Literal["zendesk", "jira", "freshdesk", "pagerduty"]

DEFAULT_PREFIX: dict[str, str] = {"zendesk": "ZD-", "jira": "JSM-", "freshdesk": "FD-", "pagerduty": "PD-"}

# Outbound events a helpdesk connector acts on; the rest (warnings, self-service answers) are not its business.
HELPDESK_EVENTS = ("ticket.reassigned", "ticket.escalated", "ticket.cc", "sla.breached", "ticket.resolved")


class HelpdeskMapping(Strict):
    """Their values (strings, as their API writes them) to ours and back."""

    kind: Kind
    ticket_prefix: str = Field(
        default="",
        max_length=20,
        pattern=r"^[A-Za-z0-9._:-]*$",
        description="our ticket id is this prefix + their ticket id (or issue key); default: KIND-",
    )
    queues: dict[str, str] = Field(
        default_factory=dict, description="our queue (departments.*.queues) -> their group id (Jira: ignored)"
    )
    agents: dict[str, str] = Field(
        default_factory=dict, description="our agent id -> their user id; unlisted: their id is used as ours"
    )
    priorities: dict[str, str] = Field(
        default_factory=dict, description="our priority (low|normal|high|urgent) -> theirs; unlisted: the same name"
    )
    categories: dict[str, str] = Field(
        default_factory=dict, description="their tag, type or request type -> our category (inbound)"
    )
    channels: dict[str, str] = Field(
        default_factory=dict, description="their source/channel -> our channel (inbound); unlisted: email"
    )
    resolved_statuses: list[str] = Field(
        default_factory=lambda: ["solved", "closed", "resolved", "done", "4", "5"],
        description="their statuses that mean resolved (inbound: a resolve action)",
    )
    pending_statuses: list[str] = Field(
        default_factory=lambda: ["pending", "3", "waiting for customer"],
        description="their statuses that mean waiting on the customer (inbound: pending_customer)",
    )
    resolved_status: str | None = Field(
        default=None, description="outbound: the status (Jira: the transition name) set when a ticket resolves here"
    )
    own_user: str | None = Field(
        default=None,
        description="their id of the API user the connector acts as: events it caused are echoes, never applied "
        "(`escalations connect` prints it)",
    )
    segment_tags: dict[str, str] = Field(
        default_factory=dict, description="their tag or organization -> our customer segment (inbound)"
    )

    @property
    def prefix(self) -> str:
        return self.ticket_prefix or DEFAULT_PREFIX[self.kind]


CHANNELS = tuple(c.value for c in Channel)


def helpdesk_problems(policy: Any) -> list[str]:
    """`helpdesks.<name>...`: queues, priorities and channels that exist here; the endpoint a webhook one."""
    problems: list[str] = []
    queues = {q for d in policy.departments.values() for q in d.queues.values()}
    endpoints: Mapping[str, Any] = {e.name: e for e in policy.notifications.endpoints}
    priorities = {p.value for p in Priority}
    prefixes: dict[str, str] = {}
    for name, mapping in policy.helpdesks.items():
        if mapping.kind != "pagerduty":  # two accounts on one prefix would act on each other's tickets
            other = prefixes.setdefault(mapping.prefix, name)
            if other != name:
                problems.append(
                    f"helpdesks.{name}.ticket_prefix: {mapping.prefix!r} is {other}'s too; give each its own"
                )
        place = f"helpdesks.{name}"
        for queue in mapping.queues:
            if queue not in queues:
                problems.append(f"{place}.queues.{queue}: unknown queue (known: {', '.join(sorted(queues))})")
        for ours in mapping.priorities:
            if ours not in priorities:
                problems.append(f"{place}.priorities.{ours}: unknown priority (one of: {', '.join(priorities)})")
        for theirs, ours in mapping.channels.items():
            if ours not in CHANNELS:
                problems.append(f"{place}.channels.{theirs}: unknown channel {ours!r} (one of: {', '.join(CHANNELS)})")
        endpoint = endpoints.get(name)
        if endpoint is not None and endpoint.channel != ChannelKind.webhook:
            problems.append(
                f"{place}: endpoint {name!r} is a {endpoint.channel.value} endpoint; a connector is a webhook one"
            )
    return problems
