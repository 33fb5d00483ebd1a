"""Freshdesk as a helpdesk: automation-rule webhooks in, API v2 out.

Why this exists: teams that run support in Freshdesk get each ticket run here (SLA clocks,
escalation ladders) and see this product's decisions in Freshdesk: group, agent, priority, status and
a private note, with the department heads notified on the note.

Freshdesk has no signed webhooks: an automation rule's "Trigger webhook" action POSTs a JSON body
built from placeholders, with custom headers. So the rule sends a shared secret in a header
(`X-Escalations-Secret`, compared in constant time) and the body `RULE_BODY` below. Its placeholders
are Freshdesk's documented ones ({{ticket.id}}, {{ticket.subject}}, {{ticket.status}},
{{ticket.priority}}, {{ticket.source}}, {{ticket.group.name}}, {{ticket.agent.email}},
{{ticket.requester.email}}, {{triggered_event}} ...). `{{triggered_event}}` renders as
`{ticket_action:created}`, `{status:{from:4,to:6}}`, `{priority:{from:3,to:1}}`,
`{responder_id:{from:..,to:..}}`, `{group_id:{..}}` or `{note_type:public}` (not JSON).

No placeholder gives the time of the event or who performed it: there is no staleness check (a
replay is caught by the event id, the body's digest within the minute) and `by` is a constant each rule sets ("agent"
or "requester"); echoes of the connector's own API calls are kept out by the rule's "performed by"
condition (every agent but the API user); a `by` equal to `own_user` is ignored too.

API v2 (Basic auth `apikey:X`): `PUT /api/v2/tickets/{id}` with group_id, responder_id, priority
(1 low, 2 medium, 3 high, 4 urgent), status (2 open, 3 pending, 4 resolved, 5 closed) answers 200;
`POST /api/v2/tickets/{id}/notes` `{"body", "private": true, "notify_emails"}` answers 201; errors
are `{"description": "Validation failed", "errors": [{field, message, code}]}` or
`{"code", "message"}`; 429 comes with `Retry-After` and `X-RateLimit-*` headers.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx

from activities.helpdesks.base import Applied, Check, HelpdeskError, Inbound, InboundInvalid, InboundRefused
from activities.helpdesks.common import HelpdeskApi, header, load, secret, validated
from activities.helpdesks.jira import LABELS, OUR_CHANNELS, TICKET_ID
from config.helpdesk_schema import HELPDESK_EVENTS, HelpdeskMapping
from config.settings import EndpointSettings
from workflows.messages import OutboundEvent

SECRET_HEADER = "X-Escalations-Secret"
SAME_EVENT_SECONDS = 60  # identical bodies within this are one event (Freshdesk sends no event id)
RULE_BODY = """{
  "event": "{{triggered_event}}",
  "by": "agent",
  "ticket": {
    "id": "{{ticket.id}}",
    "subject": "{{ticket.subject}}",
    "description": "{{ticket.description}}",
    "status": "{{ticket.status}}",
    "priority": "{{ticket.priority}}",
    "source": "{{ticket.source}}",
    "type": "{{ticket.ticket_type}}",
    "tags": "{{ticket.tags}}",
    "group": "{{ticket.group.name}}",
    "agent_email": "{{ticket.agent.email}}",
    "requester_name": "{{ticket.requester.name}}",
    "requester_email": "{{ticket.requester.email}}",
    "company": "{{ticket.company.name}}",
    "url": "{{ticket.url}}"
  }
}"""
PRIORITY_CODES = {"low": 1, "normal": 2, "high": 3, "urgent": 4}
FROM_FRESHDESK = {
    "1": "low",
    "2": "normal",
    "3": "high",
    "4": "urgent",
    "low": "low",
    "medium": "normal",
    "high": "high",
    "urgent": "urgent",
    "normal": "normal",
}
STATUS_CODES = {"open": 2, "pending": 3, "resolved": 4, "closed": 5}
SOURCES = {
    "email": "email",
    "1": "email",
    "portal": "web",
    "2": "web",
    "phone": "phone",
    "3": "phone",
    "chat": "chat",
    "7": "chat",
    "feedback widget": "web",
    "9": "web",
    "outbound email": "email",
    "10": "email",
    "twitter": "social_public",
    "facebook": "social_public",
    "whatsapp": "social_private",
}
CHANGE = re.compile(r"^\{(\w+):\{from:(.*?),to:(.*?)\}\}$")
SIMPLE = re.compile(r"^\{(\w+):(.*)\}$")


def html_text(value: Any, limit: int = 20_000) -> str:
    """Plain text of the HTML Freshdesk renders a description in, bounded."""
    text = re.sub(r"(?i)<br\s*/?>|</(p|div|li|h\d|tr)>", "\n", str(value or ""))
    text = html.unescape(re.sub(r"<[^>]*>", "", text))
    return re.sub(r"\n{3,}", "\n\n", text).strip()[:limit]


def rendered(value: Any) -> str:
    """A placeholder's value; empty when Freshdesk left it unrendered (no such value)."""
    text = str(value if value is not None else "").strip()
    return "" if "{{" in text else text


