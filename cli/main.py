"""`escalations`: run the service, drive tickets, check policies, audit and replay.

Every command talks to the Temporal server the settings name (the embedded dev server by default).
Bad input exits with status 2 and a message naming the field; a refused action exits 3 with the
ticket's reason.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from config.settings import Settings

EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _validation_message(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'body'}: {e['msg']}" for e in err.errors())


def _read_json(value: str) -> Any:
    """A JSON document given inline, as @file, or as - for standard input."""
    if value == "-":
        text = sys.stdin.read()
    elif value.startswith("@") or (not value.lstrip().startswith(("{", "[")) and Path(value).exists()):
        text = Path(value.removeprefix("@")).read_text()
    else:
        text = value
    return json.loads(text)


def _print(model: BaseModel | dict[str, Any] | list[Any]) -> None:
    if isinstance(model, BaseModel):
        print(model.model_dump_json(indent=2))
    else:
        print(json.dumps(model, indent=2, default=str))


async def _tickets(settings: Settings) -> Any:
    from api.client import TicketClient
    from workers.connection import connect

    return TicketClient(await connect(settings), settings.task_queue)


async def cmd_open(args: argparse.Namespace, settings: Settings) -> int:
    from workflows.models import Ticket

    try:
        ticket = Ticket.model_validate(_read_json(args.ticket))
    except ValidationError as err:
        return _fail(f"invalid ticket: {_validation_message(err)}")
    tickets = await _tickets(settings)
    opened = await tickets.open(ticket)
    _print({"ticket_id": ticket.ticket_id, "workflow_id": opened.workflow_id, "created": opened.created})
    return 0


async def cmd_act(args: argparse.Namespace, settings: Settings) -> int:
    from api.client import ActionRefused
    from workflows.models import ACTIONS

    model = ACTIONS[args.action]
    try:
        payload = model.model_validate(_read_json(args.payload))
    except ValidationError as err:
        return _fail(f"invalid {args.action} payload: {_validation_message(err)}")
    tickets = await _tickets(settings)
    if args.signal:
        await tickets.signal(args.ticket_id, args.action, payload)
        _print({"sent": args.action, "as": "signal", "note": "a refused signal is recorded on the timeline"})
        return 0
    try:
        _print(await tickets.act(args.ticket_id, args.action, payload, key=args.idempotency_key))
    except ActionRefused as refused:
        return _fail(f"{args.action} refused: {refused}", EXIT_REFUSED)
    return 0


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    _print(await (await _tickets(settings)).status(args.ticket_id))
    return 0


async def cmd_timeline(args: argparse.Namespace, settings: Settings) -> int:
    from api.export import audit_from_history, render_timeline
    from workflows.models import workflow_id_for

    tickets = await _tickets(settings)
    if args.source == "state":
        timeline = await tickets.timeline(args.ticket_id)
        entries = [e.model_dump(mode="json") for e in timeline.events]
    else:
        entries = await audit_from_history(tickets.client, workflow_id_for(args.ticket_id))
    text = render_timeline(args.ticket_id, entries, args.format)
    if args.output:
        Path(args.output).write_text(text)  # noqa: ASYNC240 - one small file, once
        print(f"wrote {len(entries)} events to {args.output}")
    else:
        print(text, end="")
    return 0


async def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    tickets = await _tickets(settings)
    found, _ = await tickets.search(args.query, args.limit)
    for wf in found:
        attrs = {k: (v[0] if isinstance(v, list) and v else v) for k, v in (wf.search_attributes or {}).items()}
        tier, state = attrs.get("TicketTier"), attrs.get("TicketState")
        print(
            f"{wf.id}\t{wf.status.name if wf.status else '?'}\ttier={tier}\tstate={state}\t"
            f"breached={attrs.get('SlaBreached')}\tescalations={attrs.get('EscalationCount')}"
        )
    return 0


def cmd_policy_check(args: argparse.Namespace, settings: Settings) -> int:
    from config.policy import PolicyError, load_policy_file

    try:
        policy = load_policy_file(args.file)
    except PolicyError as err:
        print(err, file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"ok: {args.file} is valid (version {policy.version}, fingerprint {policy.fingerprint()}; "
        f"{len(policy.routes)} routes, {len(policy.tiers)} tiers, {len(policy.departments)} departments)"
    )
    return 0


async def cmd_policy_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from cli.simulate import simulate

    return await simulate(args)


async def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from cli.replay import replay_command

    return await replay_command(args, settings)


def cmd_receive(args: argparse.Namespace, settings: Settings) -> int:
    from cli.receive import serve

    serve(args.port, settings.webhook_secret.get_secret_value())
    return 0


def cmd_api_key(args: argparse.Namespace, settings: Settings) -> int:
    from api.auth import new_key_entry

    key, entry = new_key_entry(args.name, args.roles)
    print(f"key (give it to {args.name}; it is shown only now): {key}")
    print(f"settings entry (append to ESCALATIONS_API_KEYS, comma-separated): {entry}")
    return 0


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from workers.main import serve

    if args.policy:
        settings = settings.model_copy(update={"policy_path": Path(args.policy)})
    return await serve(settings, with_api=not args.no_api)


def build_parser() -> argparse.ArgumentParser:
    from workflows.models import ACTIONS

    p = argparse.ArgumentParser(prog="escalations", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the server (embedded default), the worker and the HTTP API")
    run.add_argument("--no-api", action="store_true", help="worker only")
    run.add_argument("--policy", help="policy file (default: settings' policy_path)")
    run.set_defaults(handler=cmd_run)

    o = sub.add_parser("open", help="open a ticket from JSON (inline, @file or -)")
    o.add_argument("ticket")
    o.set_defaults(handler=cmd_open)

    a = sub.add_parser("act", help="send an agent action (as an update; --signal to fire and forget)")
    a.add_argument("ticket_id")
    a.add_argument("action", choices=sorted(ACTIONS))
    a.add_argument("payload", help='JSON payload, e.g. \'{"actor": {"id": "ann", "role": "agent"}}\'')
    a.add_argument("--signal", action="store_true")
    a.add_argument(
        "--idempotency-key",
        help="send the same key again (a retry) and the action is applied once; it answers the status",
    )
    a.set_defaults(handler=cmd_act)

    s = sub.add_parser("status", help="show a ticket's status")
    s.add_argument("ticket_id")
    s.set_defaults(handler=cmd_status)

    t = sub.add_parser("timeline", help="export the audit timeline")
    t.add_argument("ticket_id")
    t.add_argument("--format", choices=["json", "csv", "md"], default="md")
    t.add_argument(
        "--source",
        choices=["history", "state"],
        default="history",
        help="history: from Temporal's event history (default); state: the workflow's own record",
    )
    t.add_argument("--output", "-o")
    t.set_defaults(handler=cmd_timeline)

    q = sub.add_parser("search", help='list tickets by a visibility query, e.g. "TicketTier = 2 AND SlaBreached"')
    q.add_argument("query", nargs="?", default="")
    q.add_argument("--limit", type=int, default=50)
    q.set_defaults(handler=cmd_search)

    pol = sub.add_parser("policy", help="check or simulate a policy file").add_subparsers(
        dest="policy_cmd", required=True
    )
    c = pol.add_parser("check", help="validate a policy file")
    c.add_argument("file")
    c.set_defaults(handler=cmd_policy_check)
    sim = pol.add_parser("simulate", help="run the real workflow on the time-skipping server and print its schedule")
    sim.add_argument("file")
    sim.add_argument("--ticket", required=True, help="ticket JSON (inline, @file or -)")
    sim.add_argument("--events", help="JSON list of {at_offset|at, action, payload}")
    sim.add_argument("--days", type=float, default=10, help="how much policy time to simulate")
    sim.set_defaults(handler=cmd_policy_simulate)

    r = sub.add_parser("replay", help="replay a ticket's history against the current workflow code")
    r.add_argument("ticket_id", nargs="?")
    r.add_argument("--history", help="a saved history JSON file instead of fetching one")
    r.add_argument("--save", help="also save the fetched history to this file")
    r.set_defaults(handler=cmd_replay)

    rc = sub.add_parser("receive", help="a local webhook receiver that verifies and prints events (for demos)")
    rc.add_argument("--port", type=int, default=8099)
    rc.set_defaults(handler=cmd_receive)

    k = sub.add_parser("api-key", help="make a new API key and its hashed settings entry")
    k.add_argument("name")
    k.add_argument("roles", nargs="+", choices=["agent", "lead", "manager", "system"])
    k.set_defaults(handler=cmd_api_key)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    try:
        result = args.handler(args, settings)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
    except json.JSONDecodeError as err:
        return _fail(f"not valid JSON: {err}")
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        from temporalio.service import RPCError

        if isinstance(err, RPCError):
            return _fail(f"Temporal answered: {err.message} (is `./dev run` running?)", 1)
        raise


def run() -> None:
    """Console entry point. Exits without interpreter finalization, after flushing: the Temporal
    SDK's native threads can abort a finishing interpreter (sdk-python #300, 'PyGILState_Release'),
    which would turn a successful command into a crash report."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
