"""Process commands: `run` (embedded server + worker + API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import app, bad_input, run_async, settings


@app.command("run")
def run(
    no_api: Annotated[bool, typer.Option("--no-api", help="The worker only, no HTTP API.")] = False,
    policy: Annotated[
        Path | None, typer.Option(help="Policy file (default: the POLICY_PATH setting).", show_default=False)
    ] = None,
) -> None:
    """Start the service: the Temporal dev server (embedded default), the worker and the HTTP API.

    Example: escalations run --policy config/policies/demo.yaml
    """
    from cli.instance import single_instance
    from workers.main import serve

    config = settings()
    if policy:
        if not policy.is_file():
            bad_input(f"--policy: no such file: {policy}")
        config = config.model_copy(update={"policy_path": policy})
    with single_instance(config, with_api=not no_api):
        code = run_async(serve(config, with_api=not no_api))
    if code:
        raise typer.Exit(code)
