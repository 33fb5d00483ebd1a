"""The policy as a ticket freezes it, and a cache of the frozen policies, one per fingerprint.

`frozen_policy` is what a ticket opened in a given year carries (the worker's `load_policy` and the
simulator both use it). Workflows rebuild their policy from the snapshot in their history at every
start and replay; sharing one decoded object per fingerprint saves each open ticket its own copy.
"""

from __future__ import annotations

from typing import Any

from config.holiday_dates import holiday_years, resolve_holidays
from config.model import Policy
from config.notification_schema import ChannelKind, Endpoint
from config.schema import FROZEN

_SNAPSHOTS: dict[str, Policy] = {}
_SNAPSHOTS_MAX = 64


def policy_from_snapshot(fingerprint: str, document: dict[str, Any]) -> Policy:
    """The `Policy` of a snapshot, validated once per fingerprint and shared by every ticket using it.

    Safe inside workflows: the result depends only on the document (policies are frozen, and the
    fingerprint is a hash of the same document), so sharing changes no decision; it saves each
    open ticket its own copy and each workflow start a full validation.
    """
    cached = _SNAPSHOTS.get(fingerprint)
    if cached is not None:
        return cached
    policy = Policy.model_validate(document, context=FROZEN)
    if len(_SNAPSHOTS) >= _SNAPSHOTS_MAX:
        _SNAPSHOTS.pop(next(iter(_SNAPSHOTS)))
    _SNAPSHOTS[fingerprint] = policy
    return policy


def frozen_policy(policy: Policy, year: int, *, webhook_url_set: bool = False) -> Policy:
    """The policy a ticket opened in `year` carries: holidays expanded, endpoints by name only, no
    helpdesk mapping.

    A URL (or the worker's `WEBHOOK_URL`, `webhook_url_set`) is looked up again at delivery, never
    frozen; with `WEBHOOK_URL` set, the policy's webhook endpoints give way to the one it names."""
    policy = resolve_holidays(policy, holiday_years(year))
    endpoints = [e.model_copy(update={"url": None}) for e in policy.notifications.endpoints]
    # A helpdesk connector acts only on the tickets it opened (its ids carry its prefix): a ticket
    # from elsewhere gets no notice to it, rather than one delivered as "nothing to do".
    endpoints = [
        e.model_copy(update={"ticket_prefix": policy.helpdesks[e.name].prefix})
        if e.name in policy.helpdesks and policy.helpdesks[e.name].kind != "pagerduty" and e.ticket_prefix is None
        else e
        for e in endpoints
    ]
    if webhook_url_set:  # helpdesk connectors are not webhooks to replace: they stay
        endpoints = [e for e in endpoints if e.channel != ChannelKind.webhook or e.name in policy.helpdesks]
        endpoints.insert(0, Endpoint(name="settings"))
    notifications = policy.notifications.model_copy(update={"endpoints": endpoints})
    # The helpdesk mapping is deployment data, read from the worker's policy file at delivery.
    return policy.model_copy(update={"notifications": notifications, "helpdesks": {}})


def ticket_policy(policy: Policy, year: int, *, webhook_url_set: bool = False) -> Policy:
    """The `Policy` object a ticket opened in `year` decides with: frozen, then read back from its
    snapshot document exactly as the workflow reads it (the simulator decides with this one)."""
    frozen = frozen_policy(policy, year, webhook_url_set=webhook_url_set)
    return policy_from_snapshot(frozen.fingerprint(), frozen.model_dump(mode="json"))
