"""What every route shares: the app's `ApiContext` (settings, the ticket client, page tokens, the
inbound webhook ids seen, edge refusals) as a FastAPI dependency, the caller roles each kind of
route serves, and the path parameter that names a ticket.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request
from temporalio.client import Client

from api.auth import ACTORS, OPERATORS, READERS, SYSTEM, Caller, CallerRole, requires
from api.client import TicketClient
from api.errors import bounded, guard_missing
from api.inbound import SeenIds
from api.refusals import EdgeRefusals
from config.settings import Settings
from workflows.models import ACTIONS

T = TypeVar("T")

# The ticket id in a path: the same bounds as `Ticket.ticket_id`, so a path never names what
# could not be a ticket (and never reaches Temporal as an oversized workflow id).
TicketId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")]
TICKET_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")

# Roles of the customer-side actions (no actor: the platform speaks for the customer).
CUSTOMER_SIDE = {"customer_replied", "confirm_solved"}
OPERATOR_ACTIONS = {"redeliver", "discard_notices"}

# OpenAPI links from an opened ticket to what can be done with it (schemathesis' stateful phase
# follows them: open a ticket, then act on it and read it).
TICKET_LINKS: dict[str, Any] = {
    op: {"operationId": op, "parameters": {"ticket_id": "$response.body#/ticket_id"}}
    for op in ("ticket_status", "ticket_timeline", *(f"action_{name}" for name in ACTIONS))
}

SystemCaller = Annotated[Caller, Depends(requires(SYSTEM))]
Reader = Annotated[Caller, Depends(requires(READERS))]


def roles_of_action(name: str) -> frozenset[CallerRole]:
    if name in CUSTOMER_SIDE:
        return SYSTEM
    if name in OPERATOR_ACTIONS:
        return OPERATORS
    return ACTORS


class PageTokens:
    """Visibility page tokens, sealed with an HMAC of their own key so a forged token never
    reaches Temporal. The key is `ESCALATIONS_PAGE_TOKEN_KEY`; unset, a random one per process
    (tokens then end with it)."""

    def __init__(self, secret: str | None) -> None:
        material = secret.encode() if secret else secrets.token_bytes(32)
        self._key = hashlib.sha256(b"page-token:" + material).digest()

    def seal(self, raw: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.digest(self._key, raw, "sha256")[:16] + raw).decode()

    def open(self, token: str) -> bytes | None:
        try:
            data = base64.urlsafe_b64decode(token)
        except (binascii.Error, ValueError):
            return None
        mac, raw = data[:16], data[16:]
        if len(mac) < 16 or not raw:
            return None
        return raw if hmac.compare_digest(mac, hmac.digest(self._key, raw, "sha256")[:16]) else None


@dataclass
class ApiContext:
    """One per app (`app.state.context`): what the routes reach Temporal and each other with."""

    settings: Settings
    client: Client
    tickets: TicketClient
    pages: PageTokens
    seen: SeenIds
    edge: EdgeRefusals

    @classmethod
    def build(cls, settings: Settings, client: Client) -> ApiContext:
        tickets = TicketClient(client, settings.task_queue)
        page_key = settings.page_token_key
        return cls(
            settings=settings,
            client=client,
            tickets=tickets,
            pages=PageTokens(page_key.get_secret_value() if page_key else None),
            seen=SeenIds(settings.inbound_webhook_tolerance_seconds),
            # Refusals here, told the ticket.
            edge=EdgeRefusals(tickets, settings.api_temporal_timeout_seconds),
        )

    async def bounded(self, coro: Awaitable[T]) -> T:
        return await bounded(coro, self.settings.api_temporal_timeout_seconds)

    async def guard_missing(self, coro: Awaitable[T]) -> T:
        return await guard_missing(coro, self.settings.api_temporal_timeout_seconds)


def api_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


Context = Annotated[ApiContext, Depends(api_context)]