def code(value: str | None, codes: dict[str, int], what: str) -> int | None:
    if value is None or value == "":
        return None
    text = value.strip().lower()
    if text.isdigit():
        return int(text)
    if text in codes:
        return codes[text]
    raise HelpdeskError(f"{what} {value!r} is not a Freshdesk {what} (a number or a name)", status=None, permanent=True)


def freshdesk_detail(data: Any) -> str:
    """Freshdesk's `description` (or `code`/`message`) and each `errors[]` field and message."""
    if not isinstance(data, dict):
        return ""
    parts = [str(data.get("description") or data.get("message") or data.get("code") or "")]
    parts += [f"{e.get('field')}: {e.get('message')}" for e in data.get("errors") or [] if isinstance(e, dict)]
    return "; ".join(p for p in parts if p)


def freshdesk_api(credentials: EndpointSettings, client: httpx.AsyncClient) -> HelpdeskApi:
    base, key = secret(credentials.url), secret(credentials.token)
    if not base or not key:
        why = "url (https://<domain>.freshdesk.com) and token (the API key)"
        raise HelpdeskError(f"this Freshdesk endpoint needs {why}", status=None, permanent=True)
    return HelpdeskApi("Freshdesk", base, httpx.BasicAuth(key, "X"), credentials, client, freshdesk_detail)


