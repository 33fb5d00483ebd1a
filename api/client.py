"""Ticket operations over Temporal, shared by the HTTP API, the command line and the tests.

Other languages do the same through their own Temporal SDK with the contract's names; this is
the Python face of that contract.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import ValidationError
from temporalio.api.common.v1 import WorkflowExecution as ExecutionRef
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.retries import (
    BUSY_TRIES,
    CLOSED,
    NOT_OPENED,
    QUERY_TRY,
    STALLED_SECONDS,
    UPDATE_TRY,
    TicketStalled,
    cancelling,
    is_busy,
    is_task_failing,
    query_patiently,
)
from workflows.models import (
    ACTIONS,
    DIGEST_MARK,
    REFUSAL_SIGNAL,
    WORKFLOW_TYPE,
    Actor,
    Message,
    RefusalReport,
    Ticket,
    TicketStatus,
    Timeline,
    workflow_id_for,
)
from workflows.summary import static_summary

Q = TypeVar("Q")


def actor_of(payload: Any) -> Actor | None:
    """The actor a payload names, when it names a valid one (a refused payload may not)."""
    raw = getattr(payload, "actor", None) if not isinstance(payload, dict) else payload.get("actor")
    if isinstance(raw, Actor):
        return raw
    try:
        return Actor.model_validate(raw) if isinstance(raw, dict) else None
    except ValidationError:
        return None


def keyed_update_id(action: str, key: str, body: Message) -> str:
    """The update id of an action sent with an idempotency key: `<action>:<key>#sha256:<16 hex>`,
    the last part a fingerprint of the body (the ticket compares it; `workflows/ticket_handlers.py`)."""
    # Defaults left out: a field added later (with a default) does not change the fingerprint of a
    # body sent before, so a retry across an upgrade is still recognised as the same request.
    digest = hashlib.sha256(body.model_dump_json(exclude_defaults=True).encode()).hexdigest()[:16]
    return f"{action}:{key}{DIGEST_MARK}{digest}"


class ActionRefused(Exception):
    """The ticket refused an action; `field` and `reason` say why. The ticket is unchanged."""

    def __init__(self, message: str, field: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason or message


# How long an attach waits to compare its body with the running ticket's (then `same_body` is None).
SAME_BODY_SECONDS = 2.0


@dataclass(frozen=True)
class Opened:
    workflow_id: str
    run_id: str | None
    created: bool
    # Attached to a running ticket: was it opened with this same body? None: could not be read.
    same_body: bool | None = None


class TicketClient:
    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    def handle(self, ticket_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(workflow_id_for(ticket_id))

    async def open(self, ticket: Ticket) -> Opened:
        """Start the ticket's workflow, or attach to the one already running under its id."""
        workflow_id = workflow_id_for(ticket.ticket_id)
        try:
            handle = await self.client.start_workflow(
                WORKFLOW_TYPE,
                ticket,
                id=workflow_id,
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary=static_summary(ticket),  # no subject: personal data (workflows/summary.py)
            )
            return Opened(workflow_id, handle.first_execution_run_id, created=True)
        except WorkflowAlreadyStartedError as exc:
            return Opened(workflow_id, exc.run_id, created=False, same_body=await self._opened_with(ticket))

    async def _opened_with(self, ticket: Ticket) -> bool | None:
        """Is the running ticket's input this body? Its run's first event holds the ticket as the run
        took it (continued runs carry it on). Best effort: None when it cannot be read."""
        try:
            async for event in self.handle(ticket.ticket_id).fetch_history_events(page_size=1, rpc_timeout=QUERY_TRY):
                payloads = event.workflow_execution_started_event_attributes.input.payloads
                if not payloads:
                    return None
                [first] = await self.client.data_converter.decode(payloads[:1], [Ticket])
                return bool(first.model_dump(mode="json") == ticket.model_dump(mode="json"))
        except Exception:
            return None
        return None

    async def act(
        self,
        ticket_id: str,
        action: str,
        payload: Message | dict[str, Any],
        key: str | None = None,
        update_id: str | None = None,
    ) -> TicketStatus:
        """Send an action as an update; the answer is the ticket's status, or `ActionRefused`.

        `key` is the update id: the same key again (a client's retry) applies the action once and
        answers with the status, also after the ticket continued as new. `update_id` replaces the
        id made from the key (inbound webhooks use their `webhook-id`)."""
        model = ACTIONS[action]
        # One update id for every try below, so a retry never applies the action twice.
        given = update_id
        update_id = given or f"{action}:{uuid.uuid4()}"
        try:
            body = payload if isinstance(payload, model) else model.model_validate(payload)
            if key and not given:
                # The body's fingerprint rides with the key: the ticket refuses the key again with
                # another body (a retry must be the same request) instead of answering as applied.
                update_id = keyed_update_id(action, key, body)
        except ValidationError as err:
            first = err.errors()[0]
            place = ".".join(str(p) for p in first["loc"]) or "payload"
            await self.report_refusal(
                ticket_id, action, place, first["msg"], actor_of(payload), via="client", update_id=update_id
            )
            raise
        try:
            refused_for_a_moment = busy = stalled_tries = 0
            stalled_since: float | None = None
            while True:
                try:
                    result: TicketStatus = await self.handle(ticket_id).execute_update(
                        action, body, id=update_id, result_type=TicketStatus, rpc_timeout=UPDATE_TRY
                    )
                    return result
                except WorkflowUpdateRPCTimeoutOrCancelledError:
                    # Not answered within UPDATE_TRY (see QUERY_TRY): send it again under the same
                    # id, which the server applies once. Our caller's own deadline still ends it.
                    if cancelling():
                        raise
                except RPCError as err:
                    if is_busy(err) and busy < BUSY_TRIES and not cancelling():
                        # The ticket has its 10 updates in flight, or the server aborted this one
                        # (a workflow task of the ticket was lost): not an answer. Again, same id.
                        busy += 1
                        await asyncio.sleep(min(0.1 * 2**busy, 1.0) * (0.5 + random.random()))
                        continue
                    if is_task_failing(err):
                        # The ticket's workflow task is failing for now (just after a worker restart,
                        # or while it continues as new and signals race it): nothing was applied.
                        # Again under the same id, with back-off, for STALLED_SECONDS at most.
                        now = asyncio.get_running_loop().time()
                        stalled_since = now if stalled_since is None else stalled_since
                        if now - stalled_since >= STALLED_SECONDS or cancelling():
                            raise TicketStalled(ticket_id, update_id, now - stalled_since, err.message) from None
                        stalled_tries += 1
                        await asyncio.sleep(min(0.2 * 2 ** min(stalled_tries, 4), 2.0))
                        continue
                    if err.status != RPCStatusCode.NOT_FOUND or CLOSED not in err.message:
                        raise
                    closed = await self.closed_as(ticket_id)
                    if closed is not None:
                        raise self._closed_refusal(closed) from None
                    # The run it reached has just continued as new, and the ticket runs on: send
                    # it again (same id) to the new run. The ticket exists: never answer "not found".
                    refused_for_a_moment += 1
                    if refused_for_a_moment >= 4:
                        raise TicketStalled(ticket_id, update_id, 0, err.message) from None
                    await asyncio.sleep(0.2 * refused_for_a_moment)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.type == "ActionRejected":
                details = cause.details[0] if cause.details else {}
                if isinstance(details, dict) and details.get("recorded") is False:
                    # Refused by the ticket's validator: nothing reached its history. Say so on it.
                    await self.report_refusal(
                        ticket_id,
                        action,
                        str(details.get("field") or "payload"),
                        str(details.get("reason") or cause.message),
                        actor_of(body),
                        via="update",
                        update_id=update_id,
                    )
                raise ActionRefused(cause.message, details.get("field"), details.get("reason")) from None
            raise

    async def report_refusal(
        self,
        ticket_id: str,
        action: str,
        field: str,
        reason: str,
        actor: Actor | None = None,
        *,
        via: str = "client",
        update_id: str | None = None,
    ) -> bool:
        """Record on the ticket's timeline (a `refused` row) an action refused before the ticket saw it.

        For the API and the CLI, which refuse malformed actions at their edge, and for updates the
        ticket's validator refused (those leave nothing in history). Best effort: False when the
        ticket does not exist or cannot be reached; never raises, never starts a ticket."""
        try:
            report = RefusalReport(
                action=action[:100] or "?",
                field=field[:200],
                reason=reason[:2000],
                actor=actor,
                via=via if via in ("update", "api", "cli", "client") else "client",
                update_id=update_id[:200] if update_id else None,
            )
            await self.handle(ticket_id).signal(REFUSAL_SIGNAL, report, rpc_timeout=timedelta(seconds=5))
            return True
        except Exception:
            return False

    async def signal(self, ticket_id: str, action: str, payload: Message | dict[str, Any]) -> None:
        """Fire-and-forget: a refused signal changes nothing and is recorded on the timeline."""
        model = ACTIONS[action]
        body = payload if isinstance(payload, model) else model.model_validate(payload)
        for attempt in range(3):
            try:
                await self.handle(ticket_id).signal(action, body)
                return
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND or CLOSED not in err.message:
                    raise
                closed = await self.closed_as(ticket_id)
                if closed is not None:
                    raise self._closed_refusal(closed) from None
                if attempt == 2:  # it reached a run that had just continued as new, three times
                    raise
                await asyncio.sleep(0.2)

    @staticmethod
    def _closed_refusal(closed: str) -> ActionRefused:
        reason = f"the ticket is closed (its workflow {closed}); open it again to act on it"
        return ActionRefused(f"state: {reason}", "state", reason)

    async def _query(self, ticket_id: str, name: str, result_type: type[Q]) -> Q:
        """Query, waiting out the first moments of a ticket (its policy is still loading)."""
        for _ in range(100):
            try:
                return await query_patiently(self.handle(ticket_id), name, result_type)
            except WorkflowQueryFailedError as err:
                if NOT_OPENED not in str(err):
                    raise
                # A ticket that closed before it opened (invalid input, terminated while its policy
                # was loading) will never answer: say so now instead of waiting for it.
                closed = await self.closed_as(ticket_id)
                if closed is not None:
                    raise WorkflowQueryFailedError(
                        f"the ticket's workflow {closed} before the ticket opened; its timeline says why"
                    ) from None
                await asyncio.sleep(0.1)
        raise TimeoutError(f"ticket {ticket_id} did not finish opening within 10 s")

    async def status(self, ticket_id: str) -> TicketStatus:
        return await self._query(ticket_id, "status", TicketStatus)

    async def timeline(self, ticket_id: str) -> Timeline:
        """The ticket's timeline across all runs of its life (continue-as-new keeps it out of the
        carried state: each run's part is answered by that run, replayed from its history)."""
        latest = await self._query(ticket_id, "timeline", Timeline)
        if latest.earlier_runs == 0:
            return latest
        # One consistent chain: the latest run as of now, and the runs before it.
        run_id = await self.latest_run(ticket_id)
        latest = await query_patiently(
            self.client.get_workflow_handle(workflow_id_for(ticket_id), run_id=run_id), "timeline", Timeline
        )
        events = []
        for earlier_run in await self.earlier_runs(ticket_id, run_id):
            handle = self.client.get_workflow_handle(workflow_id_for(ticket_id), run_id=earlier_run)
            earlier = await query_patiently(handle, "timeline", Timeline)
            events += earlier.events
        return Timeline(ticket_id=ticket_id, events=[*events, *latest.events], earlier_runs=latest.earlier_runs)

    async def latest_run(self, ticket_id: str) -> str:
        """The run id of the ticket's latest run (raw describe: no search-attribute decoding)."""
        request = DescribeWorkflowExecutionRequest(
            namespace=self.client.namespace, execution=ExecutionRef(workflow_id=workflow_id_for(ticket_id))
        )
        answer = await self.client.workflow_service.describe_workflow_execution(request)
        return answer.workflow_execution_info.execution.run_id

    async def closed_as(self, ticket_id: str) -> str | None:
        """How the ticket's latest run closed (`failed`, `completed`, `terminated`, ...), None while
        it runs or when that cannot be told."""
        request = DescribeWorkflowExecutionRequest(
            namespace=self.client.namespace, execution=ExecutionRef(workflow_id=workflow_id_for(ticket_id))
        )
        try:
            answer = await self.client.workflow_service.describe_workflow_execution(
                request, timeout=timedelta(seconds=5)
            )
        except RPCError:
            return None
        status = answer.workflow_execution_info.status
        if status in (WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING, 0):
            return None
        return WorkflowExecutionStatus.Name(status).removeprefix("WORKFLOW_EXECUTION_STATUS_").lower().replace("_", " ")

    async def earlier_runs(self, ticket_id: str, run_id: str | None = None) -> list[str]:
        """Run ids of the runs before `run_id` (default: the latest), oldest first; each run's start
        event names the one before."""
        runs: list[str] = []
        run_id = run_id or await self.latest_run(ticket_id)
        while run_id:
            first = None
            async for event in self.client.get_workflow_handle(
                workflow_id_for(ticket_id), run_id=run_id
            ).fetch_history_events():
                first = event
                break
            previous = first.workflow_execution_started_event_attributes.continued_execution_run_id if first else ""
            if previous:
                runs.insert(0, previous)
            run_id = previous
        return runs

    async def search(
        self, query: str, page_size: int = 50, next_page_token: bytes | None = None
    ) -> tuple[list[WorkflowExecution], bytes | None]:
        """One page of tickets matching a visibility query over the contract's search attributes."""
        base = f"WorkflowType = '{WORKFLOW_TYPE}'"
        full = f"{base} AND ({query})" if query.strip() else base
        iterator = self.client.list_workflows(full, page_size=page_size, next_page_token=next_page_token)
        await iterator.fetch_next_page()
        return list(iterator.current_page or []), iterator.next_page_token
