"""PagerDuty as a place to page someone: our worst moments of a ticket become one PagerDuty alert.

Why: the top of an escalation ladder is often a person on call, not a queue. Outbound only, through
the Events API v2 (`POST https://events.pagerduty.com/v2/enqueue`, the routing key is the 32-character
integration key of an "Events API v2" integration; `202 {"status": "success", ...}`); PagerDuty sends
nothing here, so `verify` and `read` refuse.

- Trigger: `ticket.escalated`, `sla.breached` and `approval.requested` (and the head's CC of an
  approval that timed out at the top tier, where there is nowhere to escalate to); when the event's data names the
  policy's top tier (`top_tier`), only events at that tier page. `ticket.resolved` resolves. Severity
  from the ticket's priority: urgent critical, high error, normal warning, low info.
- One alert per ticket life: `dedup_key` = `<workflow id>:<life>`, the life read from the event id
  (`msg_<workflow id>_<life>_<seq>`), else `<workflow id>:<ticket id>`. A retried trigger adds a log entry
  to the same open alert; a retried resolve of a resolved alert is dropped: retries are harmless.
- Errors: 400 (invalid event) and other 4xx are permanent; 429, 5xx and transport errors are retried.
  PagerDuty sends no Retry-After: its rate-limit page suggests retrying 30 seconds apart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import httpx

from activities.helpdesks.base import Applied, Check, HelpdeskError, Inbound, InboundRefused
from config.helpdesk_schema import HelpdeskMapping
from config.settings import EndpointSettings
from workflows.messages import OutboundEvent

DEFAULT_URL = "https://events.pagerduty.com"
PATH = "/v2/enqueue"
RATE_LIMIT_BACKOFF = 30.0  # seconds: "retrying 3 times with each request being 30 seconds apart"
TRIGGERS = ("ticket.escalated", "sla.breached", "approval.requested")
SEVERITY = {"urgent": "critical", "high": "error", "normal": "warning", "low": "info"}
KEY_LENGTH = 32
SUMMARY_MAX, DEDUP_MAX = 1024, 255


def dedup_key(event: OutboundEvent) -> str:
    """The same for every event of one ticket life (the life is in the event id, see workflows.notices)."""
    match = re.fullmatch(rf"msg_{re.escape(event.workflow_id)}_([^_]+)_\d+", event.id)
    key = f"{event.workflow_id}:{match.group(1) if match else event.ticket_id}"
    if len(key) > DEDUP_MAX:  # a 200-character ticket id: keep it unique, within PagerDuty's limit
        key = key[: DEDUP_MAX - 17] + "~" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return key


class PagerDuty:
    kind = "pagerduty"

    def verify(
        self, body: bytes, headers: Mapping[str, str], credentials: EndpointSettings, tolerance_seconds: int
    ) -> str:
        raise InboundRefused("PagerDuty sends no events here")

    def read(self, body: bytes, mapping: HelpdeskMapping, event_id: str) -> Inbound:
        raise InboundRefused("PagerDuty sends no events here")

    async def apply(
        self,
        event: OutboundEvent,
        queue: str | None,
        heads: list[str],
        mapping: HelpdeskMapping,
        credentials: EndpointSettings,
        client: httpx.AsyncClient,
        key: str,
    ) -> Applied:
        routing_key = credentials.token.get_secret_value() if credentials.token else ""
        if not routing_key:
            raise HelpdeskError("no routing key: set this endpoint's token", status=None, permanent=True)
        body: dict[str, Any] = {"routing_key": routing_key, "dedup_key": dedup_key(event)}
        if event.type == "ticket.resolved":
            body["event_action"] = "resolve"
        elif event.type in TRIGGERS or (event.type == "ticket.cc" and event.rule == "approvals.timeout"):
            top = event.data.get("top_tier")
            if isinstance(top, int) and not isinstance(top, bool) and event.tier < top:
                return Applied([], skipped=f"tier {event.tier} is below the top tier {top}: nobody is paged")
            body["event_action"] = "trigger"
            body["payload"] = _payload(event)
        else:
            return Applied([], skipped=f"{event.type} does not page anyone")
        url = (credentials.url.get_secret_value() if credentials.url else DEFAULT_URL).rstrip("/") + PATH
        try:
            response = await client.post(url, json=body, timeout=credentials.timeout_seconds)
        except httpx.TimeoutException:
            raise HelpdeskError(f"POST {PATH}: no answer in time", status=None, permanent=False) from None
        except httpx.HTTPError as e:
            text = f"POST {PATH}: {type(e).__name__}: {e}".replace(routing_key, "***")
            raise HelpdeskError(text[:300], status=None, permanent=False) from None
        status = response.status_code
        if status < 300:
            return Applied([f"POST {PATH} {status} {body['event_action']} {body['dedup_key']}"])
        message = f"POST {PATH} {status}: {_error_text(response)}".replace(routing_key, "***")
        if status == 429:
            raise HelpdeskError(message, status=429, permanent=False, retry_after=RATE_LIMIT_BACKOFF)
        raise HelpdeskError(message, status=status, permanent=status < 500 and status != 408)

    async def check(self, mapping: HelpdeskMapping, credentials: EndpointSettings, client: httpx.AsyncClient) -> Check:
        """Sends nothing: an Events API call would page someone. The key's shape is all that can be checked."""
        routing_key = credentials.token.get_secret_value() if credentials.token else ""
        if not routing_key:
            return Check(False, "no routing key: set this endpoint's token to the integration key")
        if len(routing_key) != KEY_LENGTH or not routing_key.isalnum():
            return Check(
                False, f"the routing key has {len(routing_key)} characters; PagerDuty's have 32 letters/digits"
            )
        url = credentials.url.get_secret_value() if credentials.url else DEFAULT_URL
        if not url.startswith(("https://", "http://")):
            return Check(False, "url must be http(s)://...; leave it unset for https://events.pagerduty.com")
        return Check(True, f"ok: routing key of 32 characters for {url.rstrip('/')}{PATH} (nothing sent)")

    def setup_text(self, mapping: HelpdeskMapping, webhook_url: str) -> str:
        return (
            "PagerDuty: Services > (the service to page) > Integrations > Add an integration > Events API v2.\n"
            "  Copy its Integration Key into this endpoint's `token` (ESCALATIONS_ENDPOINTS); leave `url` unset\n"
            "  (https://events.pagerduty.com). Nothing to set up in PagerDuty for events coming here: it sends none.\n"
        )


