"""Where an audit timeline is read from: Temporal's history of every run (merged with the workflow's
own account when a worker answers), the workflow's account alone (`state`), or the record store
once Temporal's retention has deleted the history.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from api.export.history import decode_history, entries_from_history
from api.export.normalize import Entry, normalize_entry, sort_entries, utc_text


async def _run_chain(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """The histories of the ticket's runs, oldest first (continue-as-new chains them)."""
    histories: list[WorkflowHistory] = []
    run_id: str | None = None
    for _ in range(1000):  # a bound, far above any real chain
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.insert(0, history)
        first = history.events[0] if history.events else None
        previous = first.workflow_execution_started_event_attributes.continued_execution_run_id if first else ""
        if not previous:
            break
        run_id = previous
    return histories


async def audit_from_history(client: Client, workflow_id: str) -> list[Entry]:
    """History entries of every run of the ticket, merged with the workflow's own timeline, by time.

    Rows are normalized (`normalize_entry`): ready to store or render."""
    from workflows.models import Timeline

    entries: list[Entry] = []
    for history in await _run_chain(client, workflow_id):
        await decode_history(history, client.data_converter.payload_codec)
        entries += entries_from_history(history)
        run_id = history.events[0].workflow_execution_started_event_attributes.original_execution_run_id or None
        try:
            handle = client.get_workflow_handle(workflow_id, run_id=run_id)
            timeline = await handle.query("timeline", result_type=Timeline, rpc_timeout=timedelta(seconds=5))
        except RPCError:
            continue  # no worker to answer: the history alone still tells what happened
        except Exception as err:
            if type(err).__name__ != "WorkflowQueryFailedError":
                raise
            continue
        for e in timeline.events:
            entries.append(
                {
                    "at": utc_text(e.at),
                    "source": "workflow",
                    "event_id": None,
                    "kind": e.kind,
                    "actor": e.actor,
                    "detail": e.detail,
                }
            )
    return sort_entries([normalize_entry(e) for e in entries])


class NotInStore(LookupError):
    """Temporal has no history of the ticket, and the record store has no record of it."""


class StoreUnavailable(Exception):
    """The record store could not be read (down, unreachable, not a database): try again later.
    The message names the error's type only (a database error may carry the URL's host)."""


@dataclass
class Audit:
    """An exported timeline and where it was read from: `history` (Temporal's event history merged
    with the workflow's account), `state` (the workflow's account, by query), or `store` (the
    record store: the workflow's account as it was stored, read once Temporal's retention has
    deleted the history; `store` then says which life, how many events, whether complete)."""

    entries: list[Entry]
    read_from: Literal["history", "state", "store"]
    store: dict[str, Any] | None = field(default=None)


async def audit(
    client: Client, ticket_id: str, store_url: str, source: Literal["history", "state", "store"] = "history"
) -> Audit:
    """The ticket's audit timeline from `source`, or from the record store when Temporal no longer
    has the ticket. Raises `NotInStore` when neither has it."""
    from store.repository import shared_store
    from store.timeline import about, entries_from_store
    from workflows.models import workflow_id_for

    if source != "store":
        try:
            if source == "state":
                from api.client import TicketClient

                timeline = await TicketClient(client, "").timeline(ticket_id)
                # The same row model as every other source (the raw model is the `timeline` query's).
                rows = [{**e.model_dump(mode="json"), "source": "workflow", "event_id": None} for e in timeline.events]
                return Audit([normalize_entry(e) for e in rows], "state")
            return Audit(await audit_from_history(client, workflow_id_for(ticket_id)), "history")
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
    from sqlalchemy.exc import SQLAlchemyError

    try:
        life = await asyncio.to_thread(lambda: shared_store(store_url).life(ticket_id))
    except (SQLAlchemyError, OSError, ImportError) as err:  # ImportError: a URL for a driver not installed
        raise StoreUnavailable(f"the record store cannot be read now ({type(err).__name__})") from None
    if life is None:
        raise NotInStore(ticket_id)
    # Why the store: asked for it, or Temporal no longer has the ticket (its retention ran out).
    why = "asked for" if source == "store" else "Temporal no longer has the history"
    return Audit(
        sort_entries([normalize_entry(e) for e in entries_from_store(life)]), "store", {**about(life), "why": why}
    )
