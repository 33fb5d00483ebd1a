"""workers.logs: SDK records from the workflow sandbox render as JSON lines; failed workflow tasks are visible.

The workflows here are sandboxed on purpose: the sandbox thread is where the renderer used to crash.
The sandbox re-imports this module, so everything but temporalio is passed through.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import pytest
    import structlog
    from temporalio.client import WorkflowHandle
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker

    from workers.logs import CORE_LOGGER, TASK_FAILED_EVENT, configure
    from workers.run_names import RunNames


class _Opaque:
    """Not JSON-serialisable."""

    def __repr__(self) -> str:
        return "Opaque()"


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@workflow.defn(sandboxed=True)
class LogTestFailingTask:
    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("workflow task failure for the log test")


@workflow.defn(sandboxed=True)
class LogTestExtra:
    @workflow.run
    async def run(self) -> str:
        workflow.logger.info(
            "log test \x1b[31mcoloured\x1b[0m line",
            extra={"payload": _Opaque(), "when": workflow.now(), "nested": {"set": {1}}},
        )
        return "done"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """`configure("json")` on a StringIO; the previous logging set-up is restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    temporal_level = logging.getLogger("temporalio").level
    httpx_level = logging.getLogger("httpx").level
    saved_structlog = structlog.get_config()
    on_message = (workflow.logger.workflow_info_on_message, activity.logger.activity_info_on_message)
    stream = io.StringIO()
    configure("json", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        logging.getLogger("temporalio").setLevel(temporal_level)
        logging.getLogger("httpx").setLevel(httpx_level)
        structlog.configure(**saved_structlog)
        workflow.logger.workflow_info_on_message, activity.logger.activity_info_on_message = on_message


def log_handler() -> logging.Handler:
    """The handler `configure` installed (pytest adds its own to the root logger during each test)."""
    (handler,) = [
        h for h in logging.getLogger().handlers if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
    ]
    return handler


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line must be one JSON object."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def test_failed_workflow_task_is_one_error_line_with_the_ticket(
    ts_env: WorkflowEnvironment, log_stream: io.StringIO, capfd: pytest.CaptureFixture[str]
) -> None:
    ticket_id = f"LOGTEST-{uuid.uuid4().hex[:8]}"
    task_queue = f"tq-logs-{uuid.uuid4().hex[:8]}"
    handle: WorkflowHandle[Any, Any] | None = None
    failures: list[dict[str, Any]] = []
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[LogTestFailingTask], interceptors=[RunNames()]):
        try:
            handle = await ts_env.client.start_workflow(
                LogTestFailingTask.run, id=f"ticket-{ticket_id}", task_queue=task_queue
            )
            for _ in range(100):  # up to 10 s
                failures = [line for line in json_lines(log_stream) if line.get("ticket_id") == ticket_id]
                if failures:
                    break
                await asyncio.sleep(0.1)
        finally:
            if handle is not None:
                await handle.terminate("log test done")
    assert failures, log_stream.getvalue()
    assert handle is not None
    line = failures[0]
    assert line["event"] == TASK_FAILED_EVENT
    assert line["level"] == "error"
    assert line["workflow_id"] == f"ticket-{ticket_id}"
    assert line["run_id"] == handle.result_run_id
    assert line["workflow_type"] == "LogTestFailingTask"
    assert line["error"] == "RuntimeError: workflow task failure for the log test"
    assert "workflow task failure for the log test" in line["exception"]
    assert "temporal_workflow" not in line and "__temporal_error_identifier" not in line
    # The core's own lines carry the run id alone: the worker's interceptor learnt whose run it is.
    core = SimpleNamespace(target="temporalio_sdk_core::worker::workflow", fields={"run_id": handle.result_run_id})
    logging.getLogger(CORE_LOGGER).warning("Failing workflow task", extra={"temporal_log": core})
    named = json_lines(log_stream)[-1]
    assert named["event"] == "Failing workflow task" and named["ticket_id"] == ticket_id
    assert named["workflow_id"] == f"ticket-{ticket_id}"
    captured = capfd.readouterr()
    assert "--- Logging error ---" not in captured.err + captured.out + log_stream.getvalue()


