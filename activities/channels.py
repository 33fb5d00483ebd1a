"""Channels: how a notice reaches people. Email over SMTP, Slack incoming webhooks (Block Kit),
Microsoft Teams workflow webhooks (Adaptive Card), and the signed platform webhook.

A notice names its endpoint only. `resolve_endpoint` finds where it is and its credentials in the
settings (`ESCALATIONS_ENDPOINTS`), here inside the activity, so no URL or secret is ever in a
workflow history or an activity input. Payload builders are pure (used by `notify preview` too).

Idempotency: the notice's key is its identity on every channel: the `webhook-id` header, the
email `Message-ID` (derived from the key, the same on every retry), and for chat the Slack
header block's `block_id` / the Teams card's `id`, plus an `idempotency-key` header.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from config.policy import Policy
from config.settings import EndpointSettings, Settings
from config.urls import EndpointUrlError, check_endpoint_url

SLACK_HEADER_MAX = 150
SLACK_TEXT_MAX = 3000
SLACK_FIELD_MAX = 2000
SLACK_BLOCK_ID_MAX = 255


class EndpointMissing(Exception):
    """The endpoint is not configured in settings: the notice waits (retried) until it is."""


@dataclass(frozen=True)
class Resolved:
    name: str
    url: str | None
    config: EndpointSettings | None


def resolve_endpoint(
    name: str, channel: str, settings: Settings, policy: Policy | None, legacy_url: str | None
) -> Resolved:
    """`_where`, checked against `ESCALATIONS_ALLOWED_ENDPOINT_HOSTS` (config/urls.py): a URL
    from anywhere (an old notice's carried URL included) is used only if it is http(s) to an
    allowed host; otherwise the notice waits like one whose endpoint is missing."""
    resolved = _where(name, channel, settings, policy, legacy_url)
    target = resolved.url or (f"http://{resolved.config.host}/" if resolved.config and resolved.config.host else None)
    if target is not None:
        try:
            check_endpoint_url(target, settings.endpoint_hosts)
        except EndpointUrlError as err:
            raise EndpointMissing(f"endpoint {name!r} refused: {err}") from None
    return resolved


def _where(name: str, channel: str, settings: Settings, policy: Policy | None, legacy_url: str | None) -> Resolved:
    """Where endpoint `name` is: settings first (`ESCALATIONS_ENDPOINTS`), then for webhooks the
    `WEBHOOK_URL` override (endpoint `settings`), a URL carried by a notice written before the
    channels change, or the plain URL in the worker's policy file."""
    config = settings.endpoints.get(name)
    if config is not None:
        if channel == "email":
            if not config.host:
                raise EndpointMissing(f"email endpoint {name!r} has no SMTP host in ESCALATIONS_ENDPOINTS")
            return Resolved(name, None, config)
        if config.url is None:
            raise EndpointMissing(f"endpoint {name!r} has no url in ESCALATIONS_ENDPOINTS")
        return Resolved(name, config.url.get_secret_value(), config)
    if channel == "webhook":
        if name == "settings" and settings.webhook_url:
            return Resolved(name, settings.webhook_url, None)
        if legacy_url:
            return Resolved(name, legacy_url, None)
        if policy is not None:
            own = next((e for e in policy.notifications.endpoints if e.name == name and e.url), None)
            if own is not None and own.url:
                return Resolved(name, own.url, None)
    raise EndpointMissing(f"endpoint {name!r} is not configured: add it to ESCALATIONS_ENDPOINTS")


# ---------------------------------------------------------------------- email
def _domain(sender: str) -> str:
    domain = sender.rpartition("@")[2].strip(" >") or "localhost"
    return re.sub(r"[^A-Za-z0-9.-]", "", domain) or "localhost"


def _id_part(value: str) -> str:
    """A Message-ID left part from any key: readable, bounded, unique (a hash of the whole key)."""
    clean = re.sub(r"[^A-Za-z0-9._-]", ".", value)[:80]
    return f"{clean}.{hashlib.sha256(value.encode()).hexdigest()[:16]}"


def message_id(key: str, sender: str) -> str:
    return f"<{_id_part(key)}@{_domain(sender)}>"


def thread_id(workflow_id: str, life: str, sender: str) -> str:
    """The root every notice of one ticket life refers to, so mail clients thread them together."""
    return f"<{_id_part(f'{workflow_id}.{life}')}@{_domain(sender)}>"


def life_of(event_id: str) -> str:
    """`msg_<workflow id>_<life>_<n>` -> `<life>` (stable for every notice of one ticket life)."""
    head = event_id.rsplit("_", 1)[0]
    return head.rsplit("_", 1)[-1]


def build_email(
    *,
    key: str,
    sender: str,
    to: str,
    parts: dict[str, str],
    ticket_id: str | None,
    workflow_id: str | None,
    life: str | None,
    occurred_at: Any,
) -> EmailMessage:
    # Lines up to SMTP's 998 characters: no folding of a subject (folded, it reads back with a
    # leading space in some clients).
    msg = EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998))
    msg["Message-ID"] = message_id(key, sender)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = parts["subject"]
    msg["Date"] = format_datetime(occurred_at)
    if workflow_id and life:
        root = thread_id(workflow_id, life, sender)
        msg["In-Reply-To"] = root
        msg["References"] = root
        msg["Thread-Topic"] = parts["subject"]
    if ticket_id:
        msg["X-Escalations-Ticket"] = ticket_id
    msg["X-Escalations-Notice"] = key
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(parts["text"])
    msg.add_alternative(parts["html"], subtype="html")
    return msg


# ---------------------------------------------------------------------- chat payloads
def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def facts(context: dict[str, Any]) -> list[tuple[str, str]]:
    """The fixed facts of a chat notice (whatever the templates say): ticket, tier, deadline, rule, reason."""
    if context.get("type") == "digest":
        return [("Notices", str(context["count"])), ("Window", f"{context['start']} to {context['end']}")]
    ticket = context["ticket_id"] + (f" ({context['subject']})" if context.get("subject") else "")
    return [
        ("Ticket", ticket),
        ("Tier", f"{context['tier']} ({context['department']}), {context['priority']}"),
        ("Deadline", context.get("deadline") or "none"),
        ("Rule", context.get("rule") or "manual"),
        ("Reason", context["reason"]),
    ]


def slack_payload(key: str, parts: dict[str, str], context: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message in Block Kit: header, text, fields, a link to the timeline."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "block_id": _cut(key, SLACK_BLOCK_ID_MAX),
            "text": {"type": "plain_text", "text": _cut(parts["title"], SLACK_HEADER_MAX), "emoji": True},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(parts["text"] or " ", SLACK_TEXT_MAX)}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": _cut(f"*{label}*\n{value}", SLACK_FIELD_MAX)}
                for label, value in facts(context)
            ][:10],
        },
    ]
    link = context.get("link")
    if link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Timeline"},
                        "url": _cut(link, 3000),
                        "action_id": "timeline",
                    }
                ],
            }
        )
    return {"text": _cut(parts["title"], SLACK_TEXT_MAX), "blocks": blocks}


def teams_payload(key: str, parts: dict[str, str], context: dict[str, Any]) -> dict[str, Any]:
    """A Teams workflow-webhook message: one Adaptive Card attachment."""
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "id": _cut(key, 255),
                "text": parts["title"],
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            },
            {"type": "TextBlock", "text": parts["text"] or " ", "wrap": True},
            {"type": "FactSet", "facts": [{"title": label, "value": value} for label, value in facts(context)]},
        ],
    }
    link = context.get("link")
    if link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Timeline", "url": link}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }
