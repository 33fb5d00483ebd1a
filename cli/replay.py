"""Replay verification: do the recorded decisions match what the current workflow code decides?

Temporal re-runs the workflow code against a saved event history; any command the code would
issue differently (a timer, an activity, a search-attribute change in another order) is a
non-determinism error, which is exactly a change that would break tickets already running.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, WorkflowReplayResult

from config.settings import Settings
from workflows.models import workflow_id_for
from workflows.ticket import TicketEscalation


def replayer() -> Replayer:
    return Replayer(workflows=[TicketEscalation], data_converter=pydantic_data_converter)


async def replay_history(history: WorkflowHistory) -> WorkflowReplayResult:
    return await replayer().replay_workflow(history, raise_on_replay_failure=False)


def load_history(path: Path) -> WorkflowHistory:
    """A saved history; the file is named by its workflow id (`ticket-<id>.json`, later runs of the
    same ticket `ticket-<id>__run2.json`, ...)."""
    return WorkflowHistory.from_json(path.stem.split("__")[0], path.read_text())


async def replay_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.history:
        history = load_history(Path(args.history))
    elif args.ticket_id:
        from workers.connection import connect

        client = await connect(settings)
        history = await client.get_workflow_handle(workflow_id_for(args.ticket_id)).fetch_history()
        if args.save:
            Path(args.save).write_text(history.to_json())  # noqa: ASYNC240 - one small file, once
    else:
        print("error: give a ticket id or --history FILE")
        return 2
    result = await replay_history(history)
    if result.replay_failure is None:
        print(
            f"ok: {len(history.events)} events of {history.workflow_id} replayed; "
            "the current code makes exactly the recorded decisions"
        )
        return 0
    print(f"MISMATCH: {history.workflow_id} does not replay on the current code: {result.replay_failure}")
    return 1
