"""`escalations`: run the service, drive tickets, check policies, audit and replay.

The Typer app, exit codes and output helpers are in `cli/app.py`; each module below registers its
commands on import. `main` turns every error into one line and an exit code (README, "Command line and exit codes").
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import os
import re
import sys

import typer

from cli.app import CliError, ExitCode, app, quiet_logs

# Each module registers its commands on import; `--help` lists them in this order.
COMMAND_MODULES = [
    "cli.service",
    "cli.tickets",
    "cli.policy",
    "cli.ops",
    "cli.connect",
    "cli.notify",
    "cli.store",
    "cli.review",
]
for _module in COMMAND_MODULES:
    importlib.import_module(_module)

BROKEN_PIPE = 141  # 128 + SIGPIPE, as a Unix tool killed by a closed pipe


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code. Errors are one line on stderr, never a traceback."""
    command = typer.main.get_command(app)
    quiet_logs("WARNING")  # a client command logs only what a person must see; `run` sets its own level
    from workers.logs import install_core_logging

    install_core_logging()  # the Temporal core's warnings as log lines, not raw coloured text on stdout
    try:
        result = command.main(args=argv, prog_name="escalations", standalone_mode=False)
        return int(result) if isinstance(result, int) else 0
    except CliError as err:
        return _fail(err.message, err.code)
    except typer.Exit as err:
        return int(err.exit_code)
    except typer.TyperException as err:  # usage errors: a missing argument, a bad option or choice
        ctx = getattr(err, "ctx", None)
        if not err.format_message():  # no arguments at all: the help was printed
            return int(ExitCode.BAD_INPUT)
        where = f"{ctx.command_path} --help" if ctx is not None else "escalations --help"
        return _fail(f"{err.format_message()} (see {where})", ExitCode.BAD_INPUT)
    except (typer.Abort, KeyboardInterrupt):
        return 130
    except SystemExit as err:  # Typer turns a broken pipe into sys.exit(1); any other exit stands
        context = err.__context__
        if isinstance(context, OSError) and context.errno == errno.EPIPE:
            return _broken_pipe()
        raise
    except BrokenPipeError:
        return _broken_pipe()
    except json.JSONDecodeError as err:
        return _fail(f"not valid JSON: {err}", ExitCode.BAD_INPUT)
    except Exception as err:
        return _unexpected(err)


def _unexpected(err: Exception) -> int:
    from temporalio.service import RPCError, RPCStatusCode

    from api.retries import TicketStalled

    if isinstance(err, TicketStalled):  # the ticket was reached; its workflow task keeps failing
        return _fail(err.message, ExitCode.UNREACHABLE)
    if isinstance(err, RPCError) and err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return _fail(f"Temporal did not answer: {err.message} (is `./dev run` running?)", ExitCode.UNREACHABLE)
    if isinstance(err, RPCError):
        return _fail(f"Temporal answered: {err.message}", ExitCode.UNREACHABLE)
    if isinstance(err, RuntimeError) and "Failed client connect" in str(err):  # a process command connecting
        found = re.search(r'connect error", ([^,\s]+)', str(err))
        why = "connection refused" if "refused" in str(err).lower() else str(err).splitlines()[0][:200]
        where = f" at {found.group(1)}" if found else ""
        return _fail(f"cannot reach Temporal{where} ({why})", ExitCode.UNREACHABLE)
    if isinstance(err, FileNotFoundError):
        # A file named by the user has a filename; a missing program (the embedded server's binary)
        # raises with a message of its own that says what to install.
        return _fail(f"no such file: {err.filename}" if err.filename else str(err), ExitCode.BAD_INPUT)
    if os.environ.get("ESCALATIONS_DEBUG"):
        raise err
    return _fail(f"{type(err).__name__}: {err} (set ESCALATIONS_DEBUG=1 for the traceback)", ExitCode.UNREACHABLE)


def _fail(message: str, code: int) -> int:
    """One line: a message of several lines (a policy's list of problems) is joined with '; '."""
    lines = [line.strip().removeprefix("- ").strip() for line in str(message).strip().splitlines() if line.strip()]
    head, rest = (lines[0], lines[1:]) if lines else ("failed", [])
    text = " ".join(f"{head} {'; '.join(rest)}".split()) if rest else " ".join(head.split())
    with contextlib.suppress(BrokenPipeError):
        print(f"error: {text}", file=sys.stderr)
    return int(code)


def _broken_pipe() -> int:
    """The reader went away (`| head`): say nothing, and stop writing to it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return BROKEN_PIPE


def run() -> None:
    """Console entry point. Exits without interpreter finalization, after flushing: the Temporal
    SDK's native threads can abort a finishing interpreter (sdk-python #300, 'PyGILState_Release'),
    which would turn a successful command into a crash report."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _broken_pipe()
    with contextlib.suppress(BrokenPipeError):
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
