"""How the ticket client treats Temporal's answers: which ones mean "not now" and are sent again
under the same id (busy, aborted, a failing workflow task, an unanswered try), for how long, and
what the caller is told when that runs out. A retry never applies an action twice: the server
applies one update id once.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

Q = TypeVar("Q")

NOT_OPENED = "the ticket has not been opened yet"
# What the server says of an update or signal sent to a ticket whose workflow has closed (its
# status NOT_FOUND, like a ticket that never existed): the ticket exists, it cannot take actions.
CLOSED = "workflow execution already completed"

# Each try of a query or an update gets this long before it is sent again (same update id: the
# server applies an update once). Why: when updates and queries race on one ticket, the server may
# drop a speculative workflow task, the worker then evicts the run and drops the queries it had
# buffered for it (sdk-core: "leftover buffered tasks when evicting run"); such a query is never
# answered, and without a try timeout its caller waits forever. A retry is answered at once.
QUERY_TRY = timedelta(seconds=10)
UPDATE_TRY = timedelta(seconds=10)


# Tries of an update the server answers "busy" (see `_busy`), about 25 s with the back-off.
BUSY_TRIES = 30


def is_busy(err: RPCError) -> bool:
    """The server's "not now" to an update: the ticket's in-flight updates are at the server's
    limit (10 by default), or the update was aborted because a workflow task of the ticket was
    lost (speculative tasks under concurrent actions). Both are answered by sending it again."""
    if err.status == RPCStatusCode.RESOURCE_EXHAUSTED:
        return True
    return err.status == RPCStatusCode.UNAVAILABLE and "update was aborted" in err.message


# How long an update is sent again while the ticket's workflow task fails (then `TicketStalled`).
STALLED_SECONDS = 25.0


class TicketStalled(RPCError):
    """The ticket's workflow task kept failing while an update was sent again under one id: nothing
    was applied. Sending it again later with the same key is safe. (An RPC error the server could
    have given, UNAVAILABLE, so callers that map Temporal's answers map this one too.)"""

    def __init__(self, ticket_id: str, update_id: str, seconds: float, cause: str) -> None:
        message = (
            f"ticket {ticket_id}: its workflow task kept failing for {seconds:.0f} s ({cause[:200]}); "
            "the action was not applied: send it again with the same key"
        )
        super().__init__(message, RPCStatusCode.UNAVAILABLE, b"")
        self.ticket_id, self.update_id = ticket_id, update_id


def is_task_failing(err: RPCError) -> bool:
    """ "Workflow Task in failed state" and the like: the ticket cannot take an update for a moment."""
    return err.status == RPCStatusCode.FAILED_PRECONDITION and "workflow task" in err.message.lower()


def cancelling() -> bool:
    """True when our own caller is cancelling us (a deadline), as opposed to one RPC timing out."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


# Tries of a query the server answers "busy": its buffer of queries waiting for a ticket's running
# workflow task holds one (history.MaxBufferedQueryCount), the next ones get RESOURCE_EXHAUSTED.
# About 10 s with the back-off below.
QUERY_BUSY_TRIES = 20


async def query_patiently(handle: WorkflowHandle[Any, Any], name: str, result_type: type[Q], tries: int = 6) -> Q:
    """A query, sent again when one try is not answered within `QUERY_TRY` (see above), or when the
    server is busy with the ticket (`QUERY_BUSY_TRIES`, backing off); a query changes nothing, so
    retrying is always safe. After `tries` (no worker at all, say) the last error is raised."""
    timeouts = busy = 0
    while True:
        try:
            result: Q = await handle.query(name, result_type=result_type, rpc_timeout=QUERY_TRY)
            return result
        except RPCError as err:
            if cancelling():
                raise
            if err.status == RPCStatusCode.RESOURCE_EXHAUSTED and busy < QUERY_BUSY_TRIES:
                busy += 1
                await asyncio.sleep(min(0.05 * 2**busy, 1.0))
                continue
            timed_out = err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)
            timeouts += 1
            if not timed_out or timeouts >= tries:
                raise
