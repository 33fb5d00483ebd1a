"""The HTTP API: how platform teams and agents reach tickets without a Temporal SDK.

Every route needs an API key (`Authorization: Bearer <key>` or `X-API-Key`) and declares the
caller roles it serves (`api/auth.py`; OpenAPI shows them as `x-roles`); the webhook route is
verified by its signature instead. Each agent action is its own route with its own body schema,
so the OpenAPI document describes exactly what the workflow accepts. A refused action answers 409
(the ticket's state forbids it) or 422 (a field is wrong), with the workflow's reason; the ticket
is unchanged. No input gets a 500 (`api/guard.py`).
"""

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from importlib.metadata import version as package_version
from typing import Annotated, Any, Literal

import structlog
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ValidationError
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from api import metrics as api_metrics
from api.auth import (
    ACTORS,
    OPERATORS,
    PUBLIC,
    READERS,
    SYSTEM,
    Caller,
    CallerRole,
    KeyRing,
    declared,
    requires,
)
from api.client import CLOSED, ActionRefused, TicketClient, _actor_of
from api.docs import mount_docs
from api.export import AuditTimeline, render_timeline
from api.guard import BodyGuard, install_error_handlers, safe_json, validation_errors
from api.inbound import InboundRefused, SeenIds, verify_inbound
from api.refusals import EdgeRefusals, field_and_reason, reporting_actor
from config.policy import Channel, Priority
from config.settings import Settings
from workers.health import add_health_routes
from workers.telemetry import instrument_api
from workflows.models import ACTIONS, State, TicketRequest, TicketStatus

log = structlog.get_logger("api")


class Opened(BaseModel):
    ticket_id: str
    workflow_id: str
    created: bool


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


class InboundWebhook(BaseModel):
    """A helpdesk event: `ticket.created` (data: a ticket) or `ticket.action` (data: ticket_id, action, payload)."""

    type: Literal["ticket.created", "ticket.action"]
    data: dict[str, Any]


def _rows_value(attrs: Any, name: str) -> Any:
    values = attrs.get(name) if attrs else None
    if not values:
        return None
    value = values[0]
    return value.isoformat() if hasattr(value, "isoformat") else value


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


