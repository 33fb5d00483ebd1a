"""Replay verification: do the recorded decisions match what the current workflow code decides?

Temporal re-runs the workflow code against a saved event history; any command the code would
issue differently (a timer, an activity, a search-attribute change in another order) is a
non-determinism error, which is exactly a change that would break tickets already running.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer, WorkflowReplayResult

from workers.sandbox import workflow_runner
from workflows.models import workflow_id_for
from workflows.ticket import TicketEscalation


def replayer(converter: DataConverter | None = None) -> Replayer:
    """`converter`: the one of `workers.codec.data_converter` (it decrypts; plain payloads pass through)."""
    from workers.codec import data_converter

    return Replayer(
        workflows=[TicketEscalation], data_converter=converter or data_converter(), workflow_runner=workflow_runner()
    )


async def replay_history(history: WorkflowHistory, converter: DataConverter | None = None) -> WorkflowReplayResult:
    return await replayer(converter).replay_workflow(history, raise_on_replay_failure=False)


def load_history(path: Path) -> WorkflowHistory:
    """A saved history; the file is named by its workflow id (`ticket-<id>.json`, later runs of the
    same ticket `ticket-<id>__run2.json`, ...)."""
    return WorkflowHistory.from_json(path.stem.split("__")[0], path.read_text())


async def fetch_history(client: Client, ticket_id: str) -> WorkflowHistory:
    return await client.get_workflow_handle(workflow_id_for(ticket_id)).fetch_history()
