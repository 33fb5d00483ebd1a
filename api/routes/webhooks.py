"""Inbound helpdesk webhooks: events signed per Standard Webhooks open tickets and act on them.

Verified by signature (not by API key), each `webhook-id` taken once: forgeries, stale timestamps
and replays get 401, also across restarts and replicas (the update id carries the webhook id).
Routes of `router`.
"""

import contextlib
import json
from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ValidationError
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import PUBLIC
from api.client import ActionRefused, actor_of
from api.deps import TICKET_ID, ApiContext, api_context
from api.errors import action_refused
from api.inbound import InboundRefused, verify_inbound
from api.refusals import field_and_reason
from api.retries import CLOSED
from workflows.models import ACTIONS, TicketRequest

router = APIRouter()


class InboundWebhook(BaseModel):
    """A helpdesk event: `ticket.created` (data: a ticket) or `ticket.action` (data: ticket_id, action, payload)."""

    type: Literal["ticket.created", "ticket.action"]
    data: dict[str, Any]


@router.post(
    "/webhooks/helpdesk",
    tags=["webhooks"],
    status_code=202,
    openapi_extra=PUBLIC | {"x-auth": "Standard Webhooks signature"},
    responses={
        401: {
            "description": "not verified: missing or wrong signature, stale timestamp, non-UTF-8 "
            "body, or a webhook-id already received"
        }
    },
)
async def helpdesk_webhook(request: Request) -> dict[str, Any]:
    """Inbound events from a helpdesk, signed per Standard Webhooks; forgeries and replays get 401."""
    ctx = api_context(request)
    settings, seen = ctx.settings, ctx.seen
    secret = settings.inbound_webhook_secret
    if secret is None:
        raise HTTPException(401, "inbound webhooks are not configured (ESCALATIONS_INBOUND_WEBHOOK_SECRET)")
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        webhook_id = verify_inbound(
            secret.get_secret_value(), body, headers, settings.inbound_webhook_tolerance_seconds
        )
    except InboundRefused as refused:
        raise HTTPException(401, f"webhook refused: {refused}") from None
    if not seen.claim(webhook_id):
        raise HTTPException(401, f"webhook refused: webhook-id {webhook_id!r} was already received")
    return await seen.answer_once(webhook_id, lambda: _inbound(ctx, webhook_id, body))


async def already_applied(ctx: ApiContext, ticket_id: str, update_id: str) -> bool:
    """Durable replay check: did any API process (before a restart, or a replica) send it?"""
    try:
        await ctx.tickets.handle(ticket_id).get_update_handle(update_id).result(rpc_timeout=timedelta(seconds=5))
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        if CLOSED in err.message:  # the ticket is closed: the action's own answer says so (409)
            return False
        if "update" not in err.message.lower():  # the ticket itself does not exist
            raise HTTPException(404, "no such ticket") from None
        # Not in this run; the ticket may have continued as new since: it carries its keys.
        with contextlib.suppress(Exception):  # a worker of a version before this query: no
            applied = await ctx.tickets.handle(ticket_id).query(
                "applied", update_id, result_type=bool, rpc_timeout=timedelta(seconds=5)
            )
            return applied is True
        return False
    except WorkflowUpdateRPCTimeoutOrCancelledError:  # not known either way: the sender tries again
        raise HTTPException(503, "Temporal did not answer in time; send the event again") from None
    except Exception:  # it exists and was refused: received all the same
        return True
    return True


async def _inbound(ctx: ApiContext, webhook_id: str, body: bytes) -> dict[str, Any]:
    try:
        event = InboundWebhook.model_validate(json.loads(body, parse_constant=_no_constant))
        if event.type == "ticket.created":
            ticket = TicketRequest.model_validate(event.data)
            opened = await ctx.bounded(ctx.tickets.open(ticket))
            attached = {} if opened.created else {"same_body": opened.same_body}
            return {"workflow_id": opened.workflow_id, "created": opened.created, **attached}
        action = str(event.data.get("action", ""))
        if action not in ACTIONS:
            raise HTTPException(
                422, [{"loc": ["body", "data", "action"], "msg": "unknown action", "type": "value_error"}]
            )
        ticket_id = event.data.get("ticket_id")
        if not isinstance(ticket_id, str) or not TICKET_ID.fullmatch(ticket_id):
            # The bounds of `Ticket.ticket_id`: anything else names no ticket (and a lone
            # surrogate cannot even be sent to Temporal).
            msg = "a ticket id is needed: 1 to 200 of A-Z a-z 0-9 . _ : -"
            raise HTTPException(422, [{"loc": ["body", "data", "ticket_id"], "msg": msg, "type": "value_error"}])
        raw_payload = event.data.get("payload", {})
        try:
            payload = ACTIONS[action].model_validate(raw_payload)
        except ValidationError as err:
            errors = _errors(err, "payload")
            field, reason = field_and_reason(errors, ("body", "data", "payload"))
            ctx.edge.report(ticket_id, action, field, reason, actor_of(raw_payload))  # verified sender
            raise HTTPException(422, errors) from None
    except ValidationError as err:
        raise HTTPException(422, _errors(err)) from None
    except (ValueError, RecursionError) as err:
        msg = f"not JSON the API accepts: {type(err).__name__}"
        raise HTTPException(422, [{"loc": ["body"], "msg": msg, "type": "json_invalid"}]) from None
    update_id = f"webhook:{webhook_id}"
    if await already_applied(ctx, ticket_id, update_id):
        raise HTTPException(401, f"webhook refused: webhook-id {webhook_id!r} was already received")
    try:
        await ctx.guard_missing(ctx.tickets.act(ticket_id, action, payload, update_id=update_id))
    except ActionRefused as refused:
        raise action_refused(refused, ["body", "data", "payload"]) from None
    return {"accepted": True}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _errors(err: ValidationError, *prefix: str) -> list[dict[str, Any]]:
    """Validation errors without the refused input (it may be anything)."""
    return [
        {"loc": ["body", "data", *prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in err.errors(include_url=False, include_input=False, include_context=False)
    ]
