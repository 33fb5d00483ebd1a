"""Start the spike watch (`ReviewSpikeWatch`) once per namespace; the worker calls this at start."""

from __future__ import annotations

from datetime import timedelta

import structlog
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from config.settings import Settings
from workflows.review_messages import SpikeWatchState
from workflows.review_spike import WATCH_ID

log = structlog.get_logger("review")


async def ensure_spike_watch(client: Client, settings: Settings, task_queue: str | None = None) -> bool:
    """Start the watch, or tell the running one this worker's interval (signal-with-start: a changed
    `review_spike_interval_minutes` applies from the watch's next wait). False when off or refused."""
    if not settings.review_spike_check:
        return False
    interval = timedelta(minutes=settings.review_spike_interval_minutes)
    try:
        handle = await client.start_workflow(
            "ReviewSpikeWatch",
            SpikeWatchState(interval=interval),
            id=WATCH_ID,
            task_queue=task_queue or settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal="set_interval",
            start_signal_args=[interval],
        )
    except RPCError as err:  # never stops the worker: tickets matter more than the spike check
        log.warning("review.spike_watch_not_started", error=err.message)
        return False
    log.info("review.spike_watch", workflow_id=WATCH_ID, run_id=handle.result_run_id, interval=interval)
    return True
