"""Tickets as a resource: open one (idempotent on its id), search them by the contract's search
attributes, read one's status. Routes of `APIRouter` `router`, included by `api/server.py`.
"""

from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field
from temporalio.service import RPCError, RPCStatusCode

from api.auth import READERS, SYSTEM, declared
from api.deps import TICKET_LINKS, Context, Reader, SystemCaller, TicketId
from config.policy import Channel, Priority
from workflows.models import State, TicketRequest, TicketStatus

log = structlog.get_logger("api")
router = APIRouter()


class Opened(BaseModel):
    ticket_id: str
    workflow_id: str
    created: bool
    same_body: bool | None = Field(
        default=None,
        description="attached (created false): whether the running ticket was opened with this same body "
        "(false: it runs with its first body; this one was not applied); null when it could not be read",
    )


class TicketRow(BaseModel):
    ticket_id: str
    workflow_id: str
    status: str
    tier: int | None = None
    state: str | None = None
    priority: str | None = None
    department: str | None = None
    assignee: str | None = None
    sla_breached: bool | None = None
    escalation_count: int | None = None
    next_sla_deadline: str | None = None


class TicketPage(BaseModel):
    tickets: list[TicketRow]
    next_page_token: str | None


def _rows_value(attrs: Any, name: str) -> Any:
    values = attrs.get(name) if attrs else None
    if not values:
        return None
    value = values[0]
    return value.isoformat() if hasattr(value, "isoformat") else value


@router.post(
    "/tickets",
    tags=["tickets"],
    status_code=201,
    response_model=Opened,
    responses={
        200: {"model": Opened, "description": "the ticket already runs; attached", "links": TICKET_LINKS},
        201: {"description": "opened", "links": TICKET_LINKS},
    },
    openapi_extra=declared(SYSTEM),
    operation_id="open_ticket",
)
async def open_ticket(ticket: TicketRequest, caller: SystemCaller, response: Response, ctx: Context) -> Opened:
    """Open a ticket; idempotent on `ticket_id` (a second call attaches to the running workflow)."""
    opened = await ctx.bounded(ctx.tickets.open(ticket))
    if not opened.created:
        response.status_code = 200
    log.info("ticket.opened", ticket_id=ticket.ticket_id, created=opened.created, caller=caller.name)
    return Opened(
        ticket_id=ticket.ticket_id,
        workflow_id=opened.workflow_id,
        created=opened.created,
        same_body=None if opened.created else opened.same_body,
    )


@router.get("/tickets", tags=["tickets"], response_model=TicketPage, openapi_extra=declared(READERS))
async def list_tickets(
    caller: Reader,
    ctx: Context,
    tier: Annotated[int | None, Query(ge=0, le=9)] = None,
    state: State | None = None,
    priority: Priority | None = None,
    department: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = None,
    assignee: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.@-]{1,128}$")] = None,
    breached: bool | None = None,
    channel: Channel | None = None,
    category: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = None,
    min_escalations: Annotated[int | None, Query(ge=0, le=1000)] = None,
    deadline_before: Annotated[datetime | None, Query(description="next SLA deadline before (RFC 3339)")] = None,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    page_token: Annotated[str | None, Query(max_length=4096)] = None,
) -> TicketPage:
    """Search by the contract's search attributes, paged (values are validated, never spliced raw)."""
    if deadline_before is not None and deadline_before.tzinfo is None:
        raise HTTPException(
            422, [{"loc": ["query", "deadline_before"], "msg": "needs a UTC offset", "type": "value_error"}]
        )
    try:
        deadline_utc = deadline_before.astimezone(UTC).isoformat() if deadline_before else None
    except OverflowError:  # 9999-12-31T23:59-23:59 is past the end of time in UTC
        raise HTTPException(
            422, [{"loc": ["query", "deadline_before"], "msg": "out of range in UTC", "type": "value_error"}]
        ) from None
    # Every value is an int, an enum, a bool, a datetime or a pattern-checked string: safe to quote.
    filters: list[tuple[str, object]] = [
        ("TicketTier = {}", tier),
        ("TicketState = '{}'", state.value if state else None),
        ("TicketPriority = '{}'", priority.value if priority else None),
        ("TicketDepartment = '{}'", department),
        ("TicketAssignee = '{}'", assignee),
        ("SlaBreached = {}", None if breached is None else str(breached).lower()),
        ("TicketChannel = '{}'", channel.value if channel else None),
        ("TicketCategory = '{}'", category),
        ("EscalationCount >= {}", min_escalations),
        ("NextSlaDeadline < '{}'", deadline_utc),
    ]
    clauses = [template.format(value) for template, value in filters if value is not None]
    token = ctx.pages.open(page_token) if page_token else None
    if page_token and token is None:
        raise HTTPException(
            400, [{"loc": ["query", "page_token"], "msg": "not a page token of this API", "type": "value_error"}]
        )
    try:
        found, next_token = await ctx.bounded(ctx.tickets.search(" AND ".join(clauses), page_size, token))
    except RPCError as err:
        if err.status == RPCStatusCode.INVALID_ARGUMENT:
            raise HTTPException(
                422, [{"loc": ["query", "page_token"], "msg": err.message, "type": "value_error"}]
            ) from None
        raise
    rows = []
    for wf in found:
        attrs = wf.search_attributes
        rows.append(
            TicketRow(
                ticket_id=wf.id.removeprefix("ticket-"),
                workflow_id=wf.id,
                status=wf.status.name.lower() if wf.status else "unknown",
                tier=_rows_value(attrs, "TicketTier"),
                state=_rows_value(attrs, "TicketState"),
                priority=_rows_value(attrs, "TicketPriority"),
                department=_rows_value(attrs, "TicketDepartment"),
                assignee=_rows_value(attrs, "TicketAssignee"),
                sla_breached=_rows_value(attrs, "SlaBreached"),
                escalation_count=_rows_value(attrs, "EscalationCount"),
                next_sla_deadline=_rows_value(attrs, "NextSlaDeadline"),
            )
        )
    return TicketPage(tickets=rows, next_page_token=ctx.pages.seal(next_token) if next_token else None)


@router.get(
    "/tickets/{ticket_id}",
    tags=["tickets"],
    response_model=TicketStatus,
    openapi_extra=declared(READERS),
    operation_id="ticket_status",
)
async def ticket_status(ticket_id: TicketId, caller: Reader, ctx: Context) -> TicketStatus:
    result: TicketStatus = await ctx.guard_missing(ctx.tickets.status(ticket_id))
    return result
