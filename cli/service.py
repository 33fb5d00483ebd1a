"""Process commands: `run` (everything), `worker`, `api`, `codec-server` (each alone), `codec-key`.

The logic lives in `workers/main.py` (processes) and `workers/codec.py` (keys); these are the CLI faces.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.app import JsonOption, app, bad_input, print_json, run_async, settings

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
    as_json: JsonOption = False,
) -> None:
    """Print a new payload-encryption key entry for ESCALATIONS_CODEC_KEYS, or rotate the key file.

    The new entry (`id:base64key`) is the secret itself, printed once, as `api-key` prints its key;
    `--rotate` prints no key material (the new key is only in the file). `--json`: `{key_id, entry,
    setting}`, or with `--rotate` `{key_file, key_id, older_keys}`.

    Example: escalations codec-key --rotate
    """
    from workers.codec import CodecError, key_entry, rotate_configured_key_file

    if not rotate:
        entry = key_entry()
        if as_json:
            print_json({"key_id": entry.partition(":")[0], "entry": entry, "setting": "ESCALATIONS_CODEC_KEYS"})
            return
        print(entry)  # stdout holds the entry alone, so that KEY=$(escalations codec-key) captures it
        hint = "add it in front of ESCALATIONS_CODEC_KEYS (comma-separated; keep the old keys after it)"
        print(hint, file=sys.stderr)
        return
    try:
        path, ring = rotate_configured_key_file(settings())
    except CodecError as err:
        bad_input(f"codec-key --rotate: {err}")
    if as_json:
        print_json({"key_file": str(path), "key_id": ring.current, "older_keys": len(ring.keys) - 1})
        return
    print(f"{path}: new current key {ring.current}; {len(ring.keys) - 1} older key(s) kept for decryption")
    print("restart the worker, API and codec server processes to encrypt with it")
