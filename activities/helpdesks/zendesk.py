"""Zendesk as a helpdesk this product escalates for: its ticket events in, our escalations out.

Why: teams keep working in Zendesk. Its event webhooks (`zen:event-type:ticket.*`, signed with
`X-Zendesk-Webhook-Signature` = base64(HMAC-SHA256(secret, timestamp + body))) open tickets here and
become agent actions; our reassignments, escalations, CCs, breaches and resolutions go back as one
`PUT /api/v2/tickets/{id}` each (Basic auth `{email}/token:{token}`).

- `verify` checks authenticity only and returns the envelope's `id` ("" for a body that is not an
  envelope: `read` then names the field). An event by `own_user` (the API user we write as) is an
  echo, ignored; an event without `detail.actor_id` acts as `zendesk` (system).
- Idempotency: Zendesk honours `Idempotency-Key` only when creating tickets. An update is one PUT of
  absolute values (group, assignee, priority, status, CCs with `action: put`), so a retry sets them
  again; its private note may repeat if the first answer was lost, and ends with `[escalations:<key>]`
  to recognise it (no comments lookup first: twice the calls against the rate limit, for a rare case).
- Errors: 429, 5xx, 408, 409 and transport errors are retried (after `Retry-After` seconds if given);
  other 4xx are permanent. Messages carry Zendesk's error text, never the token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import ValidationError

from activities.helpdesks.base import Act, Applied, Check, HelpdeskError, Inbound, InboundInvalid, InboundRefused
from activities.helpdesks.common import retry_after
from config.helpdesk_schema import HelpdeskMapping
from config.settings import EndpointSettings
from workflows.messages import OutboundEvent
from workflows.models import ACTIONS, TicketRequest

SIGNATURE = "x-zendesk-webhook-signature"
TIMESTAMP = "x-zendesk-webhook-signature-timestamp"
EVENT_PREFIX = "zen:event-type:"
_TYPES = "created agent_assignment_changed group_assignment_changed priority_changed status_changed comment_added"
EVENT_TYPES = tuple(f"{EVENT_PREFIX}ticket.{t}" for t in _TYPES.split())
RATE_LIMIT_DEFAULT = 60.0  # seconds, for a 429 without Retry-After: Zendesk's limits are per minute
# Zendesk `via.channel` -> our channel, when the mapping does not name it; anything else is email.
_CHANNELS = {
    "web": "web web_form web_widget web_service api mobile mobile_sdk",
    "chat": "chat native_messaging messaging chat_transcript sms text_message",
    "phone": "voice phone phone_call_inbound phone_call_outbound voicemail",
    "social_public": "twitter facebook twitter_favorite facebook_post instagram",
    "social_private": "twitter_dm facebook_messenger whatsapp instagram_dm line wechat telegram viber",
}
CHANNELS = {theirs: ours for ours, names in _CHANNELS.items() for theirs in names.split()}
OUR_CHANNELS = {"email", *_CHANNELS}
PRIORITIES = ("low", "normal", "high", "urgent")
_SYSTEM = {"id": "zendesk", "role": "system"}  # the actor of a change that names none
TITLES = {"ticket.escalated": "Escalated", "ticket.reassigned": "Reassigned", "sla.breached": "SLA breached"}
TITLES |= {"ticket.cc": "Department heads copied in", "ticket.resolved": "Resolved"}


def _lower(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) and value.strip() else None


def _id(value: Any) -> str | None:
    """Zendesk ids come as numbers or as strings of digits (webhooks); None, "" and "0" are none."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    return text if text.isdigit() and text.strip("0") else None


