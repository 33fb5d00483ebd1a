"""Every side effect of a ticket: reading the policy, webhooks, and calls to the helpdesk.

Thin adapters. Each is idempotent on a business key the workflow derives (the webhook-id for
notifications, the idempotency key for reassignment), so a retry after a timeout never
notifies twice at a receiver that drops duplicates. Errors are classified once, in
`_raise_for_status`: 4xx (but 408/429) is final, everything else is retried by Temporal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.models import (
    DeliverInput,
    DeliveryResult,
    LoadPolicyInput,
    PolicySnapshot,
    ReassignInput,
    ReassignResult,
)
from activities.webhooks import sign_headers
from config.policy import Endpoint, load_policy_file, resolve_holidays
from config.settings import Settings

log = structlog.get_logger("activities")


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("retry-after", "")
    return timedelta(seconds=int(value)) if value.isdigit() else None


def _raise_for_status(response: httpx.Response, what: str) -> None:
    code = response.status_code
    if code < 400:
        return
    message = f"{what} answered HTTP {code}"
    if code == 429:
        raise ApplicationError(message, type="RateLimited", next_retry_delay=_retry_after(response))
    if 400 <= code < 500 and code != 408:
        raise ApplicationError(message, type="DeliveryRejected", non_retryable=True)
    raise ApplicationError(message, type="DeliveryFailed")


class TicketActivities:
    """Holds the worker's one shared HTTP client and settings; methods are the activities."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http
        self._policy_cache: tuple[tuple[str, int, int, int], PolicySnapshot] | None = None

    @activity.defn(name="load_policy")
    async def load_policy(self, request: LoadPolicyInput) -> PolicySnapshot:
        """Read and validate the policy file now; the result is frozen into the ticket's history.

        Parsed once per version of the file (path, modification time, size) and holiday year, so
        an edit is picked up by the next ticket without re-reading YAML for every ticket.
        """
        path = self._settings.policy_path
        stat = path.stat() if path.exists() else None
        key = (str(path), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0, request.opened_at.year)
        if self._policy_cache is not None and self._policy_cache[0] == key:
            return self._policy_cache[1]
        snapshot = self._read_policy(request)
        self._policy_cache = (key, snapshot)
        return snapshot

    def _read_policy(self, request: LoadPolicyInput) -> PolicySnapshot:
        policy = load_policy_file(self._settings.policy_path)
        year = request.opened_at.year
        policy = resolve_holidays(policy, range(year - 1, year + 3))
        if self._settings.webhook_url:
            endpoint = Endpoint(name="settings", url=self._settings.webhook_url)
            policy = policy.model_copy(
                update={"notifications": policy.notifications.model_copy(update={"endpoints": [endpoint]})}
            )
        fingerprint = policy.fingerprint()
        return PolicySnapshot(
            version=f"{policy.version}+{fingerprint}",
            fingerprint=fingerprint,
            source=self._settings.policy_path.name,
            document=policy.model_dump(mode="json"),
        )

    async def _deliver(self, request: DeliverInput) -> DeliveryResult:
        info = activity.info()
        event = request.event
        bound = log.bind(
            ticket_id=event.ticket_id,
            workflow_id=event.workflow_id,
            webhook_id=event.id,
            event_type=event.type,
            endpoint=request.endpoint.name,
            attempt=info.attempt,
        )
        body = event.model_dump_json()
        headers = sign_headers(self._settings.webhook_secret.get_secret_value(), event.id, body)
        try:
            response = await self._http.post(request.endpoint.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            bound.warning("webhook.transport_error", error=type(exc).__name__)
            raise ApplicationError(
                f"endpoint {request.endpoint.name} unreachable: {type(exc).__name__}", type="DeliveryFailed"
            ) from None
        bound.info(
            "webhook.delivered" if response.status_code < 400 else "webhook.refused", status_code=response.status_code
        )
        _raise_for_status(response, f"endpoint {request.endpoint.name}")
        return DeliveryResult(
            webhook_id=event.id,
            endpoint=request.endpoint.name,
            status_code=response.status_code,
            attempt=info.attempt,
        )

    @activity.defn(name="notify")
    async def notify(self, request: DeliverInput) -> DeliveryResult:
        """POST one signed event (warning, breach, escalation, ...) to one endpoint."""
        return await self._deliver(request)

    @activity.defn(name="cc_department_heads")
    async def cc_department_heads(self, request: DeliverInput) -> DeliveryResult:
        """POST a `ticket.cc` event whose `cc` lists the department heads to copy in."""
        if request.event.type != "ticket.cc" or not request.event.cc:
            raise ApplicationError(
                "cc_department_heads needs a ticket.cc event with a cc list", type="BadRequest", non_retryable=True
            )
        return await self._deliver(request)

    @activity.defn(name="reassign")
    async def reassign(self, request: ReassignInput) -> ReassignResult:
        """Move the ticket in the helpdesk (its HTTP API); skipped when no helpdesk is configured."""
        bound = log.bind(ticket_id=request.ticket_id, workflow_id=request.workflow_id)
        base = self._settings.helpdesk_url
        if not base:
            bound.info("helpdesk.skipped", reason="no helpdesk_url set", queue=request.queue)
            return ReassignResult(outcome="skipped", detail="no helpdesk_url configured")
        headers = {"idempotency-key": request.idempotency_key}
        if self._settings.helpdesk_token is not None:
            headers["authorization"] = f"Bearer {self._settings.helpdesk_token.get_secret_value()}"
        payload = {
            "queue": request.queue,
            "agent": request.agent,
            "reason": request.reason,
            "requested_at": datetime.now(UTC).isoformat(),
        }
        url = f"{base.rstrip('/')}/tickets/{request.ticket_id}/assignment"
        try:
            response = await self._http.put(url, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise ApplicationError(f"helpdesk unreachable: {type(exc).__name__}", type="DeliveryFailed") from None
        _raise_for_status(response, "helpdesk")
        bound.info("helpdesk.reassigned", queue=request.queue, agent=request.agent)
        return ReassignResult(outcome="applied", detail=f"HTTP {response.status_code}")

    def all(self) -> list[object]:
        return [self.load_policy, self.notify, self.cc_department_heads, self.reassign]