async def test_workflow_log_with_non_json_extra_is_one_json_line(
    ts_env: WorkflowEnvironment, log_stream: io.StringIO, capfd: pytest.CaptureFixture[str]
) -> None:
    workflow_id = f"ticket-LOGTEST-{uuid.uuid4().hex[:8]}"
    task_queue = f"tq-logs-{uuid.uuid4().hex[:8]}"
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[LogTestExtra]):
        assert await ts_env.client.execute_workflow(LogTestExtra.run, id=workflow_id, task_queue=task_queue) == "done"
    lines = [line for line in json_lines(log_stream) if line.get("workflow_id") == workflow_id]
    assert len(lines) == 1, log_stream.getvalue()
    line = lines[0]
    assert line["event"] == "log test coloured line"  # no ANSI, no workflow-info dict appended
    assert line["payload"] == "Opaque()"
    assert line["when"].startswith("20")  # ISO timestamp
    assert line["nested"] == {"set": "{1}"}
    assert line["ticket_id"] == workflow_id.removeprefix("ticket-")
    assert line["workflow_type"] == "LogTestExtra" and line["run_id"]
    assert "temporal_workflow" not in line and "namespace" not in line
    captured = capfd.readouterr()
    assert "--- Logging error ---" not in captured.err + captured.out


def test_ansi_codes_are_stripped(log_stream: io.StringIO) -> None:
    coloured = "Uvicorn running on \x1b[1mhttp://127.0.0.1:8000\x1b[0m (Press CTRL+C to quit)"
    logging.getLogger("uvicorn.error").info("\x1b[32m%s\x1b[0m", "started", extra={"color_message": coloured})
    structlog.get_logger("test").info("api.\x1b[33mready\x1b[0m", url="\x1b[4mhttp://x\x1b[0m")
    raw = log_stream.getvalue()
    assert "\x1b" not in raw and "\\u001b" not in raw
    first, second = json_lines(log_stream)
    assert first["event"] == "started" and "color_message" not in first
    assert second["event"] == "api.ready" and second["url"] == "http://x"


def test_renderer_never_raises(log_stream: io.StringIO, capfd: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("test.logs")
    log.info("bad repr", extra={"thing": _Unprintable()})
    log.info("tuple keys", extra={"mapping": {(1, 2): "x"}})
    # Bypass pytest's own capture handler, which would raise on this one.
    bad_args = logging.LogRecord("test.logs", logging.INFO, __file__, 0, "bad args %d", ("x",), None)
    log_handler().handle(bad_args)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("with traceback")
    lines = json_lines(log_stream)
    assert [line["event"] for line in lines[:2]] == ["bad repr", "tuple keys"]
    assert lines[0]["thing"] == "<unrepresentable _Unprintable>"
    assert lines[1]["mapping"] == "{(1, 2): 'x'}"
    assert lines[2]["event"] == "bad args %d" and "log_error" in lines[2]
    assert lines[3]["level"] == "error" and "ValueError: boom" in lines[3]["exception"]
    assert "--- Logging error ---" not in capfd.readouterr().err


def test_task_failure_passes_when_only_errors_are_logged(log_stream: io.StringIO) -> None:
    configure("json", "ERROR", stream=log_stream)
    sdk = logging.getLogger("temporalio.worker._workflow_instance")
    sdk.warning("some other SDK warning")
    sdk.warning(
        "Failed activation on workflow Ticket with ID ticket-T-1 and run ID r-1",
        extra={"__temporal_error_identifier": "WorkflowTaskFailure"},
    )
    (line,) = json_lines(log_stream)
    assert line["event"] == TASK_FAILED_EVENT and line["level"] == "error"
    assert (line["ticket_id"], line["workflow_id"], line["run_id"], line["workflow_type"]) == (
        "T-1",
        "ticket-T-1",
        "r-1",
        "Ticket",
    )


def test_console_exceptions_are_short(log_stream: io.StringIO) -> None:
    configure("console", stream=log_stream)
    secret_local = "should-not-be-printed"
    try:
        raise ValueError(f"boom {len(secret_local)}")
    except ValueError:
        logging.getLogger("test.logs").exception("console failure")
    text = log_stream.getvalue()
    assert "console failure" in text and "ValueError: boom 21" in text
    assert "should-not-be-printed" not in text  # no local variables


def test_auto_format_is_console_on_a_terminal_and_json_otherwise() -> None:
    import os
    import pty

    from workers.logs import resolve_format

    assert resolve_format("auto", io.StringIO()) == "json"
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as terminal:
            assert resolve_format("auto", terminal) == "console"
            assert resolve_format("json", terminal) == "json"
    finally:
        os.close(leader)
        os.close(follower)


def test_forwarded_core_lines_have_their_fields_as_fields(log_stream: io.StringIO) -> None:
    from workers.logs import core_logging

    assert core_logging().forwarding is not None  # the core's own lines come through this renderer
    core = SimpleNamespace(target="temporalio_sdk_core::worker", fields={"run_id": "r-1", "failure": {"x": 1}})
    logging.getLogger(CORE_LOGGER).warning("Failing workflow task", extra={"temporal_log": core})
    (line,) = json_lines(log_stream)
    assert line["event"] == "Failing workflow task" and line["level"] == "warning"
    assert line["target"] == "temporalio_sdk_core::worker" and line["run_id"] == "r-1"
    assert line["failure"] == "{'x': 1}" and "temporal_log" not in line
