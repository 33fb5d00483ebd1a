"""A notice to a helpdesk connector endpoint: one of our events carried out through its API.

An endpoint named in the policy's `helpdesks` section is a connector, not a signed webhook. The
notice is the same outbox entry as any other (key `<event id>@<endpoint>`, unique per ticket life
and event, retried within the outbox's budget, shown as undelivered while it fails); here it
becomes the helpdesk's calls. A 429 waits its `Retry-After`; `rate_per_minute` in the endpoint's
settings caps the notices to one account from this worker (a token bucket shared by its
activities; a notice makes one to three calls), and a notice over the cap is tried again when a
token is due, not dropped.

Notices retried after an outage end in any order, so one delivered more than 10 s after its event
brings the helpdesk to the ticket's state *now* (its `status` query: tier, department, queue,
priority), not to the state of its own moment: the group there is the current queue whichever
escalation's call goes last. A step delivered after the resolution, a resolution after a
reopening, and a page after the resolution are skipped.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.service import RPCError, RPCStatusCode

from activities.helpdesks import CONNECTORS
from activities.helpdesks.base import HelpdeskError
from activities.metrics import record_try
from config.helpdesk_schema import HelpdeskMapping
from config.policy import Policy
from config.settings import EndpointSettings
from workflows.messages import OutboundEvent
from workflows.models import TicketStatus

log = structlog.get_logger("helpdesk")
BENIGN = ApplicationErrorCategory.BENIGN
WAIT_INLINE_SECONDS = 3.0  # a token due sooner is waited for here; later, the notice is retried then
FRESH = timedelta(seconds=10)  # younger notices are delivered as they are: no status query
CALL_SECONDS = 3.0  # each call there waits at most this (or less, by the endpoint's timeout): a try has 15 s


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimits:
    """Per endpoint (one helpdesk account): at most `rate_per_minute` calls a minute from this worker."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = asyncio.Lock()

    async def take(self, name: str, per_minute: int | None) -> float:
        """0 once a token is taken (perhaps after a short wait), else the seconds until one is due."""
        if per_minute is None:
            return 0.0
        rate = per_minute / 60.0
        while True:
            async with self._lock:
                now = time.monotonic()
                bucket = self._buckets.setdefault(name, _Bucket(float(per_minute), now))
                bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.at) * rate)
                bucket.at = now
                if bucket.tokens >= 1:
                    bucket.tokens -= 1
                    return 0.0
                due = (1 - bucket.tokens) / rate
            if due > WAIT_INLINE_SECONDS:
                return due
            await asyncio.sleep(due)


def _scheduled_at() -> datetime:
    """When the server scheduled this try, in the workflow's time (a test server's skipped time too)."""
    try:
        return activity.info().current_attempt_scheduled_time
    except RuntimeError:  # outside an activity
        return datetime.now(UTC)


async def current_status(workflow_id: str) -> TicketStatus | None:
    """The ticket's status now, or None when it cannot say (then the event's own values are used)."""
    try:
        handle = activity.client().get_workflow_handle(workflow_id)
    except RuntimeError:  # no client (an activity run outside a worker)
        return None
    for attempt in range(5):
        try:
            status: TicketStatus = await handle.query(
                "status", result_type=TicketStatus, rpc_timeout=timedelta(seconds=5)
            )
            return status
        except RPCError as err:
            if err.status != RPCStatusCode.RESOURCE_EXHAUSTED:  # busy with a task: ask again shortly
                return None
            await asyncio.sleep(0.2 * (attempt + 1))
        except Exception:  # a query failure of any kind: fall back, never fail the notice for it
            return None
    return None


def _as_now(event: OutboundEvent, status: TicketStatus | None, mapping: HelpdeskMapping) -> OutboundEvent | str:
    """The event with the ticket's present tier, department and priority; a reason when it is stale."""
    if status is None:
        return event
    resolved = status.state == "resolved"
    if event.type == "ticket.resolved" and not resolved:
        return "the ticket was reopened since: its resolution is not written there"
    if event.type != "ticket.resolved" and resolved:  # an escalation retried after the resolution
        return (
            "the ticket is resolved now: nobody is paged"
            if mapping.kind == "pagerduty"
            else ("the ticket is resolved now: its earlier step is not written there")
        )
    return event.model_copy(
        update={"tier": status.tier, "department": status.department, "priority": status.priority.value}
    )


