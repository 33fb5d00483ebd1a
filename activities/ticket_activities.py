"""Every side effect of a ticket: reading the policy, webhooks, and calls to the helpdesk.

Thin adapters. Each is idempotent on a business key the workflow derives (the webhook-id for
notifications, the idempotency key for reassignment), so a retry after a timeout never
notifies twice at a receiver that drops duplicates. Errors are classified once, in
`_raise_for_status`: 4xx (but 408/429) is final, everything else is retried by Temporal.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.models import (
    DeliverInput,
    DeliveryResult,
    LoadPolicyInput,
    PolicySnapshot,
    ReassignInput,
    ReassignResult,
)
from activities.webhooks import sign_headers
from config.policy import Endpoint, Policy, PolicyError, load_policy_file, resolve_holidays
from config.settings import Settings

log = structlog.get_logger("activities")
# Expected failures (a receiver down, a 4xx): the workflow retries and shows them on the ticket;
# benign keeps the SDK from logging a traceback for each try.
BENIGN = ApplicationErrorCategory.BENIGN


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("retry-after", "")
    return timedelta(seconds=int(value)) if value.isdigit() else None


def _raise_for_status(response: httpx.Response, what: str) -> None:
    code = response.status_code
    if code < 400:
        return
    message = f"{what} answered HTTP {code}"
    if code == 429:
        raise ApplicationError(message, type="RateLimited", next_retry_delay=_retry_after(response), category=BENIGN)
    if 400 <= code < 500 and code != 408:
        raise ApplicationError(message, type="DeliveryRejected", non_retryable=True, category=BENIGN)
    raise ApplicationError(message, type="DeliveryFailed", category=BENIGN)


def _count_invalid_policy() -> None:
    """The SDK's metric meter when called inside an activity; a no-op elsewhere (start-up)."""
    with contextlib.suppress(RuntimeError):
        activity.metric_meter().create_counter(
            "escalations_policy_invalid", "policy file changes that failed to load (last good policy kept)"
        ).add(1)


class TicketActivities:
    """Holds the worker's one shared HTTP client and settings; methods are the activities."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http
        self._file_key: tuple[str, int, int] | None = None
        self._good: Policy | None = None
        self._snapshots: dict[tuple[str, int], PolicySnapshot] = {}

    def prime(self) -> None:
        """Read the policy file once at start, so a file broken later still leaves a good one to keep."""
        with contextlib.suppress(ApplicationError):
            self._current_policy()

    def _current_policy(self) -> Policy:
        """The policy file as it is now, or the last good one if it has turned invalid.

        Re-read only when the file changes (path, modification time, size). A file that fails to
        load (half-written, invalid) never fails a ticket: the last good policy stays in force,
        and the failure is logged and counted (`escalations_policy_invalid`) once per change.
        """
        path = self._settings.policy_path
        try:
            stat = path.stat()
            key = (str(path), stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = (str(path), 0, 0)
        if key != self._file_key:
            self._file_key = key
            try:
                policy = load_policy_file(path)
                if self._good is None or policy.fingerprint() != self._good.fingerprint():
                    log.info("policy.loaded", path=str(path), version=policy.version_label(path))
                self._good = policy
            except PolicyError as err:
                _count_invalid_policy()
                log.error(
                    "policy.invalid",
                    path=str(path),
                    problems=err.problems,
                    kept=self._good.version_label(path) if self._good else None,
                )
        if self._good is None:
            # Retried by Temporal without limit: the ticket waits for a valid file, it does not fail.
            raise ApplicationError(f"no valid policy at {path} yet; fix the file", type="PolicyInvalid")
        return self._good

    @activity.defn(name="load_policy")
    async def load_policy(self, request: LoadPolicyInput) -> PolicySnapshot:
        """The policy in force now, frozen into the ticket's history by this (local) activity's result.

        Snapshots are shared per policy content and holiday year, so YAML is not parsed per ticket."""
        policy = self._current_policy()
        cache_key = (policy.fingerprint(), request.opened_at.year)
        snapshot = self._snapshots.get(cache_key)
        if snapshot is None:
            if len(self._snapshots) > 16:
                self._snapshots.clear()
            snapshot = self._snapshots[cache_key] = self._freeze(policy, request.opened_at.year)
        return snapshot

    def _freeze(self, policy: Policy, year: int) -> PolicySnapshot:
        version = policy.version_label(self._settings.policy_path)  # of the file, as `policy check` prints it
        policy = resolve_holidays(policy, range(year - 1, year + 3))
        if self._settings.webhook_url:
            endpoint = Endpoint(name="settings", url=self._settings.webhook_url)
            policy = policy.model_copy(
                update={"notifications": policy.notifications.model_copy(update={"endpoints": [endpoint]})}
            )
        fingerprint = policy.fingerprint()
        return PolicySnapshot(
            version=version,
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
                f"endpoint {request.endpoint.name} unreachable: {type(exc).__name__}",
                type="DeliveryFailed",
                category=BENIGN,
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
            raise ApplicationError(
                f"helpdesk unreachable: {type(exc).__name__}", type="DeliveryFailed", category=BENIGN
            ) from None
        _raise_for_status(response, "helpdesk")
        bound.info("helpdesk.reassigned", queue=request.queue, agent=request.agent)
        return ReassignResult(outcome="applied", detail=f"HTTP {response.status_code}")

    def all(self) -> list[object]:
        return [self.load_policy, self.notify, self.cc_department_heads, self.reassign]
