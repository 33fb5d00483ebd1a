"""Ticket commands: open, act, status, timeline, search."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from cli.app import (
    CliError,
    ExitCode,
    JsonOption,
    _cell,
    about_ticket,
    app,
    bad_input,
    blank_line,
    emit,
    is_terminal,
    model_from,
    not_found,
    print_json,
    read_json,
    refused,
    run_async,
    settings,
    table,
    ticket_client,
    to_data,
    unreachable,
)
from workflows.models import ACTIONS, workflow_id_for


def _ticket_id(value: str) -> str:
    if not value.strip():
        raise typer.BadParameter("a ticket id is needed, e.g. T-1001")
    if len(value) > MAX_ID:
        raise typer.BadParameter(f"at most {MAX_ID} characters, got {len(value)}")
    return value


MAX_ID = 200  # the contract's bound on ids
TicketId = Annotated[str, typer.Argument(help="The ticket's id, e.g. T-1001.", show_default=False, callback=_ticket_id)]


@app.command("open")
def open_ticket(
    ticket: Annotated[
        str,
        typer.Argument(help="The ticket as JSON: inline, @FILE, or - for standard input.", show_default=False),
    ],
    as_json: JsonOption = False,
) -> None:
    """Open a ticket (start its workflow); opening an id that is already open attaches to it.

    The ticket is checked as `POST /tickets` checks it: unknown fields and an `opened_at` in the
    future are refused, naming the field (a what-if with a future date is `policy simulate`).

    Example: escalations open '{"ticket_id": "T-1", "subject": "Charged twice", "customer": {"id": "c-42"}}'
    """
    from workflows.models import TicketRequest

    model = model_from(TicketRequest, read_json(ticket, "ticket"), "ticket")

    async def go() -> Any:
        tickets = await ticket_client(settings())
        return await tickets.open(model)

    opened = run_async(go())
    attached = {} if opened.created else {"same_body": opened.same_body}
    emit(
        {"ticket_id": model.ticket_id, "workflow_id": opened.workflow_id, "created": opened.created, **attached},
        as_json=as_json,
    )


@app.command("act")
def act(
    ticket_id: TicketId,
    action: Annotated[str, typer.Argument(help=f"One of: {', '.join(sorted(ACTIONS))}.", show_default=False)],
    payload: Annotated[
        str,
        typer.Argument(
            help='The action\'s JSON (inline, @FILE or -), e.g. \'{"actor": {"id": "ann", "role": "agent"}}\'.',
            show_default=False,
        ),
    ],
    signal: Annotated[
        bool, typer.Option("--signal", help="Fire and forget (a refusal is only on the timeline).")
    ] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Send the same key again (a retry) and the action is applied once; it answers the status."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Send an agent action to a ticket (as an update: the answer is its status, or the refusal).

    Example: escalations act T-1001 acknowledge '{"actor": {"id": "ann", "role": "agent", "tier": 2}}'
    """
    from api.client import ActionRefused

    if action not in ACTIONS:
        bad_input(f"action: unknown action {action!r} (one of: {', '.join(sorted(ACTIONS))})")
    if signal and idempotency_key is not None:
        # A signal has no id: its retry would be applied again. Only an update takes a key.
        bad_input("--idempotency-key: only an update takes a key (leave out --signal)")
    data = read_json(payload, "payload")
    try:
        body = model_from(ACTIONS[action], data, f"{action} payload")
    except CliError as err:
        run_async(_report_refusal(ticket_id, action, data, str(err)))  # on the ticket's timeline, best effort
        raise

    async def go() -> Any:
        tickets = await ticket_client(settings())
        with about_ticket(ticket_id):
            try:
                if signal:
                    await tickets.signal(ticket_id, action, body)
                    return None
                return await tickets.act(ticket_id, action, body, key=idempotency_key)
            except ActionRefused as err:
                refused(f"{action} refused: {err}")

    result = run_async(go())
    if signal:
        emit({"sent": action, "as": "signal", "note": "a refused signal is recorded on the timeline"}, as_json=as_json)
    elif as_json:
        print_json(result)
    else:
        show_status(to_data(result), ticket_id)


