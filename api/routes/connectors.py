"""Inbound events of the helpdesks teams run (Zendesk, Jira Service Management, Freshdesk).

`POST /webhooks/{name}`, where `name` is a connector in the policy's `helpdesks` section: the
helpdesk's own verification (Zendesk's and Jira's signatures, Freshdesk's shared header secret),
then its event read by the connector into a ticket to open and actions with the agent as actor.
Replays are refused like the generic webhook's: this process's seen ids, then Temporal itself
(each action's update id is `<name>:<event id>:<n>`). What the ticket refuses is recorded on its
timeline and answered 202 with the reason, so the helpdesk does not retry it for hours; an echo
of the connector's own change is answered 202 `ignored`. Routes of `router`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from activities.helpdesks import CONNECTORS
from activities.helpdesks.base import Connector, Inbound, InboundInvalid, InboundRefused
from activities.policy_file import PolicyFile
from api.auth import PUBLIC
from api.client import ActionRefused
from api.deps import ApiContext, api_context
from api.routes.webhooks import already_applied
from config.helpdesk_schema import HelpdeskMapping
from workflows.models import ACTIONS, TicketRequest

router = APIRouter()
NAME = r"^[A-Za-z0-9_-]{1,64}$"
MAX_EVENT_ID = 150  # with the connector's name and the action's number, within Temporal's update id limit


def _text(value: str) -> str:
    """Text from a helpdesk's body, safe in a JSON answer (a lone surrogate would fail to encode)."""
    return value.encode("utf-8", "replace").decode("utf-8")[:500]


@router.post(
    "/webhooks/{name}",
    tags=["webhooks"],
    status_code=202,
    openapi_extra=PUBLIC | {"x-auth": "the helpdesk's own signature or shared secret"},
    responses={
        401: {"description": "not verified: forged, stale, unauthenticated, or an event already received"},
        404: {"description": "no helpdesk connector of that name in the policy"},
        503: {"description": "the API has no valid policy file yet (the helpdesk retries)"},
        422: {"description": "verified, but not an event of that helpdesk this product can read (names the field)"},
    },
)
async def connector_webhook(name: Annotated[str, PathParam(pattern=NAME)], request: Request) -> dict[str, Any]:
    """An event of the helpdesk: a ticket opened there opens here; an agent's change becomes one action."""
    ctx = api_context(request)
    mapping = _mapping(request, ctx, name)
    credentials = ctx.settings.endpoints.get(name)
    if credentials is None or credentials.secret is None:
        raise HTTPException(401, f"webhook refused: {name} has no secret in ESCALATIONS_ENDPOINTS")
    connector = CONNECTORS[mapping.kind]
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        event_id = connector.verify(body, headers, credentials, ctx.settings.inbound_webhook_tolerance_seconds)
    except InboundRefused as refused:
        raise HTTPException(401, f"webhook refused: {_text(str(refused))}") from None
    except Exception as err:  # a body that breaks the check (nesting, NaN, ...) is not verified either
        raise HTTPException(401, f"webhook refused: unreadable request ({type(err).__name__})") from None
    if not (0 < len(event_id) <= MAX_EVENT_ID and event_id.isascii() and event_id.isprintable()):
        msg = f"the event's id must be 1 to {MAX_EVENT_ID} printable ASCII characters"
        raise HTTPException(422, [{"loc": ["body", "id"], "msg": msg, "type": "value_error"}])
    seen_id = f"{name}:{event_id}"
    if not ctx.seen.claim(seen_id):
        raise HTTPException(401, f"webhook refused: event {event_id!r} was already received")
    return await ctx.seen.answer_once(seen_id, lambda: _apply(ctx, name, connector, mapping, body, event_id))


def _mapping(request: Request, ctx: ApiContext, name: str) -> HelpdeskMapping:
    """The connector's mapping from the API's policy file (re-read when the file changes)."""
    state = request.app.state
    if not hasattr(state, "policy_file"):
        state.policy_file = PolicyFile(ctx.settings)
    try:
        helpdesks = state.policy_file.current().helpdesks
    except ApplicationError as err:  # no good policy file yet: the helpdesk retries later, nothing is lost
        raise HTTPException(503, f"the policy file cannot be read: {str(err).splitlines()[0][:200]}") from None
    if name not in helpdesks or helpdesks[name].kind == "pagerduty":
        raise HTTPException(404, f"no helpdesk connector {name!r} in the policy's helpdesks")
    mapping: HelpdeskMapping = helpdesks[name]
    return mapping


async def _apply(
    ctx: ApiContext, name: str, connector: Connector, mapping: HelpdeskMapping, body: bytes, event_id: str
) -> dict[str, Any]:
    try:
        inbound: Inbound = connector.read(body, mapping, event_id)
    except InboundInvalid as bad:
        loc = ["body", *[_text(p) for p in re.split(r"[.\[\]]+", bad.field) if p]]
        raise HTTPException(422, [{"loc": loc, "msg": _text(bad.reason), "type": "value_error"}]) from None
    except Exception as err:  # a shape the connector did not foresee: refused, never a 500
        msg = f"not an event this connector can read ({type(err).__name__})"
        raise HTTPException(422, [{"loc": ["body"], "msg": msg, "type": "value_error"}]) from None
    if inbound.ignored is not None:
        return {"event_id": event_id, "ignored": _text(inbound.ignored)}
    answer: dict[str, Any] = {"event_id": event_id}
    if inbound.open is not None:
        try:
            ticket = TicketRequest.model_validate(inbound.open)
        except ValidationError as err:
            first = err.errors(include_url=False, include_input=False)[0]
            loc = ["body", "ticket", *map(str, first["loc"])]
            raise HTTPException(422, [{"loc": loc, "msg": first["msg"], "type": first["type"]}]) from None
        opened = await ctx.bounded(ctx.tickets.open(ticket))
        answer["opened"] = {"ticket_id": ticket.ticket_id, "workflow_id": opened.workflow_id, "created": opened.created}
    outcomes: list[dict[str, Any]] = []
    for act in inbound.actions:
        outcome: dict[str, Any] = {"ticket_id": act.ticket_id, "action": act.action}
        update_id = f"{name}:{act.key}"
        try:
            payload = ACTIONS[act.action].model_validate(act.payload)
            if await already_applied(ctx, act.ticket_id, update_id):
                outcome["outcome"] = "already applied"
            else:
                await ctx.guard_missing(ctx.tickets.act(act.ticket_id, act.action, payload, update_id=update_id))
                outcome["outcome"] = "accepted"
        except ActionRefused as refused:  # recorded on the ticket's timeline and counted there
            outcome |= {"outcome": "refused", "field": refused.field, "reason": _text(refused.reason)}
        except (ValidationError, KeyError) as err:
            outcome |= {"outcome": "refused", "reason": f"not an action this product takes: {type(err).__name__}"}
        except HTTPException as err:
            if err.status_code not in (404, 409):
                raise
            # A ticket opened before the connector, or closed: nothing here to act on; retrying cannot help.
            outcome |= {"outcome": "no ticket" if err.status_code == 404 else "closed", "reason": str(err.detail)}
        outcomes.append(outcome)
    answer["actions"] = outcomes
    return answer