def _payload(event: OutboundEvent) -> dict[str, Any]:
    """PD-CEF: summary (at most 1,024 characters), source, severity, and the ticket in custom_details."""
    subject = f" {event.subject}:" if event.subject else ""
    summary = f"[{event.ticket_id}] {event.type}:{subject} {event.reason}"
    details = {"ticket_id": event.ticket_id, "tier": event.tier, "department": event.department}
    details |= {"priority": event.priority, "rule": event.rule, "reason": event.reason, "event_id": event.id}
    if event.deadline:
        details["deadline"] = event.deadline.isoformat()
    return {
        "summary": summary if len(summary) <= SUMMARY_MAX else summary[: SUMMARY_MAX - 1] + "…",
        "source": f"escalations:{event.department}",
        "severity": SEVERITY.get(event.priority, "warning"),
        "timestamp": event.occurred_at.isoformat(),
        "component": event.ticket_id,
        "group": event.department,
        "class": event.type,
        "custom_details": details,
    }


def _error_text(response: httpx.Response) -> str:
    """`{"status": "invalid event", "message": ..., "errors": [...]}` in one line, or the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        errors: list[Any] = body["errors"] if isinstance(body.get("errors"), list) else []
        text = "; ".join(str(p) for p in (body.get("status"), body.get("message"), *errors) if p)
    else:
        text = response.text or response.reason_phrase
    return " ".join(text.split())[:300]