@app.command("status")
def status(ticket_id: TicketId, as_json: JsonOption = False) -> None:
    """Show a ticket's status: state, tier, assignee, clocks, undelivered notices.

    Example: escalations status T-1001 --json
    """

    async def go() -> Any:
        tickets = await ticket_client(settings())
        try:
            with about_ticket(ticket_id):
                return await tickets.status(ticket_id)
        except CliError as err:
            closed = await _closed_as(tickets, ticket_id) if err.code == ExitCode.REFUSED else None
            if closed:
                refused(
                    f"ticket {ticket_id} cannot answer: its workflow {closed} "
                    f"(history: escalations timeline {ticket_id})"
                )
            raise

    found = run_async(go())
    if as_json:
        print_json(found)
    else:
        show_status(to_data(found), ticket_id)


async def _report_refusal(ticket_id: str, action: str, data: Any, reason: str) -> None:
    """Tell the ticket about an action refused here, before it could see it (a `refused` row)."""
    from api.client import actor_of

    async def report() -> None:
        tickets = await ticket_client(settings())
        await tickets.report_refusal(ticket_id, action, "payload", reason, actor_of(data), via="cli")

    # Bounded: a bad input must not wait long on an unreachable server. Any failure (CliError, a
    # timeout) is dropped: the refusal itself is what the caller is told.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(report(), timeout=5)


async def _closed_as(tickets: Any, ticket_id: str) -> str | None:
    """`is terminated`, `failed`, ... for a closed ticket workflow; None while it runs or if unknown."""
    from temporalio.api.enums.v1 import WorkflowExecutionStatus
    from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest

    try:
        request = DescribeWorkflowExecutionRequest(namespace=tickets.client.namespace)
        request.execution.workflow_id = workflow_id_for(ticket_id)
        answer = await tickets.client.workflow_service.describe_workflow_execution(request)
        name = WorkflowExecutionStatus.Name(answer.workflow_execution_info.status)
    except Exception:
        return None
    word = name.removeprefix("WORKFLOW_EXECUTION_STATUS_").lower().replace("_", " ")
    if word == "running":
        return None
    return word if word in ("failed", "completed", "timed out", "continued as new") else f"is {word}"


def show_status(data: dict[str, Any], ticket_id: str) -> None:
    """The status as tables: the ticket's fields, its clocks, undelivered notices and pending approvals."""
    lists = {k: v for k, v in data.items() if isinstance(v, list)}
    fields = [[k, _cell(v)] for k, v in data.items() if k not in lists]
    table(["field", "value"], fields, title=f"ticket {ticket_id}", header=False)
    shown = {
        "clocks": ["name", "state", "target", "deadline", "breached"],
        "undelivered": ["type", "endpoint", "status", "attempts", "last_error", "next_attempt_at"],
    }
    for name, rows in lists.items():
        if not rows:
            continue
        if not all(isinstance(r, dict) for r in rows):
            table([name], [[_cell(r)] for r in rows])
            continue
        columns = shown.get(name) or list(dict.fromkeys(k for r in rows for k in r))
        blank_line()
        table(columns, [[_cell(r.get(c)) for c in columns] for r in rows], title=name)


