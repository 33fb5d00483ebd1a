"""The baseline: a bare Temporal workflow of the same shape as a ticket, no policy, no models."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import httpx

_HTTP: list[httpx.AsyncClient] = []  # one shared client per process, as the real worker has


@activity.defn(name="bare_notify")
async def bare_notify(url: str, body: str) -> None:
    if not _HTTP:
        _HTTP.append(httpx.AsyncClient(timeout=10))
    (await _HTTP[0].post(url, content=body, headers={"content-type": "application/json"})).raise_for_status()


@workflow.defn(name="BareTicket")
class BareTicket:
    """Open, wait for acknowledge (or a first-response deadline, then notify), wait for resolve."""

    def __init__(self) -> None:
        self.acknowledged = False
        self.resolved = False

    @workflow.run
    async def run(self, ticket_id: str, deadline: datetime, url: str) -> str:
        try:
            await workflow.wait_condition(
                lambda: self.acknowledged, timeout=max(deadline - workflow.now(), timedelta(milliseconds=1))
            )
        except TimeoutError:
            body = f'{{"type": "sla.breached", "ticket_id": "{ticket_id}", "deadline": "{deadline.isoformat()}"}}'
            await workflow.execute_activity(
                bare_notify,
                args=[url, body],
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=5),
            )
        await workflow.wait_condition(lambda: self.resolved)
        # Same shape as a ticket: the resolution is announced before the workflow completes.
        await workflow.execute_activity(
            bare_notify,
            args=[url, f'{{"type": "ticket.resolved", "ticket_id": "{ticket_id}"}}'],
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=5),
        )
        return "resolved"

    @workflow.update
    async def acknowledge(self) -> str:
        self.acknowledged = True
        return "acknowledged"

    @workflow.update
    async def resolve(self) -> str:
        self.resolved = True
        return "resolved"
