"""Actions the API refuses at its edge, recorded on the ticket they were meant for.

A malformed action body (`POST /tickets/{id}/{action}`, or the payload of a verified helpdesk
`ticket.action` webhook) is refused with 422 before the ticket sees it, so nothing of it reaches
the ticket's history. Like the CLI and the Python client (`TicketClient.report_refusal`), the API
then tells the ticket with the `record_refusal` signal (`via: api`), and the ticket records a
`refused` row with the field and the reason (docs/auditing.md). Rules:

- only for a caller whose key serves the route (`api.auth.requires` leaves it on the request
  before the body is validated), or a webhook whose signature verified: an unauthenticated
  request never writes on a ticket;
- the row's actor is the key, `role:<key name>` (a role the key has and the route serves,
  the body's claimed role when it is one of those), never the body's claimed actor id;
- best effort, after the answer: the 422 is never delayed, never turned into a 5xx; a report for
  a ticket that does not exist is dropped by Temporal (a signal, never a start);
- bounded: at most `MAX_PENDING` reports in flight per API process (more are dropped and logged),
  each waits at most the API's Temporal timeout, and the ticket records at most 100 per run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import structlog
from pydantic import ValidationError

from api.auth import Caller, CallerRole
from api.client import TicketClient
from workflows.models import Actor

log = structlog.get_logger("api")

MAX_PENDING = 100


class EdgeRefusals:
    """Sends refusal reports in the background, a bounded number at a time."""

    def __init__(self, tickets: TicketClient, timeout: float) -> None:
        self._tickets = tickets
        self._timeout = timeout
        self._pending: set[asyncio.Task[bool]] = set()

    def report(self, ticket_id: str, action: str, field: str, reason: str, actor: Actor | None) -> bool:
        """Schedule the report; False (and a warning) when too many are in flight already."""
        log.info(
            "action.refused",
            ticket_id=ticket_id,
            action=action,
            actor=f"{actor.role.value}:{actor.id}" if actor else None,
            via="api",
            reason=f"{field}: {reason}"[:300],
        )
        if len(self._pending) >= MAX_PENDING:
            log.warning("refusal_report.dropped", ticket_id=ticket_id, action=action, in_flight=len(self._pending))
            return False
        task = asyncio.get_running_loop().create_task(self._send(ticket_id, action, field, reason, actor))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    async def _send(self, ticket_id: str, action: str, field: str, reason: str, actor: Actor | None) -> bool:
        with contextlib.suppress(Exception):
            return await asyncio.wait_for(
                self._tickets.report_refusal(ticket_id, action, field, reason, actor, via="api"), self._timeout
            )
        return False


def field_and_reason(errors: list[dict[str, Any]], prefix: Iterable[str | int] = ("body",)) -> tuple[str, str]:
    """The refused field (dotted, relative to the action's payload; `payload` for the whole of it)
    and the reason, from 422 error entries; body errors come first."""
    head = list(prefix)
    in_body = [e for e in errors if list(e.get("loc", []))[: len(head)] == head]
    chosen = in_body or errors
    if not chosen:
        return "payload", "refused at the API's edge"

    def field_of(error: dict[str, Any]) -> str:
        loc = list(error.get("loc", []))
        inner = loc[len(head) :] if loc[: len(head)] == head else loc
        return ".".join(str(p) for p in inner) or "payload"

    first = chosen[0]
    reason = str(first.get("msg") or "invalid")
    others = [field_of(e) for e in chosen[1:]]
    if others:
        reason += f" (and {len(others)} more: {', '.join(others[:10])})"
    return field_of(first), reason


def reporting_actor(caller: Caller, served: Iterable[CallerRole], body: Any) -> Actor | None:
    """The key that sent a refused action, as an actor: its name, and a role it has that the route
    serves (the role the body claims, when it is one of those)."""
    usable = sorted(r.value for r in caller.roles & frozenset(served) if r is not CallerRole.auditor)
    if not usable:
        return None
    claimed = body.get("actor") if isinstance(body, Mapping) else None
    claimed_role = claimed.get("role") if isinstance(claimed, Mapping) else None
    if claimed_role in usable:
        role = str(claimed_role)
    elif CallerRole.system.value in usable:
        role = CallerRole.system.value
    else:
        role = usable[0]
    try:
        return Actor.model_validate({"id": caller.name, "role": role})
    except ValidationError:
        return None
