"""Process commands: `run` (everything), `worker`, `api`, `codec-server` (each alone), `codec-key`.

The logic lives in `workers/main.py` (processes) and `workers/codec.py` (keys); these are the CLI faces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import app, bad_input, run_async, settings

PolicyOption = Annotated[
    Path | None, typer.Option(help="Policy file (default: the POLICY_PATH setting).", show_default=False)
]


def _with_policy(policy: Path | None) -> object:
    config = settings()
    if policy:
        if not policy.is_file():
            bad_input(f"--policy: no such file: {policy}")
        config = config.model_copy(update={"policy_path": policy})
    return config


@app.command("run")
def run(
    no_api: Annotated[bool, typer.Option("--no-api", help="The worker only, no HTTP API.")] = False,
    policy: PolicyOption = None,
) -> None:
    """Start the service: the Temporal dev server (embedded default), the worker, the HTTP API and the codec server.

    Example: escalations run --policy config/policies/demo.yaml
    """
    from cli.instance import single_instance
    from workers.main import run_all

    config = _with_policy(policy)
    with single_instance(config, with_api=not no_api):
        code = run_async(run_all(config, with_api=not no_api))  # type: ignore[arg-type]
    if code:
        raise typer.Exit(code)


@app.command("worker")
def worker(policy: PolicyOption = None) -> None:
    """The Temporal worker alone (scale it out: several share the task queue); /healthz, /readyz on WORKER_HEALTH_PORT.

    Example: ESCALATIONS_TEMPORAL_ADDRESS=temporal:7233 escalations worker
    """
    from workers.main import run_alone

    code = run_async(run_alone(_with_policy(policy), "worker"))  # type: ignore[arg-type]
    if code:
        raise typer.Exit(code)


@app.command("api")
def api() -> None:
    """The HTTP API alone (/healthz, /readyz beside its routes).

    Example: ESCALATIONS_TEMPORAL_ADDRESS=temporal:7233 escalations api
    """
    from workers.main import run_alone

    code = run_async(run_alone(settings(), "api"))
    if code:
        raise typer.Exit(code)


@app.command("codec-server")
def codec_server() -> None:
    """The codec server alone: decrypts payloads for the Temporal Web UI and CLI, for bearers of a token.

    Example: ESCALATIONS_CODEC_KEYS=... ESCALATIONS_CODEC_SERVER_TOKENS=... escalations codec-server
    """
    from workers.main import run_alone

    code = run_async(run_alone(settings(), "codec-server"))
    if code:
        raise typer.Exit(code)


@app.command("codec-key")
def codec_key(
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Put a new current key in front of the key file's keys (kept).")
    ] = False,
) -> None:
    """Print a new payload-encryption key entry for ESCALATIONS_CODEC_KEYS, or rotate the key file.

    Example: escalations codec-key --rotate
    """
    from workers.codec import key_command

    code = key_command(settings(), rotate=rotate)
    if code:
        raise typer.Exit(code)
