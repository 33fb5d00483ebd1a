"""A ticket's audit timeline as a resource: JSON, CSV or Markdown, read from Temporal's history, the
workflow's own state, or the record store (`api/export/`). Routes of `router`.
"""

from typing import Any, Literal

import structlog
from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse

from api.auth import READERS, declared
from api.deps import Context, Reader, TicketId
from api.export import AuditTimeline, NotInStore, StoreUnavailable, audit, render_timeline
from api.guard import safe_json

log = structlog.get_logger("api")
router = APIRouter()


@router.get(
    "/tickets/{ticket_id}/timeline",
    tags=["audit"],
    response_model=AuditTimeline,
    responses={
        200: {"content": {"text/csv": {}, "text/markdown": {}}},
        503: {"description": "Temporal or the record store cannot be reached now"},
    },
    openapi_extra=declared(READERS),
    operation_id="ticket_timeline",
)
async def ticket_timeline(
    ticket_id: TicketId,
    caller: Reader,
    ctx: Context,
    format: Literal["json", "csv", "md"] = "json",
    source: Literal["history", "state", "store"] = "history",
) -> Any:
    """The audit timeline, built from the workflow's event history (default), its own state, or
    the record store; from the store whenever Temporal no longer has the ticket. The header
    `X-Timeline-Source` (and `read_from` in JSON) says which was read."""
    try:
        found = await ctx.guard_missing(audit(ctx.client, ticket_id, ctx.settings.store_database_url, source))
    except NotInStore:
        raise HTTPException(404, "no such ticket") from None
    except StoreUnavailable as err:  # not the caller's fault, and not a 500: try again later
        log.warning("store.unavailable", ticket_id=ticket_id, error=str(err))
        raise HTTPException(503, f"{err}; try again later", headers={"Retry-After": "5"}) from None
    headers = {"X-Timeline-Source": found.read_from}
    if format == "json":  # one row model for every source and format (api/export/normalize.py)
        # A history may hold anything a caller once sent (a binary signal payload, ...).
        body = {"ticket_id": ticket_id, "read_from": found.read_from, "events": safe_json(found.entries)}
        if found.store is not None:
            body["store"] = found.store
        return JSONResponse(body, headers=headers)
    media = "text/csv" if format == "csv" else "text/markdown"
    text = render_timeline(ticket_id, found.entries, format, found.read_from, found.store)
    return PlainTextResponse(text, media_type=media, headers=headers)
