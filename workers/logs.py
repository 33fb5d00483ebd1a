"""structlog set-up: JSON lines in production, readable console output for people.

One `ProcessorFormatter` renders everything: structlog's own events and stdlib records (Temporal's SDK,
uvicorn, httpx). Temporal's records shape most of this module:

* Records from workflow code, and the SDK's own record of a failed workflow task, are formatted on the
  workflow's sandbox thread, where the SDK swaps `__import__`, `sys.modules` and some builtins for
  restricted versions. structlog's default JSON fallback runs `from structlog.threadlocal import ...`
  for every value `json` cannot encode (the `exc_info` tuple of every error record, a datetime or a
  model in `extra`); inside the sandbox that import re-imports structlog and rich, rich touches
  `os.path`, the sandbox raises `RestrictedWorkflowAccessError`, `logging` prints
  `--- Logging error ---` and the record is lost. So the formatter lifts the sandbox while it runs
  (as the SDK's own `workflow.logger.unsafe_disable_sandbox()` does), encodes unknown values with a
  local `repr` fallback that imports nothing, and turns a record that still fails into a minimal line.
* The server retries a failed workflow task forever and the workflow never shows as Failed: the SDK's
  WARNING "Failed activation on workflow ..." is the only trace. It becomes one error line,
  `workflow_task.failed`, that names the ticket, and passes even when only errors are logged.
* The SDK's context dicts (`temporal_workflow`, `temporal_activity`) would repeat on every line; only
  the keys worth searching on are kept, at the top level.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger
from temporalio import activity, workflow
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from workers.run_names import workflow_of

TICKET_PREFIX = "ticket-"
TASK_FAILED_EVENT = "workflow_task.failed"
_TASK_FAILURE_ID = "WorkflowTaskFailure"  # the SDK's `__temporal_error_identifier` extra on that record
_TASK_FAILURE_MESSAGE = re.compile(
    r"^Failed activation on workflow (?P<workflow_type>\S+) with ID (?P<workflow_id>\S+) and run ID (?P<run_id>\S+)"
)
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
# Keys kept from the SDK's context dicts, and their top-level names; the rest repeats or is noise.
_CONTEXT_KEYS = {
    "workflow_id": "workflow_id",
    "run_id": "run_id",
    "workflow_run_id": "run_id",  # activities name it so
    "workflow_type": "workflow_type",
    "activity_type": "activity_type",
}
# uvicorn's ANSI-coloured copy of the message; the SDK's failure marker (read first) and its full Info object.
_DROPPED_EXTRA = ("color_message", "__temporal_error_identifier", "workflow_info")
_JSON_SCALARS = (str, int, float, bool, type(None))


CORE_LOGGER = "temporalio.core"


def core_logging() -> LoggingConfig:
    """The Temporal core's (Rust) own log lines, forwarded through this module's renderer.

    By default the core prints them itself, coloured, beside the JSON lines; forwarded, each is one
    record of logger `temporalio.core` whose fields are fields (see `_temporal_context`)."""
    return LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(
            logger=logging.getLogger(CORE_LOGGER),
            append_target_to_name=False,
            prepend_target_on_message=False,
            append_log_fields_to_message=False,
        ),
    )


def install_core_logging() -> None:
    """Make a runtime that forwards the core's log lines the process default (before any client exists)."""
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=core_logging())), error_if_already_set=False)


def resolve_format(fmt: str, stream: TextIO) -> str:
    """`auto`: readable console lines on a terminal, JSON lines otherwise (a file, a pipe, a collector)."""
    if fmt != "auto":
        return fmt
    try:
        return "console" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # a closed or unusual stream
        return "json"