class Freshdesk:
    """The Connector for Freshdesk."""

    kind = "freshdesk"

    def verify(
        self, body: bytes, headers: Mapping[str, str], credentials: EndpointSettings, tolerance_seconds: int
    ) -> str:
        key = secret(credentials.secret)
        if not key:
            raise InboundRefused("no webhook secret is configured for this Freshdesk endpoint")
        given = header(headers, SECRET_HEADER)
        if not given:
            raise InboundRefused(f"missing {SECRET_HEADER} header (add it to the rule's webhook as a custom header)")
        if not hmac.compare_digest(given.strip().encode(), key.encode()):
            raise InboundRefused(f"{SECRET_HEADER} does not match this endpoint's secret")
        # Freshdesk gives no event id nor time: the id is the body's digest within the minute, so a
        # replay or a retry that minute is the same event, and the same change made again later
        # (pending, replied, pending again) is a new one.
        try:
            ticket = rendered(json.loads(body)["ticket"]["id"])
        except (ValueError, UnicodeDecodeError, KeyError, TypeError, RecursionError):
            ticket = ""
        minute = int(time.time() // SAME_EVENT_SECONDS)
        return f"freshdesk:{ticket[:40]}:{hashlib.sha256(body).hexdigest()[:32]}:{minute}"

    def read(self, body: bytes, mapping: HelpdeskMapping, event_id: str) -> Inbound:
        data = load(body)
        ticket = data.get("ticket")
        if not isinstance(ticket, dict):
            raise InboundInvalid("ticket", "missing (the rule's body must be RULE_BODY)")
        number = rendered(ticket.get("id"))
        if not number or not TICKET_ID.match(mapping.prefix + number):
            raise InboundInvalid("ticket.id", f"{number!r} does not make a ticket id")
        ticket_id = mapping.prefix + number
        by = rendered(data.get("by")).lower() or "agent"
        if mapping.own_user and by == mapping.own_user.lower():
            return Inbound(event_id, ignored="our own change (the connector's API user)")
        event = rendered(data.get("event"))
        change, simple = CHANGE.match(event), SIMPLE.match(event)
        if simple and simple.group(1) == "ticket_action" and simple.group(2).strip() == "created":
            return validated(event_id, ticket_id, open=self._open(ticket_id, number, ticket, mapping))
        agents = {theirs.lower(): ours for ours, theirs in mapping.agents.items()}
        email = rendered(ticket.get("agent_email"))
        who = email or (by if by not in ("agent", "requester") else "freshdesk")
        actor = {"id": agents.get(who.lower(), who)[:200], "role": "agent"}
        acts: list[tuple[str, dict[str, Any]]] = []
        if change:
            name, before, after = change.group(1), change.group(2).strip(), change.group(3).strip()
            acts = self._change(name, before, after, rendered(ticket.get("status")), actor, agents, mapping)
        elif simple and by == "requester":  # the customer's reply or note
            acts = [("customer_replied", {})]
        elif simple and simple.group(1) == "note_type" and simple.group(2).strip().lower() == "public":
            acts = [("acknowledge", {"actor": actor})]
        if not acts:
            return Inbound(event_id, ignored=f"no change this product acts on ({event or 'no event'})")
        return validated(event_id, ticket_id, acts=acts)

    @staticmethod
    def _open(ticket_id: str, number: str, ticket: dict[str, Any], mapping: HelpdeskMapping) -> dict[str, Any]:
        tags = [t.strip() for t in rendered(ticket.get("tags")).split(",") if t.strip()]
        kinds = [rendered(ticket.get("type")), *tags]
        category = next((mapping.categories[k] for k in kinds if k in mapping.categories), "general")
        source = rendered(ticket.get("source"))
        channel = mapping.channels.get(source) or SOURCES.get(source.lower(), "email")
        company = rendered(ticket.get("company"))
        segment = next((mapping.segment_tags[k] for k in [*tags, company] if k in mapping.segment_tags), "standard")
        email, name = rendered(ticket.get("requester_email")), rendered(ticket.get("requester_name"))
        customer: dict[str, Any] = {"id": (email or name or f"freshdesk-requester-{number}")[:200], "segment": segment}
        if name:
            customer["name"] = name[:200]
        if email:
            customer["email"] = email[:320]
        return {
            "ticket_id": ticket_id,
            "subject": (rendered(ticket.get("subject")) or f"Freshdesk ticket {number}")[:500],
            "description": html_text(rendered(ticket.get("description"))),
            "channel": channel if channel in OUR_CHANNELS else "email",
            "category": category,
            "priority": inbound_priority(rendered(ticket.get("priority")), mapping) or "normal",
            "customer": customer,
            "source": "freshdesk",
        }

    @staticmethod
    def _change(
        name: str, before: str, after: str, status: str, actor: dict[str, Any], agents: dict[str, str],
        mapping: HelpdeskMapping,
    ) -> list[tuple[str, dict[str, Any]]]:  # fmt: skip
        after = "" if after.lower() in ("none", "null") else after
        if name == "responder_id" and after:
            return [
                ("reassign", {"actor": actor, "to_agent": agents.get(after, after), "reason": "assigned in Freshdesk"})
            ]
        queue = {theirs: ours for ours, theirs in mapping.queues.items()}.get(after) if name == "group_id" else None
        if queue:  # an unmapped group is no queue here
            return [("reassign", {"actor": actor, "to_queue": queue, "reason": f"moved to group {after} in Freshdesk"})]
        priority = inbound_priority(after, mapping) if name == "priority" else None
        if priority:
            return [("change_priority", {"actor": actor, "priority": priority, "reason": "changed in Freshdesk"})]
        if name != "status":
            return []
        now = {after.lower(), status.lower()} - {""}
        if now & {s.lower() for s in mapping.resolved_statuses}:
            return [("resolve", {"actor": actor, "resolution": f"{status or after} in Freshdesk"})]
        pending = {s.lower() for s in mapping.pending_statuses}
        if now & pending:
            return [("pending_customer", {"actor": actor})]
        if before.lower() in pending:
            return [("customer_replied", {})]
        return []

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
        if event.type not in HELPDESK_EVENTS:
            return Applied([], skipped=f"{event.type} is not acted on in Freshdesk")
        number = event.ticket_id[len(mapping.prefix) :]
        if not event.ticket_id.startswith(mapping.prefix) or not number.isdigit():
            return Applied(
                [], skipped=f"ticket {event.ticket_id} was not opened from Freshdesk (prefix {mapping.prefix})"
            )
        api = freshdesk_api(credentials, client)
        path = f"/api/v2/tickets/{number}"
        lines = [f"<b>[Escalations] {html.escape(LABELS[event.type])}</b>: {html.escape(event.reason)}"]
        if event.rule:
            lines.append(f"Rule: {html.escape(event.rule)}")
        note: dict[str, Any] = {"private": True}
        if event.type in ("ticket.reassigned", "ticket.escalated"):
            to: dict[str, Any] = event.data["to"] if isinstance(event.data.get("to"), dict) else {}
            agent, target = to.get("agent"), to.get("queue") or queue
            fields: dict[str, Any] = {
                "responder_id": code(mapping.agents.get(agent, agent), {}, "agent id") if agent else None
            }
            if target and target in mapping.queues:
                fields["group_id"] = code(mapping.queues[target], {}, "group id")
            priority = mapping.priorities.get(event.priority) or event.priority
            fields["priority"] = code(priority, {**PRIORITY_CODES, "medium": 2}, "priority")
            await api.call("PUT", path, fields)
            lines.append(
                html.escape(
                    f"Tier {event.tier}, department {event.department}, queue {target or '-'}, "
                    f"agent {agent or 'none (for the group to pick up)'}"
                )
            )
        elif event.type == "ticket.cc":
            people = heads or [p.email for p in event.cc if p.email]
            lines.append("Department heads notified: " + html.escape(", ".join(people) or "none listed"))
            if people:
                note["notify_emails"] = people
        elif event.type == "sla.breached" and event.deadline:
            lines.append(f"Deadline was {event.deadline.isoformat()}")
        elif event.type == "ticket.resolved":
            await api.call("PUT", path, {"status": code(mapping.resolved_status or "resolved", STATUS_CODES, "status")})
            return Applied(api.calls)
        lines.append(f"ref {html.escape(key)}")
        await api.call("POST", f"{path}/notes", {"body": "<br>".join(lines), **note})
        return Applied(api.calls)

    async def check(self, mapping: HelpdeskMapping, credentials: EndpointSettings, client: httpx.AsyncClient) -> Check:
        try:
            api = freshdesk_api(credentials, client)
            me = await api.call("GET", "/api/v2/agents/me")
        except HelpdeskError as exc:
            if exc.status == 401:
                why = "check token (the API key of the connector's agent, Profile settings > API key)"
                return Check(False, f"bad credentials: Freshdesk answered 401 to GET /api/v2/agents/me; {why}")
            return Check(False, f"cannot use Freshdesk: {exc}")
        own = str(me.get("id")) if isinstance(me, dict) and me.get("id") is not None else None
        if own is None:
            return Check(False, "not a Freshdesk API: GET /api/v2/agents/me answered without an id (check url)")
        for ours, theirs in mapping.queues.items():
            if not theirs.isdigit():
                return Check(False, f"queue {ours!r}: group id {theirs!r} is not a number", own_user=own)
            try:
                await api.call("GET", f"/api/v2/groups/{theirs}")
            except HelpdeskError as exc:
                why = f"no Freshdesk group {theirs}" if exc.status == 404 else str(exc)
                return Check(False, f"queue {ours!r}: {why}", own_user=own)
        who = (me.get("contact") or {}).get("email") if isinstance(me, dict) else None
        return Check(True, f"ok: signed in as {who or own}; {len(mapping.queues)} mapped groups found", own_user=own)

    def setup_text(self, mapping: HelpdeskMapping, webhook_url: str) -> str:
        own = mapping.own_user or "<the API user's agent id: `escalations connect` prints it>"
        return "\n".join([
            "In Freshdesk, as an admin: Admin > Workflows > Automations, three rules:",
            "1. Ticket Creation > New rule 'Escalations: new tickets': every ticket (no condition).",
            "2. Ticket Updates > New rule 'Escalations: agent changes': performed by Agent, every agent but the",
            f"   connector's API user ({own}), so its own changes do not come back as echoes; events: Priority is",
            "   changed, Status is changed, Agent is updated, Group is updated, Note is added.",
            "3. Ticket Updates > New rule 'Escalations: customer replies': performed by Requester; events: Reply is",
            '   sent, Status is changed; in its body change "by": "agent" to "by": "requester".',
            "Action of each rule: Trigger webhook",
            f"  Request type: POST   URL: {webhook_url}",
            f"  Custom headers: {SECRET_HEADER}: <this endpoint's secret>",
            "  Encoding: JSON   Content: Advanced, with this body:",
            RULE_BODY,
            f"Tickets opened from Freshdesk get ids {mapping.prefix}<ticket id>. Freshdesk sends no event time:",
            "a replay is caught by its event id (the body's digest), not by its age.",
        ])  # fmt: skip


def inbound_priority(value: str, mapping: HelpdeskMapping) -> str | None:
    """Their priority (code or name) to ours: the mapping reversed, then Freshdesk's codes and names."""
    text = value.strip().lower()
    reverse = {theirs.lower(): ours for ours, theirs in mapping.priorities.items()}
    return reverse.get(text) or FROM_FRESHDESK.get(text)