def _envelope(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _obj(parent: dict[str, Any], name: str) -> dict[str, Any]:
    value = parent.get(name)
    return value if isinstance(value, dict) else {}


def _current(event: dict[str, Any], name: str, side: str = "current") -> Any:
    """`event.current` (or `.previous`): a value, or (some payloads) an object holding it under `name`."""
    value = event.get(side)
    return value.get(name) if isinstance(value, dict) else value


def _when(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError, TypeError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Zendesk:
    kind = "zendesk"

    def verify(
        self, body: bytes, headers: Mapping[str, str], credentials: EndpointSettings, tolerance_seconds: int
    ) -> str:
        lowered = {k.lower(): v for k, v in headers.items()}
        secret = credentials.secret.get_secret_value() if credentials.secret else ""
        if not secret:
            raise InboundRefused("no signing secret is configured for this Zendesk endpoint")
        signature, stamp = lowered.get(SIGNATURE, "").strip(), lowered.get(TIMESTAMP, "").strip()
        if not signature or not stamp:
            raise InboundRefused(f"missing X-Zendesk-Webhook-Signature{'' if not signature else '-Timestamp'} header")
        try:
            given, _ = base64.b64decode(signature, validate=True), body.decode("utf-8")
        except (binascii.Error, ValueError) as e:
            raise InboundRefused(
                f"the {'body is not UTF-8' if isinstance(e, UnicodeError) else 'signature is not base64'}"
            ) from None
        expected = hmac.new(secret.encode("utf-8"), stamp.encode("utf-8") + body, hashlib.sha256).digest()
        if not hmac.compare_digest(given, expected):
            raise InboundRefused("the signature does not match (wrong signing secret, or a changed body)")
        moment = _when(stamp)
        if moment is None:
            raise InboundRefused(f"the signature timestamp {stamp[:40]!r} is not ISO 8601")
        age = abs((datetime.now(UTC) - moment).total_seconds())
        if age > tolerance_seconds:
            raise InboundRefused(f"stale request: signed {age:.0f} s from now (tolerance {tolerance_seconds} s)")
        event_id = (_envelope(body) or {}).get("id")
        return event_id if isinstance(event_id, str) else ""

    def read(self, body: bytes, mapping: HelpdeskMapping, event_id: str) -> Inbound:
        envelope = _envelope(body)
        if envelope is None:
            raise InboundInvalid("body", "not a Zendesk event (a JSON object)")
        event_id = event_id or envelope.get("id") or ""
        if not isinstance(event_id, str) or not event_id:
            raise InboundInvalid("id", "missing: every Zendesk event has an id")
        kind = envelope.get("type")
        if not isinstance(kind, str):
            raise InboundInvalid("type", "missing")
        if kind not in EVENT_TYPES:
            return Inbound(event_id, ignored=f"{kind} is not an event this product uses")
        detail, event = envelope.get("detail"), envelope.get("event") or {}
        if not isinstance(detail, dict) or not isinstance(event, dict):
            raise InboundInvalid("event" if isinstance(detail, dict) else "detail", "missing or not an object")
        their_ticket = _id(detail.get("id"))
        if their_ticket is None:
            raise InboundInvalid("detail.id", "not a Zendesk ticket id")
        ticket_id = mapping.prefix + their_ticket
        their_actor = _id(detail.get("actor_id")) or _id(_obj(_obj(event, "comment"), "author").get("id"))
        if mapping.own_user and their_actor == mapping.own_user:
            return Inbound(event_id, ignored=f"our own change (actor {their_actor} is the connector's API user)")
        if kind.endswith(".created"):
            return Inbound(event_id, open=self._open(ticket_id, detail, envelope, mapping))
        if not kind.endswith(".comment_added") and "current" not in event:
            raise InboundInvalid("event.current", "missing: the changed value is not in the event")
        ours = {their: our for our, their in mapping.agents.items()}
        actor = {"id": ours.get(their_actor, their_actor), "role": "agent"} if their_actor else dict(_SYSTEM)
        step = self._action(kind.removeprefix(EVENT_PREFIX), event, actor, mapping)
        if isinstance(step, str):
            return Inbound(event_id, ignored=step)
        action, payload = step
        try:
            ACTIONS[action].model_validate(payload)
        except ValidationError as e:
            where = ".".join(str(p) for p in e.errors()[0]["loc"])
            raise InboundInvalid(f"event ({action}.{where})", e.errors()[0]["msg"]) from None
        return Inbound(event_id, actions=[Act(ticket_id, action, payload, f"{event_id}:0")])

    def _action(
        self, kind: str, event: dict[str, Any], actor: dict[str, Any], mapping: HelpdeskMapping
    ) -> tuple[str, dict[str, Any]] | str:
        """The action one change event means, or why it means none."""
        if kind == "ticket.agent_assignment_changed":
            agent = _id(_current(event, "assignee_id"))
            if agent is None:
                return "the ticket was unassigned in Zendesk: no agent to reassign to"
            ours = {their: our for our, their in mapping.agents.items()}
            return "reassign", {"actor": actor, "to_agent": ours.get(agent, agent), "reason": "assigned in Zendesk"}
        if kind == "ticket.group_assignment_changed":
            group = _id(_current(event, "group_id"))
            queue = {their: our for our, their in mapping.queues.items()}.get(group or "")
            if queue is None:
                return f"group {group} is not mapped to a queue (helpdesks queues)"
            return "reassign", {"actor": actor, "to_queue": queue, "reason": f"moved to group {group} in Zendesk"}
        if kind == "ticket.priority_changed":
            priority = self._priority(_current(event, "priority"), mapping)
            if priority is None:
                return f"priority {_current(event, 'priority')!r} has no equivalent here"
            return "change_priority", {"actor": actor, "priority": priority, "reason": "changed in Zendesk"}
        if kind == "ticket.status_changed":
            now, before = _lower(_current(event, "status")), _lower(_current(event, "status", "previous"))
            if now in {s.lower() for s in mapping.resolved_statuses}:
                return "resolve", {"actor": actor, "resolution": f"{now} in Zendesk"}
            if now in {s.lower() for s in mapping.pending_statuses}:
                return "pending_customer", {"actor": actor}
            if now == "open" and before in {s.lower() for s in mapping.pending_statuses}:
                return "customer_replied", {}
            return f"status {before} -> {now} means nothing here"
        comment = _obj(event, "comment")  # ticket.comment_added: an agent's public reply responds
        if comment.get("is_public") is not True:
            return "a private note, not a reply to the customer"
        if _obj(comment, "author").get("is_staff") is not True:
            return "a comment by the requester or another end user, not an agent's reply"
        return "acknowledge", {"actor": actor}

    def _priority(self, value: Any, mapping: HelpdeskMapping) -> str | None:
        theirs = _lower(value)
        if theirs is None:
            return None
        ours = {their.lower(): our for our, their in mapping.priorities.items()}
        return ours.get(theirs) or (theirs if theirs in PRIORITIES and theirs not in mapping.priorities else None)

    def _open(
        self, ticket_id: str, detail: dict[str, Any], envelope: dict[str, Any], mapping: HelpdeskMapping
    ) -> dict[str, Any]:
        requester = _id(detail.get("requester_id"))
        if requester is None:
            raise InboundInvalid("detail.requester_id", "missing: a ticket needs its customer")
        opened = _when(detail.get("created_at")) or _when(envelope.get("time"))
        if opened is None:
            raise InboundInvalid("detail.created_at", "missing or not ISO 8601")
        opened = min(opened, datetime.now(UTC))  # a requester's clock ahead of ours is not a future ticket
        tags = [t.lower() for t in detail.get("tags") or [] if isinstance(t, str)]
        description, subject = (d if isinstance(d := detail.get(k), str) else "" for k in ("description", "subject"))
        subject = subject.strip() or description.strip().split("\n")[0].strip() or f"Zendesk ticket {ticket_id}"
        channel = _lower(_obj(detail, "via").get("channel")) or "email"
        our_channel = {k.lower(): v for k, v in mapping.channels.items()}.get(channel) or CHANNELS.get(channel)
        categories = {k.lower(): v for k, v in mapping.categories.items()}
        category = next((categories[t] for t in [*tags, _lower(detail.get("type"))] if t in categories), "general")
        their_keys = {*tags, _id(detail.get("organization_id"))}
        segment = next((v for k, v in mapping.segment_tags.items() if k.lower() in their_keys), "standard")
        ticket = {
            "ticket_id": ticket_id,
            "subject": subject[:500],
            "description": description[:20_000],
            "channel": our_channel if our_channel in OUR_CHANNELS else "email",
            "category": category,
            "priority": self._priority(detail.get("priority"), mapping) or "normal",
            "customer": {"id": requester, "segment": segment},
            "opened_at": opened.isoformat(),
            "source": "zendesk",
        }
        try:
            TicketRequest.model_validate(ticket)
        except ValidationError as e:
            fields = {"ticket_id": "detail.id", "subject": "detail.subject", "opened_at": "detail.created_at"}
            loc = str(e.errors()[0]["loc"][0])
            raise InboundInvalid(fields.get(loc, f"mapping ({loc})"), e.errors()[0]["msg"]) from None
        return ticket

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
        theirs = event.ticket_id.removeprefix(mapping.prefix)
        if theirs == event.ticket_id or _id(theirs) is None:
            return Applied([], skipped=f"{event.ticket_id} is not a Zendesk ticket ({mapping.prefix}<number>)")
        ticket: dict[str, Any] = {}
        emails = list(dict.fromkeys(h for h in heads if h))
        if event.type in ("ticket.reassigned", "ticket.escalated"):
            if queue is not None:
                group = mapping.queues.get(queue)
                if _id(group) is None:
                    why = "has no Zendesk group in the helpdesk's queues" if group is None else f"maps to {group!r}"
                    raise HelpdeskError(f"queue {queue!r} {why}", status=None, permanent=True)
                ticket["group_id"] = int(str(group))
            agent = _obj(event.data, "to").get("agent") if event.type == "ticket.reassigned" else None
            assignee = _id(mapping.agents.get(agent, agent)) if isinstance(agent, str) else None
            if queue is not None or assignee is not None:  # a new group's ticket waits for one of its agents
                ticket["assignee_id"] = int(assignee) if assignee else None
            ticket["priority"] = mapping.priorities.get(event.priority, event.priority)
        elif event.type == "ticket.cc":
            if not emails:
                return Applied([], skipped="no department head with an email address to copy in")
            ticket["email_ccs"] = [{"user_email": e, "action": "put"} for e in emails]
        elif event.type == "ticket.resolved":
            ticket["status"] = mapping.resolved_status or "solved"
        elif event.type != "sla.breached":
            return Applied([], skipped=f"{event.type} is not applied to Zendesk")
        ticket["comment"] = {"body": _note(event, queue, emails, key), "public": False}
        path = f"/api/v2/tickets/{theirs}"
        response = await _send(client, credentials, "PUT", path, {"ticket": ticket})
        _raise_for(response, "PUT", path, credentials)
        return Applied([f"PUT {path} {response.status_code}"])

    async def check(self, mapping: HelpdeskMapping, credentials: EndpointSettings, client: httpx.AsyncClient) -> Check:
        try:
            response = await _send(client, credentials, "GET", "/api/v2/users/me")
            if response.status_code == 401:
                return Check(False, f"bad credentials: {_error_text(response, credentials)} ({credentials.username})")
            _raise_for(response, "GET", "/api/v2/users/me", credentials)
            me = response.json().get("user") or {}
            if _id(me.get("id")) is None:
                return Check(False, "bad credentials: Zendesk answered as an anonymous user")
            if me.get("role") == "end-user":
                return Check(False, f"{me.get('email')} is an end user: the API user must be an agent or admin")
            for queue, group in sorted(mapping.queues.items()):
                if _id(group) is None:
                    return Check(False, f"group {group!r} for queue {queue} is not a Zendesk group id")
                answer = await _send(client, credentials, "GET", f"/api/v2/groups/{group}")
                if answer.status_code == 404:
                    return Check(False, f"group {group} for queue {queue} not found")
                _raise_for(answer, "GET", f"/api/v2/groups/{group}", credentials)
        except (HelpdeskError, ValueError, AttributeError) as e:
            return Check(False, f"cannot check Zendesk: {e}".splitlines()[0])
        mine, groups = str(me["id"]), len(mapping.queues)
        if mapping.own_user and mapping.own_user != mine:
            return Check(False, f"own_user {mapping.own_user} is not the API user {mine}: set own_user: {mine}", mine)
        return Check(True, f"ok: {me.get('email')} (user {mine}, {me.get('role')}); {groups} groups found", mine)

    def setup_text(self, mapping: HelpdeskMapping, webhook_url: str) -> str:
        events = "\n".join(f"       {t}" for t in EVENT_TYPES)
        return (
            "Zendesk Admin Center > Apps and integrations > Webhooks > Webhooks > Create webhook:\n"
            f"  1. Way to connect: Zendesk events. Subscribe to:\n{events}\n"
            f"  2. Endpoint URL: {webhook_url}\n"
            "     Request method: POST    Request format: JSON    Authentication: None (requests are signed)\n"
            "  3. Create it; on its page, Signing secret > Reveal secret: put that value in this endpoint's\n"
            "     `secret` (ESCALATIONS_ENDPOINTS).\n"
            "API user: Admin Center > Apps and integrations > APIs > Zendesk API: enable Token access, add a token;\n"
            "  set this endpoint's `url` (https://<subdomain>.zendesk.com), `username` (the agent's email) and\n"
            f"  `token`. `escalations connect` prints own_user. Tickets from Zendesk are {mapping.prefix}<ticket id>.\n"
        )


def _note(event: OutboundEvent, queue: str | None, emails: list[str], key: str) -> str:
    lines = [f"{TITLES.get(event.type, event.type)}: {event.reason}"]
    lines += [f"Rule: {event.rule}"] if event.rule else []
    lines += [f"Queue: {queue}"] if queue and event.type in ("ticket.reassigned", "ticket.escalated") else []
    lines += [f"Copied in: {', '.join(emails)}"] if event.type == "ticket.cc" else []
    lines += [f"Deadline: {event.deadline.isoformat()}"] if event.deadline else []
    lines.append(f"Tier {event.tier}, {event.department}, priority {event.priority}.")
    return "\n".join(lines) + f"\n[escalations:{key}]"


async def _send(
    client: httpx.AsyncClient, credentials: EndpointSettings, method: str, path: str, body: Any = None
) -> httpx.Response:
    if credentials.url is None or not credentials.username or credentials.token is None:
        raise HelpdeskError("set url, username (the agent's email) and token", status=None, permanent=True)
    token = credentials.token.get_secret_value()
    try:
        return await client.request(
            method,
            credentials.url.get_secret_value().rstrip("/") + path,
            json=body,
            auth=httpx.BasicAuth(f"{credentials.username}/token", token),
            headers={"Accept": "application/json"},
            timeout=credentials.timeout_seconds,
        )
    except httpx.TimeoutException:
        wait = credentials.timeout_seconds
        raise HelpdeskError(f"{method} {path}: no answer in {wait:g} s", status=None, permanent=False) from None
    except httpx.HTTPError as e:  # refused, reset, DNS: Zendesk may be back soon
        text = f"{type(e).__name__}: {e}".replace(token, "***")
        raise HelpdeskError(f"{method} {path}: {text}"[:300], status=None, permanent=False) from None


def _error_text(response: httpx.Response, credentials: EndpointSettings) -> str:
    """Zendesk's error in one line: `error` (a word or {title, message}), `description`, `details`."""
    body = _envelope(response.content)
    if body is not None:
        error = body.get("error")
        if isinstance(error, dict):
            error = ": ".join(str(error[k]) for k in ("title", "message") if error.get(k))
        parts = [str(p) for p in (error, body.get("description")) if p]
        for field, items in _obj(body, "details").items():
            for item in items if isinstance(items, list) else []:
                parts.append(f"{field}: {item.get('description') if isinstance(item, dict) else item}")
        text = "; ".join(parts) or json.dumps(body)
    else:
        text = response.text or response.reason_phrase
    if credentials.token is not None:
        text = text.replace(credentials.token.get_secret_value(), "***")
    return " ".join(text.split())[:300]


def _raise_for(response: httpx.Response, method: str, path: str, credentials: EndpointSettings) -> None:
    status = response.status_code
    if status < 300:
        return
    message = f"{method} {path} {status}: {_error_text(response, credentials)}"
    wait = retry_after(response.headers.get("retry-after"))  # seconds or an HTTP date
    if status == 429:
        raise HelpdeskError(
            message, status=429, permanent=False, retry_after=RATE_LIMIT_DEFAULT if wait is None else wait
        )
    if status >= 500 or status in (408, 409):  # 409: a concurrent update of the same ticket
        raise HelpdeskError(message, status=status, permanent=False, retry_after=wait)
    raise HelpdeskError(message, status=status, permanent=True)
