"""Build the Temporal worker for ticket workflows and their activities."""

from __future__ import annotations

from datetime import timedelta

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from activities.review_activities import ReviewActivities
from activities.store_activities import StoreActivities
from activities.ticket_activities import TicketActivities
from config.settings import Settings
from workers.run_names import RunNames
from workers.sandbox import workflow_runner
from workflows.digest import FloodControl
from workflows.review_spike import ReviewSpikeWatch
from workflows.ticket import TicketEscalation


def build_worker(client: Client, settings: Settings, http: httpx.AsyncClient, task_queue: str | None = None) -> Worker:
    activities = TicketActivities(settings, http)
    activities.prime()
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[TicketEscalation, FloodControl, ReviewSpikeWatch],
        activities=[*activities.all(), *StoreActivities(settings).all(), *ReviewActivities(settings, http).all()],  # type: ignore[list-item]
        max_concurrent_activities=100,
        workflow_runner=workflow_runner(settings.workflow_sandbox),
        interceptors=[RunNames()],  # the core's log lines name the ticket (workers/run_names.py)
        # SIGTERM: stop polling, let running activities finish (then cancel them; Temporal retries them elsewhere)
        graceful_shutdown_timeout=timedelta(seconds=settings.graceful_shutdown_seconds),
        # The server checks payload sizes, not the worker. An update the ticket refuses carries its
        # request back in the refusal: with the worker's own check, a 3 MB update sent straight to
        # Temporal failed the ticket's task on every retry (no query or update answered for
        # minutes); the server refuses it at once, and the ticket answers on. Everything the ticket
        # writes itself is bounded far below the server's limit (docs/operations.md).
        disable_payload_error_limit=True,
    )


def http_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=settings.http_timeout_seconds, follow_redirects=False)
