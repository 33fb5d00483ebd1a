"""Operator commands: replay, receive, api-key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from cli.app import (
    CliError,
    ExitCode,
    JsonOption,
    about_ticket,
    app,
    bad_input,
    connect_client,
    print_json,
    run_async,
    settings,
)

ROLES = ("agent", "lead", "manager", "system", "auditor")  # api.auth.CallerRole


@app.command("replay")
def replay(
    ticket_id: Annotated[str | None, typer.Argument(help="Fetch this ticket's history.", show_default=False)] = None,
    history: Annotated[Path | None, typer.Option(help="A saved history JSON file instead.", show_default=False)] = None,
    save: Annotated[Path | None, typer.Option(help="Also save the fetched history here.", show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Replay a ticket's history against the current workflow code (exit 5 on a mismatch).

    Example: escalations replay T-1001
    """
    from cli.replay import fetch_history, load_history, replay_history

    if history is None and ticket_id is None:
        bad_input("give a ticket id or --history FILE")

    from workers.codec import CodecError, data_converter

    config = settings()

    async def go() -> tuple[str, int, str | None]:
        if history is not None:
            try:
                loaded = load_history(history)
            except FileNotFoundError:
                bad_input(f"--history: no such file: {history}")
            except ValueError as err:
                bad_input(f"--history: not a workflow history: {err}")
        else:
            assert ticket_id is not None
            client = await connect_client(config)
            with about_ticket(ticket_id):
                loaded = await fetch_history(client, ticket_id)
            if save:
                save.write_text(loaded.to_json())
        try:
            converter = data_converter(config)  # decrypts with the settings' keys
        except CodecError:
            if not history:
                raise
            converter = data_converter(None)  # a saved history, no key here: plain payloads replay as they are
        result = await replay_history(loaded, converter)
        failure = None if result.replay_failure is None else _summary(str(result.replay_failure))
        return loaded.workflow_id, len(loaded.events), failure

    workflow_id, count, failure = run_async(go())
    if failure is not None:
        raise CliError(f"MISMATCH: {workflow_id} does not replay on the current code: {failure}", ExitCode.MISMATCH)
    if as_json:
        print_json({"workflow_id": workflow_id, "events": count, "replays": True})
        return
    print(f"ok: {count} events of {workflow_id} replayed; the current code makes exactly the recorded decisions")


@app.command("receive")
def receive(
    port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Port on 127.0.0.1; default: ESCALATIONS_WEBHOOK_URL's port if it is local, else 8099.",
        ),
    ] = None,
) -> None:
    """A local webhook receiver that verifies signatures and prints one line per event (for demos).

    Examples:
      escalations receive
      ESCALATIONS_WEBHOOK_URL=http://127.0.0.1:9000/events escalations receive   # the service posts there too
    """
    from cli.receive import default_port, serve

    config = settings()
    chosen = port or default_port(config.webhook_url)
    try:
        serve(chosen, config.webhook_secret.get_secret_value())
    except OSError as err:
        bad_input(f"--port: cannot listen on 127.0.0.1:{chosen}: {err.strerror or err}")


@app.command("api-key")
def api_key(
    name: Annotated[str, typer.Argument(help="Who gets the key (the actor id it may act as).", show_default=False)],
    roles: Annotated[list[str], typer.Argument(help=f"Its roles: {', '.join(ROLES)}.", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """Make a new API key and its hashed settings entry (the key is shown only now).

    Example: escalations api-key ann agent lead
    """
    from api.auth import key_name_problem, new_key_entry

    problem = key_name_problem(name)
    if problem is not None:
        bad_input(f"name: {problem}, got {name[:80]!r}")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        bad_input(f"roles: unknown role {unknown[0]!r} (one of: {', '.join(ROLES)})")
    key, entry = new_key_entry(name, roles)
    if as_json:
        print_json({"name": name, "roles": roles, "key": key, "settings_entry": entry})
        return
    print(f"key (give it to {name}; it is shown only now): {key}")
    print(f"settings entry (append to ESCALATIONS_API_KEYS, comma-separated): {entry}")


def _summary(failure: str) -> str:
    """The messages of a replay failure (the core's nested `Failure { message: ... }`), not its stack traces."""
    messages = re.findall(r'message: "((?:[^"\\]|\\.)*)"', failure)
    text = " <- ".join(dict.fromkeys(messages)) if messages else failure.splitlines()[0]
    return text if len(text) <= 400 else text[:400] + "..."