def create_app(settings: Settings, client: Client) -> FastAPI:
    tickets = TicketClient(client, settings.task_queue)
    keys = KeyRing.from_settings(settings)
    page_key = settings.page_token_key
    pages = PageTokens(page_key.get_secret_value() if page_key else None)
    seen = SeenIds(settings.inbound_webhook_tolerance_seconds)
    edge = EdgeRefusals(tickets, settings.api_temporal_timeout_seconds)  # refusals here, told the ticket
    app = FastAPI(
        title="Ticket escalations",
        version=package_version("ticket-escalations"),
        description="Open support tickets as durable Temporal workflows, act on them, audit them. "
        "Each route serves the caller roles listed in its `x-roles`.",
        docs_url=None,  # served from local assets by api/docs.py: the CDN pages are blank offline
        redoc_url=None,
    )
    mount_docs(app, app.title)
    app.add_middleware(BodyGuard, max_body_bytes=settings.api_max_body_bytes)
    install_error_handlers(app)
    app.state.keys = keys
    app.state.edge_refusals = edge
    api_metrics.install(app)  # GET /metrics: request counts and latency by route template
    instrument_api(app, settings)  # tracing, when ESCALATIONS_TRACING is on

    SystemCaller = Annotated[Caller, Depends(requires(SYSTEM))]
    Reader = Annotated[Caller, Depends(requires(READERS))]

    async def bounded(coro: Any) -> Any:
        """No request waits on Temporal longer than API_TEMPORAL_TIMEOUT_SECONDS (503 after):
        a ticket whose workflow task fails would otherwise hold an update or query forever."""
        return await asyncio.wait_for(coro, settings.api_temporal_timeout_seconds)

    async def guard_missing(coro: Any) -> Any:
        """Map Temporal's answers about the ticket itself to 404/409 (the rest: `api/guard.py`)."""
        try:
            return await bounded(coro)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise HTTPException(404, "no such ticket") from None
            if err.status == RPCStatusCode.FAILED_PRECONDITION:
                # Closed, or its workflow task is failing: either way it cannot take this now.
                raise HTTPException(409, f"the ticket cannot take this now: {err.message}") from None
            raise
        except WorkflowQueryFailedError as err:
            raise HTTPException(409, f"the ticket cannot answer: {err.message}") from None

    add_health_routes(app, client, openapi_extra=PUBLIC)  # /healthz, /readyz (Temporal reachable)

    @app.post(
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
    async def open_ticket(ticket: TicketRequest, caller: SystemCaller, response: Response) -> Opened:
        """Open a ticket; idempotent on `ticket_id` (a second call attaches to the running workflow)."""
        opened = await bounded(tickets.open(ticket))
        if not opened.created:
            response.status_code = 200
        log.info("ticket.opened", ticket_id=ticket.ticket_id, created=opened.created, caller=caller.name)
        return Opened(ticket_id=ticket.ticket_id, workflow_id=opened.workflow_id, created=opened.created)

    @app.get("/tickets", tags=["tickets"], response_model=TicketPage, openapi_extra=declared(READERS))
    async def list_tickets(
        caller: Reader,
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
        token = pages.open(page_token) if page_token else None
        if page_token and token is None:
            raise HTTPException(
                400, [{"loc": ["query", "page_token"], "msg": "not a page token of this API", "type": "value_error"}]
            )
        try:
            found, next_token = await bounded(tickets.search(" AND ".join(clauses), page_size, token))
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
        return TicketPage(tickets=rows, next_page_token=pages.seal(next_token) if next_token else None)

    @app.get(
        "/tickets/{ticket_id}",
        tags=["tickets"],
        response_model=TicketStatus,
        openapi_extra=declared(READERS),
        operation_id="ticket_status",
    )
    async def ticket_status(ticket_id: TicketId, caller: Reader) -> TicketStatus:
        result: TicketStatus = await guard_missing(tickets.status(ticket_id))
        return result

    @app.get(
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
        format: Literal["json", "csv", "md"] = "json",
        source: Literal["history", "state", "store"] = "history",
    ) -> Any:
        """The audit timeline, built from the workflow's event history (default), its own state, or
        the record store; from the store whenever Temporal no longer has the ticket. The header
        `X-Timeline-Source` (and `read_from` in JSON) says which was read."""
        from api.export import NotInStore, StoreUnavailable, audit

        try:
            found = await guard_missing(audit(client, ticket_id, settings.store_database_url, source))
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

    def action_route(name: str, model: type[BaseModel]) -> None:
        roles = roles_of_action(name)

        async def act(
            ticket_id: TicketId,
            body: model,  # type: ignore[valid-type]
            caller: Annotated[Caller, Depends(requires(roles))],
            idempotency_key: Annotated[
                str | None,
                Header(
                    max_length=200,
                    description="a retried request with the same key is applied once (it answers the status)",
                ),
            ] = None,
        ) -> TicketStatus:
            actor = getattr(body, "actor", None)
            if actor is not None:
                role = CallerRole(actor.role.value)
                if role not in caller.roles or role not in roles:
                    raise HTTPException(403, f"key {caller.name!r} may not act as role {actor.role.value!r}")
                if not caller.is_system and actor.id != caller.name:
                    raise HTTPException(403, f"key {caller.name!r} may act only as itself, not {actor.id!r}")
            try:
                result: TicketStatus = await guard_missing(tickets.act(ticket_id, name, body, key=idempotency_key))
            except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
                # The update may be applied after we stopped waiting: say how to retry safely.
                log.warning("temporal.timeout", ticket_id=ticket_id, action=name, keyed=idempotency_key is not None)
                safely = (
                    "send it again with the same Idempotency-Key"
                    if idempotency_key
                    else "a retry without an Idempotency-Key may apply it twice; read the status first"
                )
                raise HTTPException(
                    503,
                    f"no answer from the ticket within {settings.api_temporal_timeout_seconds} s; "
                    f"the action may still be applied: {safely}",
                    headers={"Retry-After": "5"},
                ) from None
            except ActionRefused as refused:
                code = 409 if refused.field == "state" else 422
                where = ["header", "idempotency-key"] if refused.field == "idempotency_key" else None
                detail = [
                    {
                        "loc": where or ["body", *(refused.field or "body").split(".")],
                        "msg": refused.reason,
                        "type": "action_rejected",
                    }
                ]
                raise HTTPException(code, detail) from None
            log.info("ticket.action", ticket_id=ticket_id, action=name, caller=caller.name)
            return result

        act.__name__ = f"action_{name}"
        action_endpoints[act] = name
        app.post(
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

    action_endpoints: dict[Any, str] = {}  # endpoint function -> action name
    for action_name, action_model in ACTIONS.items():
        action_route(action_name, action_model)

    async def refused_at_edge(request: Request, exc: Exception) -> JSONResponse:
        """422 for a body (or header) the route's model refuses; on an action route, called with a
        key that serves it, the ticket is told (`api/refusals.py`: best effort, after the answer)."""
        assert isinstance(exc, RequestValidationError)
        errors = validation_errors(exc)
        name = action_endpoints.get(request.scope.get("endpoint"))
        caller = getattr(request.state, "caller", None)
        ticket_id = request.path_params.get("ticket_id")
        bad_path = any(list(e["loc"])[:1] == ["path"] for e in errors)
        if name and isinstance(caller, Caller) and isinstance(ticket_id, str) and not bad_path:
            try:
                field, reason = field_and_reason(errors)
                edge.report(ticket_id, name, field, reason, reporting_actor(caller, roles_of_action(name), exc.body))
            except Exception as err:  # never at the cost of the answer
                log.warning("refusal_report.failed", error=type(err).__name__)
        return JSONResponse({"detail": errors}, status_code=422)

    app.add_exception_handler(RequestValidationError, refused_at_edge)

    from api.review import add_review_routes

    add_review_routes(app, settings)

    @app.post(
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
        try:
            answer = await _inbound(webhook_id, body)
        except HTTPException as err:
            (seen.done if err.status_code < 500 else seen.release)(webhook_id)
            raise
        except BaseException:
            seen.release(webhook_id)
            raise
        seen.done(webhook_id)
        return answer

    async def _already_applied(ticket_id: str, update_id: str) -> bool:
        """Durable replay check: did any API process (before a restart, or a replica) send it?"""
        try:
            await tickets.handle(ticket_id).get_update_handle(update_id).result(rpc_timeout=timedelta(seconds=5))
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            if CLOSED in err.message:  # the ticket is closed: the action's own answer says so (409)
                return False
            if "update" not in err.message.lower():  # the ticket itself does not exist
                raise HTTPException(404, "no such ticket") from None
            # Not in this run; the ticket may have continued as new since: it carries its keys.
            with contextlib.suppress(Exception):  # a worker of a version before this query: no
                applied = await tickets.handle(ticket_id).query(
                    "applied", update_id, result_type=bool, rpc_timeout=timedelta(seconds=5)
                )
                return applied is True
            return False
        except Exception:  # it exists and was refused: received all the same
            return True
        return True

    async def _inbound(webhook_id: str, body: bytes) -> dict[str, Any]:
        try:
            event = InboundWebhook.model_validate(json.loads(body, parse_constant=_no_constant))
            if event.type == "ticket.created":
                ticket = TicketRequest.model_validate(event.data)
                opened = await bounded(tickets.open(ticket))
                return {"workflow_id": opened.workflow_id, "created": opened.created}
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
                edge.report(ticket_id, action, field, reason, _actor_of(raw_payload))  # verified sender
                raise HTTPException(422, errors) from None
        except ValidationError as err:
            raise HTTPException(422, _errors(err)) from None
        except (ValueError, RecursionError) as err:
            msg = f"not JSON the API accepts: {type(err).__name__}"
            raise HTTPException(422, [{"loc": ["body"], "msg": msg, "type": "json_invalid"}]) from None
        update_id = f"webhook:{webhook_id}"
        if await _already_applied(ticket_id, update_id):
            raise HTTPException(401, f"webhook refused: webhook-id {webhook_id!r} was already received")
        try:
            await guard_missing(tickets.act(ticket_id, action, payload, update_id=update_id))
        except ActionRefused as refused:
            raise HTTPException(
                409 if refused.field == "state" else 422,
                [
                    {
                        "loc": ["body", "data", "payload", *(refused.field or "body").split(".")],
                        "msg": refused.reason,
                        "type": "action_rejected",
                    }
                ],
            ) from None
        return {"accepted": True}

    return app


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _errors(err: ValidationError, *prefix: str) -> list[dict[str, Any]]:
    """Validation errors without the refused input (it may be anything)."""
    return [
        {"loc": ["body", "data", *prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in err.errors(include_url=False, include_input=False, include_context=False)
    ]


def build_server(settings: Settings, client: Client) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings, client),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    return _QuietServer(config)


class _QuietServer(uvicorn.Server):
    """Leaves SIGINT/SIGTERM to the worker process, which stops the API and the worker together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