@app.command("timeline")
def timeline(
    ticket_id: TicketId,
    fmt: Annotated[
        Literal["json", "csv", "md"] | None,
        typer.Option(
            "--format", help="Export format (default: a table on a terminal, Markdown otherwise).", show_default=False
        ),
    ] = None,
    source: Annotated[
        Literal["history", "state", "store"],
        typer.Option(
            help="history: Temporal's event history merged with the workflow's account; state: the workflow's own; "
            "store: the record store (read anyway once Temporal no longer has the ticket).",
        ),
    ] = "history",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Export a ticket's audit timeline (Markdown, CSV or JSON).

    Example: escalations timeline T-1001 --format csv -o T-1001.csv
    """
    from api.export import Audit, NotInStore, StoreUnavailable, audit, render_timeline

    if as_json:
        fmt = "json"
    config = settings()

    async def go() -> Audit:
        tickets = await ticket_client(config)
        with about_ticket(ticket_id):
            try:
                return await audit(tickets.client, ticket_id, config.store_database_url, source)
            except NotInStore:
                not_found(f"no such ticket: {ticket_id} (not in Temporal, not in the record store)")
            except StoreUnavailable as err:
                unreachable(f"{err} (ESCALATIONS_STORE_URL)")

    found = run_async(go())
    entries = found.entries
    if found.read_from == "store":  # CSV has only rows: say it here (JSON and Markdown say it too)
        why = (found.store or {}).get("why") or "Temporal no longer has the history"
        print(f"timeline read from: store ({why})", file=sys.stderr)
    if fmt is None and output is None and is_terminal():
        from api.export import normalize_entry

        rows = [normalize_entry(e) for e in entries]
        table(
            ["at", "kind", "actor", "detail"],
            [[_cell(r.get("at")), _cell(r.get("kind")), _cell(r.get("actor")), _detail(r.get("detail"))] for r in rows],
            title=f"ticket {ticket_id}: {len(rows)} events (times in UTC)",
            no_wrap=["at", "kind", "actor"],
        )
        return
    text = render_timeline(ticket_id, entries, fmt or "md", found.read_from, found.store)
    if output:
        try:
            output.write_text(text)
        except OSError as err:
            bad_input(f"--output: cannot write {output}: {err.strerror or err}")
        print(f"wrote {len(entries)} events to {output}")
    else:
        print(text, end="")


SEARCH_HELP = """List tickets matching a visibility query over the ticket search attributes.

Attributes: TicketState, TicketPriority, TicketTier, TicketChannel, TicketCategory, TicketDepartment,
TicketAssignee, SlaBreached, EscalationCount, NextSlaDeadline, UndeliveredNotices, and ExecutionStatus.

Examples:

  escalations search "TicketTier = 2 AND SlaBreached = true"

  escalations search "TicketDepartment = 'billing' AND ExecutionStatus = 'Running'"

  escalations search "UndeliveredNotices > 0" --json
"""


@app.command("search", help=SEARCH_HELP)
def search(
    query: Annotated[str, typer.Argument(help="A visibility query; empty: every ticket.")] = "",
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many tickets.")] = 50,
    as_json: JsonOption = False,
) -> None:
    async def go() -> list[Any]:
        from temporalio.service import RPCError, RPCStatusCode

        tickets = await ticket_client(settings())
        try:
            found, _ = await tickets.search(query, limit)
        except RPCError as err:
            if err.status == RPCStatusCode.INVALID_ARGUMENT:
                bad_input(f"query: {err.message} (see escalations search --help for examples)")
            raise
        return list(found)

    rows = []
    for wf in run_async(go()):
        attrs = {k: (v[0] if isinstance(v, list) and v else v) for k, v in (wf.search_attributes or {}).items()}
        rows.append(
            {
                "ticket": wf.id.removeprefix("ticket-"),
                "status": wf.status.name.lower() if wf.status else None,
                "state": attrs.get("TicketState"),
                "priority": attrs.get("TicketPriority"),
                "tier": attrs.get("TicketTier"),
                "department": attrs.get("TicketDepartment"),
                "assignee": attrs.get("TicketAssignee"),
                "breached": attrs.get("SlaBreached"),
                "escalations": attrs.get("EscalationCount"),
                "next_deadline": attrs.get("NextSlaDeadline"),
                "undelivered": attrs.get("UndeliveredNotices"),
            }
        )
    if as_json:
        print_json(rows)
        return
    columns = ["ticket", "status", "state", "priority", "tier", "department", "assignee", "breached", "escalations"]
    table(columns, [[_text(r[c]) for c in columns] for r in rows], title=f"{len(rows)} tickets")


def _detail(detail: Any) -> str:
    """A row's detail as `key=<JSON value>` pairs, as the Markdown export shows it."""
    if not isinstance(detail, dict):
        return _cell(detail)
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in detail.items()) or "-"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
