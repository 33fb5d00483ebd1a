"""Every side effect of a ticket: reading the policy, webhooks, and calls to the helpdesk.

Thin adapters. Each is idempotent on a business key the workflow derives (the webhook-id for
notifications, the idempotency key for reassignment), so a retry after a timeout never
notifies twice at a receiver that drops duplicates. Errors are classified once, in
`activities/http_errors.py`: 4xx (but 408/429) is final, everything else is retried by Temporal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

import aiosmtplib
import httpx
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import channels
from activities.helpdesk_delivery import RateLimits, deliver_to_helpdesk, is_connector
from activities.http_errors import BENIGN, raise_for_status
from activities.metrics import record_try, result_of
from activities.policy_calendars import CalendarRecorder
from activities.policy_file import PolicyFile, count_invalid_policy, freeze, loaded_at
from activities.webhooks import sign_headers
from config import templates
from config.policy import Policy
from config.settings import Settings
from workflows.digest import flood_workflow_id
from workflows.messages import (
    AdmitInput,
    DeliverInput,
    DeliveryResult,
    DigestDeliverInput,
    DigestInput,
    FloodInput,
    LoadPolicyInput,
    PolicySnapshot,
    ReassignInput,
    ReassignResult,
)

log = structlog.get_logger("activities")


class TicketActivities:
    """Holds the worker's one shared HTTP client and settings; methods are the activities."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http
        self._policy_file = PolicyFile(settings)
        # Per holiday year: the policy object it was frozen from, and the snapshot. The policy file
        # hands out the same object until the file changes, so no fingerprint is computed per ticket.
        self._snapshots: dict[int, tuple[Policy, PolicySnapshot]] = {}
        self._calendars = CalendarRecorder(settings.store_database_url)
        self._helpdesk_limits = RateLimits()

    def _current_policy(self) -> Policy:
        return self._policy_file.current()

    def prime(self) -> None:
        """Read the policy file once at start, so a file broken later still leaves a good one to keep."""
        with contextlib.suppress(ApplicationError):
            self._current_policy()

    @activity.defn(name="load_policy")
    async def load_policy(self, request: LoadPolicyInput) -> PolicySnapshot:
        """The policy in force now, frozen into the ticket's history by this (local) activity's result.

        Snapshots are shared per policy file version and holiday year: nothing is parsed or hashed per ticket."""
        try:
            policy = self._current_policy()
        except ApplicationError:
            # No valid policy at all (the file was never valid under this worker): the new ticket
            # waits, retried without limit. Counted on every try, so the alert stays on meanwhile.
            count_invalid_policy()
            raise
        year = request.opened_at.year
        cached = self._snapshots.get(year)
        if cached is None or cached[0] is not policy:
            if len(self._snapshots) > 16:
                self._snapshots.clear()
            cached = self._snapshots[year] = (policy, freeze(policy, self._settings, year))
            self._calendars.record(cached[1], year)  # for the review: in the background, once
        if request.requested_at is None:
            return cached[1]
        at = loaded_at(request.requested_at, activity.info().scheduled_time, datetime.now(UTC))
        return cached[1].model_copy(update={"loaded_at": at})

    # ------------------------------------------------------------------ channels
    def _policy_or_none(self) -> Policy | None:
        try:
            return self._current_policy()
        except ApplicationError:
            return None

    def _resolve(self, request: DeliverInput | DigestInput) -> channels.Resolved:
        try:
            return channels.resolve_endpoint(
                request.endpoint.name, request.channel, self._settings, self._policy_or_none(), request.endpoint.url
            )
        except channels.EndpointMissing as missing:
            # Retried: configure the endpoint and the waiting notice goes out.
            raise ApplicationError(str(missing), type="EndpointMissing", category=BENIGN) from None

    def _link(self, ticket_id: str) -> str:
        return f"{self._settings.link_base}/tickets/{ticket_id}/timeline?format=md"

    async def _render(
        self, channel: str, event_type: str, context: dict[str, Any], frozen: dict[str, Any] | None = None
    ) -> dict[str, str]:
        """The ticket's frozen templates (`frozen`; none for a digest, or a ticket opened before they
        were frozen: the worker's current policy file), falling back to the built-ins when one fails
        on real data (logged), so the person is told anyway."""
        overrides: dict[str, Any]
        if frozen is not None:
            overrides = {channel: frozen}
        else:
            policy = self._policy_or_none()
            overrides = {str(k): v for k, v in policy.notifications.templates.items()} if policy else {}
        try:
            return await asyncio.to_thread(templates.render, overrides, channel, event_type, context)
        except templates.TemplateFailure as failure:
            if not any(overrides.values()):  # the built-ins themselves failed: nothing to fall back to
                raise ApplicationError(str(failure), type="TemplateFailed", non_retryable=True) from None
            log.error("template.failed", template=failure.name, line=failure.line, error=failure.message)
            return await asyncio.to_thread(templates.render, {}, channel, event_type, context)

    async def _send(
        self,
        *,
        key: str,
        channel: str,
        target: channels.Resolved,
        parts: dict[str, str],
        context: dict[str, Any],
        to: str | None,
        event: Any | None,
    ) -> int:
        """Send one rendered notice on its channel; the status (HTTP code, or 250 for SMTP)."""
        if channel == "email":
            assert target.config is not None
            if not to:
                raise ApplicationError("email notice without an address", type="BadRequest", non_retryable=True)
            cfg = target.config
            message = channels.build_email(
                key=key,
                sender=cfg.sender,
                to=to,
                parts=parts,
                ticket_id=event.ticket_id if event else None,
                workflow_id=event.workflow_id if event else None,
                life=channels.life_of(event.id) if event else None,
                occurred_at=event.occurred_at if event else datetime.now(UTC),
            )
            try:
                await aiosmtplib.send(
                    message.as_bytes(),  # flattened by our policy: aiosmtplib's would fold the subject
                    sender=cfg.sender,
                    recipients=[to],
                    hostname=cfg.host,
                    port=cfg.smtp_port,
                    username=cfg.username,
                    password=cfg.password.get_secret_value() if cfg.password else None,
                    use_tls=cfg.security == "tls",
                    start_tls=cfg.security == "starttls",
                    timeout=cfg.timeout_seconds,
                )
            except aiosmtplib.SMTPResponseException as exc:
                final = 500 <= exc.code < 600
                raise ApplicationError(
                    f"endpoint {target.name}: SMTP server answered {exc.code}",
                    type="DeliveryRejected" if final else "DeliveryFailed",
                    non_retryable=final,
                    category=BENIGN,
                ) from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                raise ApplicationError(
                    f"endpoint {target.name} unreachable: {type(exc).__name__}", type="DeliveryFailed", category=BENIGN
                ) from None
            return 250
        payload = (channels.slack_payload if channel == "slack" else channels.teams_payload)(key, parts, context)
        assert target.url is not None
        try:
            response = await self._http.post(target.url, json=payload, headers={"idempotency-key": key})
        except httpx.HTTPError as exc:
            raise ApplicationError(
                f"endpoint {target.name} unreachable: {type(exc).__name__}", type="DeliveryFailed", category=BENIGN
            ) from None
        raise_for_status(response, f"endpoint {target.name}")
        return response.status_code

    async def _hand_to_flood_control(self, request: DeliverInput) -> str:
        """Flood control: hand the notice to its recipient's flood-control workflow (started if
        none runs) with signal-with-start; it sends the notice at once or in its window's digest.
        A retry hands the same key again, which it recognises."""
        flood = request.flood
        assert flood is not None
        workflow_id = flood_workflow_id(flood.key)
        control = FloodInput(
            flood_key=flood.key,
            channel=request.channel,
            endpoint=request.endpoint.model_copy(update={"url": None}),
            recipient=request.recipient,
            limit=flood.limit,
            window=flood.window,
        )
        notice = request.model_copy(update={"flood": None})
        await activity.client().start_workflow(
            "FloodControl",
            control,
            id=workflow_id,
            task_queue=activity.info().task_queue,
            start_signal="admit",
            start_signal_args=[AdmitInput(key=request.key(), notice=notice, flood=flood)],
            static_summary=f"flood control for {flood.key}: at most {flood.limit} per {flood.window}",
        )
        return workflow_id

    async def _deliver(self, request: DeliverInput) -> DeliveryResult:
        info = activity.info()
        event = request.event
        bound = log.bind(
            ticket_id=event.ticket_id,
            workflow_id=event.workflow_id,
            webhook_id=event.id,
            event_type=event.type,
            endpoint=request.endpoint.name,
            channel=request.channel,
            attempt=info.attempt,
        )
        if request.channel != "webhook":
            if request.flood is not None:
                control = await self._hand_to_flood_control(request)
                bound.info("notice.handed_to_flood_control", flood_control=control)
                return DeliveryResult(
                    webhook_id=event.id,
                    endpoint=request.endpoint.name,
                    status_code=0,
                    attempt=info.attempt,
                    digest=control,
                )
            target = self._resolve(request)
            recipient = request.recipient.model_dump() if request.recipient else None
            context = templates.event_context(event.model_dump(mode="json"), self._link(event.ticket_id), recipient)
            parts = await self._render(request.channel, event.type, context, request.templates)
            to = request.recipient.email if request.recipient else None
            started = time.monotonic()
            try:
                status = await self._send(
                    key=request.key(),
                    channel=request.channel,
                    target=target,
                    parts=parts,
                    context=context,
                    to=to,
                    event=event,
                )
            except ApplicationError as err:
                record_try(request.endpoint.name, "rejected" if err.non_retryable else "failed", started)
                raise
            record_try(request.endpoint.name, result_of(status), started)
            bound.info("notice.delivered", status_code=status)
            return DeliveryResult(
                webhook_id=event.id, endpoint=request.endpoint.name, status_code=status, attempt=info.attempt
            )
        policy = self._policy_or_none()
        configured = self._settings.endpoints.get(request.endpoint.name)
        if is_connector(request.endpoint.name, policy, configured):  # its API, not a webhook
            assert policy is not None
            status, detail = await deliver_to_helpdesk(
                event, request.endpoint.name, request.key(), policy, configured, self._http, self._helpdesk_limits
            )
            bound.info("notice.delivered", status_code=status, detail=detail[:300])
            return DeliveryResult(
                webhook_id=event.id, endpoint=request.endpoint.name, status_code=status, attempt=info.attempt
            )
        target = self._resolve(request)
        assert target.url is not None
        secret = target.config.secret if target.config and target.config.secret else self._settings.webhook_secret
        body = event.model_dump_json()
        headers = sign_headers(secret.get_secret_value(), event.id, body)
        started = time.monotonic()
        try:
            response = await self._http.post(target.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            record_try(request.endpoint.name, "unreachable", started)
            bound.warning("webhook.transport_error", error=type(exc).__name__)
            raise ApplicationError(
                f"endpoint {request.endpoint.name} unreachable: {type(exc).__name__}",
                type="DeliveryFailed",
                category=BENIGN,
            ) from None
        record_try(request.endpoint.name, result_of(response.status_code), started)
        bound.info(
            "webhook.delivered" if response.status_code < 400 else "webhook.refused", status_code=response.status_code
        )
        raise_for_status(response, f"endpoint {request.endpoint.name}")
        return DeliveryResult(
            webhook_id=event.id,
            endpoint=request.endpoint.name,
            status_code=response.status_code,
            attempt=info.attempt,
        )

    @activity.defn(name="send_digest")
    async def send_digest(self, request: DigestDeliverInput) -> DeliveryResult:
        """One digest: every notice of the window to one recipient, listed with its event."""
        window = request.digest
        recipient = window.recipient.model_dump() if window.recipient else None
        entries = []
        for entry in request.entries:
            event = entry.event.model_dump(mode="json")
            entries.append(templates.event_context(event, self._link(entry.event.ticket_id)) | {"sent": entry.sent})
        context = templates.digest_context(
            entries,
            start=window.start,
            end=window.end,
            limit=window.limit,
            more=request.more,
            endpoint=window.endpoint.name,
            recipient=recipient,
        )
        context["link"] = None
        target = self._resolve(window)
        parts = await self._render(window.channel, "digest", context)
        to = window.recipient.email if window.recipient else None
        status = await self._send(
            key=window.digest_id, channel=window.channel, target=target, parts=parts, context=context, to=to, event=None
        )
        log.info("digest.delivered", digest=window.digest_id, entries=len(request.entries) + request.more)
        attempt = activity.info().attempt
        return DeliveryResult(
            webhook_id=window.digest_id, endpoint=window.endpoint.name, status_code=status, attempt=attempt
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
        started = time.monotonic()
        try:
            response = await self._http.put(url, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            record_try("helpdesk", "unreachable", started)
            raise ApplicationError(
                f"helpdesk unreachable: {type(exc).__name__}", type="DeliveryFailed", category=BENIGN
            ) from None
        record_try("helpdesk", result_of(response.status_code), started)
        raise_for_status(response, "helpdesk")
        bound.info("helpdesk.reassigned", queue=request.queue, agent=request.agent)
        return ReassignResult(outcome="applied", detail=f"HTTP {response.status_code}")

    def all(self) -> list[object]:
        return [self.load_policy, self.notify, self.cc_department_heads, self.reassign, self.send_digest]
