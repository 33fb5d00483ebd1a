"""The `escalations` command line: the Typer app, its exit codes, errors and output helpers.

Commands live in their own modules (`cli/tickets.py`, `cli/ops.py`, ...) and register themselves
on `app` (or a sub-app such as `policy_app`) with a decorator; `cli/main.py` imports those modules
and runs the app. Adding a command: a function in its own module under `cli/`, decorated with
`@app.command()` (or a sub-app's), its module named in `COMMAND_MODULES` in `cli/main.py`; it raises
`bad_input` / `refused` / `not_found` / `unreachable` (or `CliError`) rather than printing errors,
wraps calls about one ticket in `about_ticket(ticket_id)`, takes `as_json: JsonOption` and prints
with `emit()` or `table()`.

Exit codes (README, "Command line and exit codes"): 0 ok; 1 Temporal unreachable (or the service cannot start);
2 bad input, including a missing file; 3 refused by the ticket; 4 no such ticket. Every error is
one line on stderr, `error: ...`; no traceback reaches a person.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel, ValidationError

T = TypeVar("T")


class ExitCode(IntEnum):
    OK = 0
    UNREACHABLE = 1  # Temporal cannot be reached, or the service cannot start (already running)
    BAD_INPUT = 2  # a bad argument, JSON, field or file
    REFUSED = 3  # the ticket refused the action, or cannot answer now (closed, failing)
    NOT_FOUND = 4  # no such ticket
    MISMATCH = 5  # `replay`: the history does not replay on the current code


class CliError(Exception):
    """Raised by a command: `main` prints `error: <message>` (one line) and exits with `code`."""

    def __init__(self, message: str, code: ExitCode = ExitCode.BAD_INPUT) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def bad_input(message: str) -> NoReturn:
    raise CliError(message, ExitCode.BAD_INPUT)


def refused(message: str) -> NoReturn:
    raise CliError(message, ExitCode.REFUSED)


def not_found(message: str) -> NoReturn:
    raise CliError(message, ExitCode.NOT_FOUND)


def unreachable(message: str) -> NoReturn:
    raise CliError(message, ExitCode.UNREACHABLE)


app = typer.Typer(
    name="escalations",
    help="Support tickets as durable Temporal workflows: run the service, drive tickets, check policies, audit.",
    epilog="Exit codes: 0 ok, 1 Temporal unreachable, 2 bad input, 3 refused by the ticket, 4 no such ticket.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # never rich tracebacks with local variables: `main` maps errors
    context_settings={"help_option_names": ["-h", "--help"]},
)
policy_app = typer.Typer(help="Check or simulate a policy file.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print JSON, for scripts (without it: a table on a terminal, plain text when piped)."),
]


def quiet_logs(level: str) -> None:
    """Logs on stderr at `level` and above: readable lines for a person running a command, piped or not
    (JSON lines are for the service's processes, `run` sets its own); LOG_FORMAT=json asks for JSON."""
    import os

    from workers.logs import configure

    fmt = os.environ.get("ESCALATIONS_LOG_FORMAT", "auto").lower()
    configure("json" if fmt == "json" else "console", level)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def settings() -> Any:
    """The process settings; a bad `ESCALATIONS_*` variable is bad input, named."""
    from config.settings import Settings

    try:
        return Settings()
    except ValidationError as err:
        bad_input(f"settings: {validation_message(err)}")


def validation_message(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'body'}: {e['msg']}" for e in err.errors())


def read_json(value: str, what: str) -> Any:
    """A JSON document given inline, as @file, or as - for standard input; `what` names the argument."""
    if value == "-":
        text = sys.stdin.read()
    elif value.startswith("@") or (not value.lstrip().startswith(("{", "[")) and Path(value).is_file()):
        path = Path(value.removeprefix("@"))
        try:
            text = path.read_text()
        except FileNotFoundError:
            bad_input(f"{what}: no such file: {path}")
        except IsADirectoryError:
            bad_input(f"{what}: {path} is a directory, not a JSON file")
        except (OSError, UnicodeDecodeError) as err:
            bad_input(f"{what}: cannot read {path}: {err}")
    else:
        text = value
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        hint = "" if value.lstrip().startswith(("{", "[", "@", "-")) else " (a file is given as @FILE)"
        bad_input(f"{what}: not valid JSON: {err}{hint}")


def model_from(model: type[T], data: Any, what: str) -> T:
    """Validate `data` as `model`; a failure is bad input naming each field."""
    try:
        return model.model_validate(data)  # type: ignore[attr-defined,no-any-return]
    except ValidationError as err:
        bad_input(f"invalid {what}: {validation_message(err)}")


async def connect_client(config: Any) -> Any:
    """A Temporal client for the settings; exit 1 in one line if the server cannot be reached."""
    from workers.codec import CodecError
    from workers.connection import connect

    try:
        return await connect(config)
    except CodecError as err:  # payload-encryption keys missing or malformed: a settings problem
        bad_input(f"settings: {err}")
    except Exception as err:  # the SDK raises RuntimeError("Failed client connect: ...")
        text = str(err)
        why = "connection refused" if "refused" in text.lower() else _first_line(err)[:200]
        unreachable(f"cannot reach Temporal at {config.address} ({why}); is `./dev run` running?")


async def ticket_client(config: Any) -> Any:
    from api.client import TicketClient

    return TicketClient(await connect_client(config), config.task_queue)


@contextlib.contextmanager
def about_ticket(ticket_id: str) -> Iterator[None]:
    """Temporal's answers about one ticket as exit codes: 4 no such ticket, 3 refused or cannot answer."""
    from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateFailedError
    from temporalio.service import RPCError, RPCStatusCode

    from api.client import ActionRefused

    try:
        yield
    except ActionRefused as err:
        refused(str(err))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            not_found(f"no such ticket: {ticket_id}")
        if err.status == RPCStatusCode.FAILED_PRECONDITION:
            refused(f"ticket {ticket_id} cannot take this now: {_first_line(err)}")
        raise
    except WorkflowQueryFailedError as err:
        refused(f"ticket {ticket_id} cannot answer: {_first_line(err)}")
    except WorkflowUpdateFailedError as err:
        refused(f"ticket {ticket_id} did not apply it: {_first_line(err.cause or err)}")


def _first_line(err: BaseException) -> str:
    text = getattr(err, "message", None) or str(err) or type(err).__name__
    return str(text).strip().splitlines()[0] if str(text).strip() else type(err).__name__


# ---------------------------------------------------------------------------------------- output
def is_terminal() -> bool:
    return sys.stdout.isatty()


def to_data(value: Any) -> Any:
    """Plain JSON data from models, mappings and lists."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_data(v) for v in value]
    return value


def print_json(value: Any) -> None:
    print(json.dumps(to_data(value), indent=2, default=str, ensure_ascii=False))


def blank_line() -> None:
    print()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(value)
    if value in ([], {}):
        return "-"
    return json.dumps(value, default=str, ensure_ascii=False)


def emit(value: Any, *, as_json: bool, title: str | None = None) -> None:
    """Print a result: JSON with `--json`; a rich table on a terminal; plain text when piped.

    A mapping is shown as field/value rows; a list of mappings as one row each (columns from the keys)."""
    if as_json:
        print_json(value)
        return
    data = to_data(value)
    if isinstance(data, list):
        columns: list[str] = []
        for row in data:
            for key in row if isinstance(row, Mapping) else []:
                if key not in columns:
                    columns.append(key)
        rows = [[_cell(row.get(c)) for c in columns] if isinstance(row, Mapping) else [_cell(row)] for row in data]
        table(columns or ["value"], rows, title=title)
    elif isinstance(data, Mapping):
        table(["field", "value"], [[str(k), _cell(v)] for k, v in data.items()], title=title, header=False)
    else:
        print(_cell(data))


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    header: bool = True,
    no_wrap: Sequence[str] = (),
) -> None:
    """Rows as a rich table on a terminal; tab-separated lines (header first) when piped.

    `no_wrap`: columns kept on one line on a terminal (the others wrap to make room)."""
    if is_terminal():
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, show_header=header, header_style="bold", title_justify="left")
        for column in columns:
            t.add_column(column, no_wrap=column in no_wrap)
        for row in rows:
            t.add_row(*row)
        Console().print(t)
        return
    lines = (["\t".join(columns)] if header else []) + ["\t".join(c.replace("\t", " ") for c in row) for row in rows]
    if lines:
        print("\n".join(lines))