def _with_paging_context(event: OutboundEvent, policy: Policy, mapping: HelpdeskMapping) -> OutboundEvent:
    """PagerDuty pages for the top tier, and for an approval that timed out whatever the tier."""
    if mapping.kind != "pagerduty":
        return event
    top = event.tier if event.rule == "approvals.timeout" else max(policy.tier_levels())
    return event.model_copy(update={"data": {**event.data, "top_tier": top}})


def is_connector(name: str, policy: Policy | None, credentials: EndpointSettings | None) -> bool:
    """Do notices to endpoint `name` go to a helpdesk's API (it has an entry in the policy's
    `helpdesks`)? An endpoint with an API token and no entry is refused, retried until the policy
    names it: never a signed POST to the helpdesk's home page."""
    if policy is not None and name in policy.helpdesks:
        return True
    if credentials is not None and credentials.token is not None:
        raise ApplicationError(
            f"endpoint {name} is a helpdesk connector with no helpdesks entry in the policy",
            type="EndpointMissing",
            category=BENIGN,
        )
    return False


async def deliver_to_helpdesk(
    event: OutboundEvent,
    name: str,
    key: str,
    policy: Policy,
    credentials: EndpointSettings | None,
    http: httpx.AsyncClient,
    limits: RateLimits,
) -> tuple[int, str]:
    """(status, what was done) for the `DeliveryResult`; raises the `ApplicationError` that says how to retry."""
    mapping = policy.helpdesks[name]
    bound = log.bind(ticket_id=event.ticket_id, event_type=event.type, endpoint=name, helpdesk=mapping.kind)
    if credentials is None:  # retried: configure the endpoint and the waiting notice goes out
        raise ApplicationError(
            f"helpdesk endpoint {name!r} has no credentials in ESCALATIONS_ENDPOINTS",
            type="EndpointMissing",
            category=BENIGN,
        )
    # A notice delivered as it happens is the present; one delivered late (a retry, a backlog) asks.
    late = _scheduled_at() - event.occurred_at > FRESH
    status = await current_status(event.workflow_id) if late else None
    present = _as_now(event, status, mapping)
    if isinstance(present, str):
        bound.info("helpdesk.skipped", reason=present)
        return 204, present
    event = present
    department = policy.departments.get(event.department)
    queue = (status.queue if status is not None else None) or (
        department.queues.get(event.tier) if department is not None else None
    )
    heads = [p.email for p in event.cc if p.email]
    wait = await limits.take(name, credentials.rate_per_minute)
    if wait:
        record_try(name, "429", time.monotonic())  # our own cap: counted as the helpdesk's would be
        raise ApplicationError(
            f"helpdesk {name}: over its {credentials.rate_per_minute} calls a minute",
            type="RateLimited",
            next_retry_delay=_seconds(wait),
            category=BENIGN,
        )
    started = time.monotonic()
    bounded = credentials.model_copy(update={"timeout_seconds": min(credentials.timeout_seconds, CALL_SECONDS)})
    try:
        applied = await CONNECTORS[mapping.kind].apply(
            _with_paging_context(event, policy, mapping), queue, heads, mapping, bounded, http, key
        )
    except (ApplicationError, asyncio.CancelledError):
        raise
    except HelpdeskError as err:
        outcome = "429" if err.status == 429 else "rejected" if err.permanent else "failed"
        record_try(name, outcome, started)
        bound.warning("helpdesk.refused" if err.permanent else "helpdesk.failed", status=err.status, error=str(err))
        if err.permanent:
            raise ApplicationError(str(err), type="DeliveryRejected", non_retryable=True, category=BENIGN) from None
        delay = _seconds(err.retry_after) if err.retry_after else None
        kind = "RateLimited" if err.status == 429 else "DeliveryFailed"
        raise ApplicationError(str(err), type=kind, next_retry_delay=delay, category=BENIGN) from None
    except Exception as err:  # a helpdesk answering what its documentation does not: retried, said plainly
        record_try(name, "failed", started)
        bound.warning("helpdesk.failed", error=type(err).__name__)
        raise ApplicationError(
            f"helpdesk {name}: unexpected answer ({type(err).__name__})", type="DeliveryFailed", category=BENIGN
        ) from None
    if applied.skipped:
        record_try(name, "skipped", started)
        bound.info("helpdesk.skipped", reason=applied.skipped)
        return 204, applied.skipped
    record_try(name, "2xx", started)
    bound.info("helpdesk.applied", calls=applied.calls)
    return 200, "; ".join(applied.calls)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=max(1.0, min(value, 3600.0)))
