"""Policy commands: `policy check`, `policy simulate`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated

import typer

from cli.app import CliError, ExitCode, JsonOption, policy_app, print_json

PolicyFile = Annotated[Path, typer.Argument(help="A policy file (YAML or JSON).", show_default=False)]


@policy_app.command("check")
def check(file: PolicyFile, as_json: JsonOption = False) -> None:
    """Validate a policy file (schema and semantics) and print its version.

    Example: escalations policy check config/policies/default.yaml
    """
    from config.policy import PolicyError, load_policy_file

    if not file.is_file():
        raise CliError(f"no such file: {file}", ExitCode.BAD_INPUT)
    try:
        policy = load_policy_file(file)
    except PolicyError as err:
        raise CliError(str(err), ExitCode.BAD_INPUT) from None
    if as_json:
        print_json(
            {
                "file": str(file),
                "valid": True,
                "version": policy.version_label(file),
                "routes": len(policy.routes),
                "tiers": len(policy.tiers),
                "departments": len(policy.departments),
            }
        )
        return
    print(
        f"ok: {file} is valid (version {policy.version_label(file)}; "
        f"{len(policy.routes)} routes, {len(policy.tiers)} tiers, {len(policy.departments)} departments)"
    )


@policy_app.command("simulate")
def simulate(
    file: PolicyFile,
    ticket: Annotated[str, typer.Option(help="The ticket JSON (inline, @FILE or -).", show_default=False)],
    events: Annotated[
        str | None,
        typer.Option(help='JSON list of {"after": "PT2H", "action": ..., "payload": {...}} (inline or @FILE).'),
    ] = None,
    days: Annotated[float, typer.Option(min=0, help="How much policy time to simulate.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Run the workflow's decisions at exact instants (no server needed) and print the schedule.

    Example: escalations policy simulate config/policies/default.yaml --ticket @config/examples/ticket.json
    --events @config/examples/events.json --days 5
    """
    from cli.simulate import simulate as run_simulation

    if not file.is_file():
        raise CliError(f"no such file: {file}", ExitCode.BAD_INPUT)
    code = run_simulation(argparse.Namespace(file=str(file), ticket=ticket, events=events, days=days, json=as_json))
    if code:
        raise typer.Exit(code)
