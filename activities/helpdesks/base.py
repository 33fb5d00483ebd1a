"""The one small interface every helpdesk connector implements, and the values it exchanges.

Inbound: `read(...)` turns one verified helpdesk event into what it means here: a ticket to open,
actions on a ticket (each with the agent as actor), or nothing (an echo of the connector's own
change, or an event this product has no use for). Verification is separate (`verify(...)`), so a
route answers 401 before it parses anything.

Outbound: `apply(...)` carries out one of this product's events (reassigned, escalated, cc,
breached, resolved) through the helpdesk's API: group, assignee, priority, a private note, CCs,
status. It raises `HelpdeskError`, whose `retry_after` and `permanent` tell the activity how to
retry; the delivery (activities/helpdesk_delivery.py) owns timeouts, metrics and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from config.helpdesk_schema import HelpdeskMapping
from config.settings import EndpointSettings
from workflows.messages import OutboundEvent


class InboundRefused(Exception):
    """Not verified (forged, stale, replayed, unauthenticated): a 401 whose detail is the message."""


class InboundInvalid(Exception):
    """Verified but not an event this connector can read: a 422 naming the field (`field`)."""

    def __init__(self, field_path: str, reason: str) -> None:
        super().__init__(f"{field_path}: {reason}")
        self.field = field_path
        self.reason = reason


@dataclass(frozen=True)
class Act:
    """One action on one ticket; `key` is unique per helpdesk event and action (the update id's tail)."""

    ticket_id: str
    action: str
    payload: dict[str, Any]
    key: str


@dataclass(frozen=True)
class Inbound:
    """What one helpdesk event means here. `open` is a ticket (TicketRequest fields) to open;
    `actions` are applied in order after it; `ignored` says why nothing is done."""

    event_id: str
    open: dict[str, Any] | None = None
    actions: list[Act] = field(default_factory=list)
    ignored: str | None = None


class HelpdeskError(Exception):
    """An outbound call failed. `permanent`: retrying cannot help (401, 403, 404, 422);
    `retry_after`: the helpdesk said when to come back (429, 503 with Retry-After)."""

    def __init__(self, message: str, *, status: int | None, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True)
class Applied:
    """What an outbound event did there: `calls` like 'PUT /api/v2/tickets/35436 200'; skipped when
    the event names no ticket of this helpdesk (opened elsewhere) or it has nothing to do."""

    calls: list[str]
    skipped: str | None = None


@dataclass(frozen=True)
class Check:
    """The answer of `connect`: ok, or the one line that says what is wrong; `own_user` is the API
    user's id there (for `own_user` in the mapping)."""

    ok: bool
    message: str
    own_user: str | None = None


class Connector(Protocol):
    kind: str

    def verify(
        self, body: bytes, headers: Mapping[str, str], credentials: EndpointSettings, tolerance_seconds: int
    ) -> str:
        """The event's id if the request is authentic and fresh, else `InboundRefused`."""
        ...

    def read(self, body: bytes, mapping: HelpdeskMapping, event_id: str) -> Inbound:
        """What the verified event means here; `InboundInvalid` for a body it cannot read."""
        ...

    async def apply(
        self,
        event: OutboundEvent,
        queue: str | None,
        heads: list[str],
        mapping: HelpdeskMapping,
        credentials: EndpointSettings,
        client: httpx.AsyncClient,
        key: str,
    ) -> Applied:
        """Carry out one event of this product there. `queue` is our queue for the event's tier and
        department, `heads` the emails to CC, `key` unique per ticket life and event (stable across retries)."""
        ...

    async def check(self, mapping: HelpdeskMapping, credentials: EndpointSettings, client: httpx.AsyncClient) -> Check:
        """`escalations connect`: the credentials work and every mapped group exists there."""
        ...

    def setup_text(self, mapping: HelpdeskMapping, webhook_url: str) -> str:
        """What to paste into the helpdesk: the webhook URL, the events, where the secret goes."""
        ...
