"""Agent and customer actions on a ticket: one route per action (`workflows.models.ACTIONS`), each
with its own body schema and the caller roles it serves, and the 422 handler that tells the ticket
about a body refused at the API's edge (`api/refusals.py`). Routes of `router`.
"""

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError

from api.auth import Caller, CallerRole, declared, requires
from api.client import ActionRefused
from api.deps import TICKET_LINKS, Context, TicketId, api_context, roles_of_action
from api.errors import action_refused, no_answer
from api.guard import validation_errors
from api.refusals import field_and_reason, reporting_actor
from workflows.models import ACTIONS, TicketStatus

log = structlog.get_logger("api")
router = APIRouter()
ACTION_ENDPOINTS: dict[Any, str] = {}  # endpoint function -> action name


def _check_actor(body: BaseModel, caller: Caller, roles: frozenset[CallerRole]) -> None:
    """403 unless the key may act as the body's actor: a role it holds, and itself unless a system key."""
    actor = getattr(body, "actor", None)
    if actor is None:
        return
    role = CallerRole(actor.role.value)
    if role not in caller.roles or role not in roles:
        raise HTTPException(403, f"key {caller.name!r} may not act as role {actor.role.value!r}")
    if not caller.is_system and actor.id != caller.name:
        raise HTTPException(403, f"key {caller.name!r} may act only as itself, not {actor.id!r}")


def _action_route(name: str, model: type[BaseModel]) -> None:
    roles = roles_of_action(name)

    async def act(
        ticket_id: TicketId,
        body: model,  # type: ignore[valid-type]
        caller: Annotated[Caller, Depends(requires(roles))],
        ctx: Context,
        idempotency_key: Annotated[
            str | None,
            Header(
                max_length=200,
                description="a retried request with the same key is applied once (it answers the status)",
            ),
        ] = None,
    ) -> TicketStatus:
        _check_actor(body, caller, roles)
        try:
            result: TicketStatus = await ctx.guard_missing(ctx.tickets.act(ticket_id, name, body, key=idempotency_key))
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            # The update may be applied after we stopped waiting: say how to retry safely.
            log.warning("temporal.timeout", ticket_id=ticket_id, action=name, keyed=idempotency_key is not None)
            raise no_answer(ctx.settings.api_temporal_timeout_seconds, idempotency_key is not None) from None
        except ActionRefused as refused:
            raise action_refused(refused, ["body"], key_at=["header", "idempotency-key"]) from None
        log.info("ticket.action", ticket_id=ticket_id, action=name, caller=caller.name)
        return result

    act.__name__ = f"action_{name}"
    ACTION_ENDPOINTS[act] = name
    router.post(
        f"/tickets/{{ticket_id}}/{name}",
        tags=["actions"],
        response_model=TicketStatus,
        summary=f"{name.replace('_', ' ').capitalize()}",
        responses={
            200: {"description": "applied: the ticket's status", "links": TICKET_LINKS},
            403: {"description": "the key may not act as this actor"},
            404: {"description": "no such ticket"},
            409: {"description": "refused: the ticket's state forbids it"},
            422: {"description": "refused: a field is wrong (the reason names it)"},
        },
        openapi_extra=declared(roles),
        operation_id=f"action_{name}",
    )(act)


for _name, _model in ACTIONS.items():
    _action_route(_name, _model)


async def refused_at_edge(request: Request, exc: Exception) -> JSONResponse:
    """422 for a body (or header) the route's model refuses; on an action route, called with a
    key that serves it, the ticket is told (`api/refusals.py`: best effort, after the answer)."""
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc)
    name = ACTION_ENDPOINTS.get(request.scope.get("endpoint"))
    caller = getattr(request.state, "caller", None)
    ticket_id = request.path_params.get("ticket_id")
    bad_path = any(list(e["loc"])[:1] == ["path"] for e in errors)
    if name and isinstance(caller, Caller) and isinstance(ticket_id, str) and not bad_path:
        try:
            field, reason = field_and_reason(errors)
            edge = api_context(request).edge
            edge.report(ticket_id, name, field, reason, reporting_actor(caller, roles_of_action(name), exc.body))
        except Exception as err:  # never at the cost of the answer
            log.warning("refusal_report.failed", error=type(err).__name__)
    return JSONResponse({"detail": errors}, status_code=422)


def install_edge_refusals(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, refused_at_edge)
