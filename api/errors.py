"""How Temporal's answers about one ticket become HTTP answers, for every route that reaches a ticket.

A ticket that does not exist is 404; one that cannot take or answer this now is 409; an action the
workflow refuses is 409 (its state forbids it) or 422 (a field is wrong, named in `loc`); no answer
within `API_TEMPORAL_TIMEOUT_SECONDS` is 503 with how to retry safely. Everything else Temporal
can answer is mapped once for the whole app by `api/guard.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import HTTPException
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from api.client import ActionRefused

T = TypeVar("T")


async def bounded(coro: Awaitable[T], seconds: float) -> T:
    """No request waits on Temporal longer than API_TEMPORAL_TIMEOUT_SECONDS (503 after):
    a ticket whose workflow task fails would otherwise hold an update or query forever."""
    return await asyncio.wait_for(coro, seconds)


async def guard_missing(coro: Awaitable[T], seconds: float) -> T:
    """Map Temporal's answers about the ticket itself to 404/409 (the rest: `api/guard.py`)."""
    try:
        return await bounded(coro, seconds)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(404, "no such ticket") from None
        if err.status == RPCStatusCode.FAILED_PRECONDITION:
            # Closed, or its workflow task is failing: either way it cannot take this now.
            raise HTTPException(409, f"the ticket cannot take this now: {err.message}") from None
        raise
    except WorkflowQueryFailedError as err:
        raise HTTPException(409, f"the ticket cannot answer: {err.message}") from None


def action_refused(refused: ActionRefused, payload_at: list[str], key_at: list[str] | None = None) -> HTTPException:
    """409 when the ticket's state forbids the action, else 422; `loc` is the refused field under
    `payload_at` (where the action's payload sits in the request), or `key_at` for the idempotency key."""
    code = 409 if refused.field == "state" else 422
    if key_at is not None and refused.field == "idempotency_key":
        loc = key_at
    else:
        loc = [*payload_at, *(refused.field or "body").split(".")]
    return HTTPException(code, [{"loc": loc, "msg": refused.reason, "type": "action_rejected"}])


def no_answer(seconds: float, keyed: bool) -> HTTPException:
    """503 for an action whose update may be applied after the API stopped waiting: how to retry safely."""
    safely = (
        "send it again with the same Idempotency-Key"
        if keyed
        else "a retry without an Idempotency-Key may apply it twice; read the status first"
    )
    return HTTPException(
        503,
        f"no answer from the ticket within {seconds} s; the action may still be applied: {safely}",
        headers={"Retry-After": "5"},
    )