def configure(fmt: str = "json", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging (Temporal's, uvicorn's) through one renderer on stderr (or `stream`).

    `fmt` is `json`, `console` or `auto` (console on a terminal, JSON otherwise)."""
    out = stream if stream is not None else sys.stderr
    fmt = resolve_format(fmt, out)
    json_lines = fmt != "console"
    renderer: Processor = (
        _render_json
        if json_lines
        # plain_traceback: a short traceback, not rich's frames with every local variable
        else structlog.dev.ConsoleRenderer(
            colors=_colours(out), exception_formatter=structlog.dev.plain_traceback, sort_keys=False
        )
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a module's logger cached on first use keeps the configuration of that moment
        # for the life of the process, so a later `configure` (or structlog's reset, between tests)
        # no longer reaches it and its lines go to a stream nobody reads. Costs microseconds a line.
        cache_logger_on_first_use=False,
    )
    processors: list[Processor] = [_temporal_context, structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if json_lines:  # the console renderer formats exc_info itself
        processors.append(structlog.processors.format_exc_info)
    processors += [_strip_ansi, renderer]
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        _SafeFormatter(
            json_lines=json_lines,
            processors=processors,
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    handler.addFilter(_LevelWithTaskFailures(root.level))
    # The task-failure record is a WARNING: let the SDK's warnings reach the handler, which applies `level`.
    logging.getLogger("temporalio").setLevel(min(root.level, logging.WARNING))
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The ids are top-level keys already; the SDK would also append its whole info dict to each message.
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False


def _colours(stream: TextIO) -> bool:
    """Colour on a terminal that wants it (https://no-color.org), never in a file or pipe."""
    try:
        return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


class _SafeFormatter(structlog.stdlib.ProcessorFormatter):
    """A `ProcessorFormatter` that never raises, also on the workflow sandbox thread (module docstring)."""

    def __init__(
        self, *, json_lines: bool, processors: Sequence[Processor], foreign_pre_chain: Sequence[Processor]
    ) -> None:
        super().__init__(processors=processors, foreign_pre_chain=foreign_pre_chain)
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        with _sandbox_lifted():
            try:
                return super().format(record)
            except Exception as err:  # a raising formatter loses the record; a minimal line keeps it
                return self._last_resort(record, err)

    def _last_resort(self, record: logging.LogRecord, err: Exception) -> str:
        try:
            message = record.getMessage()
        except Exception:  # e.g. arguments that do not fit the format string
            message = record.msg if isinstance(record.msg, str) else _json_default(record.msg)
        fields = {
            "event": _ANSI.sub("", message),
            "level": record.levelname.lower(),
            "logger": record.name,
            "log_error": _json_default(err),
        }
        if self.json_lines:
            return json.dumps(fields, default=_json_default)
        return " ".join(f"{key}={value}" for key, value in fields.items())


@contextlib.contextmanager
def _sandbox_lifted() -> Iterator[None]:
    """On the workflow sandbox thread: real imports and builtins while a record is formatted."""
    if not workflow.unsafe.in_sandbox():
        yield
        return
    with workflow.unsafe.sandbox_unrestricted(), workflow.unsafe.imports_passed_through():
        yield


class _LevelWithTaskFailures(logging.Filter):
    """Raise the SDK's record of a failed workflow task to ERROR, then apply the configured level."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR and _task_failure(record) is not None:
            record.levelno, record.levelname = logging.ERROR, "ERROR"
        return record.levelno >= self.level


def _task_failure(record: logging.LogRecord) -> dict[str, str] | None:
    """The ids named by the SDK's record of a failed workflow task ({} if none parse); None for other records."""
    if not record.name.startswith("temporalio"):
        return None
    try:
        match = _TASK_FAILURE_MESSAGE.match(record.getMessage())
    except Exception:
        match = None
    if match is None and record.__dict__.get("__temporal_error_identifier") != _TASK_FAILURE_ID:
        return None
    return match.groupdict() if match else {}


def _temporal_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Flatten the SDK's context dicts into top-level ids, add `ticket_id`, name a failed workflow task."""
    for key in _DROPPED_EXTRA:
        event_dict.pop(key, None)
    core = event_dict.pop("temporal_log", None)  # a forwarded core log line: its target and fields as fields
    if core is not None:
        event_dict.setdefault("target", str(getattr(core, "target", "")))
        fields = getattr(core, "fields", None)
        if isinstance(fields, Mapping):
            for name, value in fields.items():
                event_dict.setdefault(str(name), value if isinstance(value, _JSON_SCALARS) else str(value))
    for key in ("temporal_workflow", "temporal_activity"):
        context = event_dict.pop(key, None)
        if isinstance(context, Mapping):
            for name, top_level in _CONTEXT_KEYS.items():
                if name in context:
                    event_dict.setdefault(top_level, context[name])
    record = event_dict.get("_record")
    failure = None
    if isinstance(record, logging.LogRecord) and not event_dict.get("_from_structlog"):
        failure = _task_failure(record)
    if failure is not None:
        for name, value in failure.items():
            event_dict.setdefault(name, value)
        event_dict["event"] = TASK_FAILED_EVENT  # the message only repeats the ids
        event_dict["level"] = "error"
        exc_info = event_dict.get("exc_info")
        exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
        if isinstance(exc, BaseException):
            event_dict["error"] = f"{type(exc).__name__}: {exc}"
    if "workflow_id" not in event_dict and "run_id" in event_dict:  # a core line: the run id alone
        named = workflow_of(event_dict["run_id"])
        if named is not None:
            event_dict["workflow_id"] = named
    workflow_id = event_dict.get("workflow_id")
    if isinstance(workflow_id, str) and workflow_id.startswith(TICKET_PREFIX):
        event_dict.setdefault("ticket_id", workflow_id.removeprefix(TICKET_PREFIX))
    return event_dict


def _strip_ansi(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Colour codes (uvicorn's, a terminal-minded library's) are noise inside JSON and break grep."""
    for key, value in event_dict.items():
        if isinstance(value, str) and "\x1b" in value:
            event_dict[key] = _ANSI.sub("", value)
    return event_dict


def _json_default(value: object) -> str:
    """Text for what `json` cannot encode: ISO for dates, else `repr`, and never an import (module docstring)."""
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__qualname__}>"


def _render_json(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    """One JSON line; unknown values become text, and keys or cycles `json` refuses cost only those values."""
    try:
        return json.dumps(event_dict, default=_json_default)
    except (TypeError, ValueError):  # non-string keys such as tuples, circular references
        return json.dumps(
            {
                str(key): value if isinstance(value, _JSON_SCALARS) else _json_default(value)
                for key, value in event_dict.items()
            }
        )
