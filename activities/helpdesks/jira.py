"""Jira Service Management (Cloud) as a helpdesk: its webhooks in, its REST API out.

Why: teams that run support in Jira Service Management get each issue run here as a ticket (SLA
clocks, escalation ladders) and see this product's decisions in Jira (assignee, priority, an
internal comment) without anyone copying them across.

Public documentation followed (developer.atlassian.com):
- An admin webhook (System > WebHooks) registered with a secret signs the raw body:
  `X-Hub-Signature: sha256=<hex HMAC-SHA256>`. `X-Atlassian-Webhook-Identifier` names a delivery and
  stays the same across Jira's retries; the body's `timestamp` is milliseconds since the epoch.
- Events `jira:issue_created`, `jira:issue_updated` (`changelog.items[]` of field, from, fromString,
  to, toString; for `assignee`, `to` is the accountId) and `comment_created` (`comment.author`,
  `comment.jsdPublic`). A webhook's description is wiki text; API v3 gives ADF: both are read.
- REST API v3, Basic auth `email:api_token`: `PUT /rest/api/3/issue/{key}/assignee` `{"accountId"}`
  (204; null unassigns), `PUT /rest/api/3/issue/{key}` (204), `GET|POST .../transitions` (POST 204),
  `GET /rest/api/3/myself`; errors `{"errorMessages": [...], "errors": {...}}`; 429 (and some 503)
  with `Retry-After` seconds. JSM `POST /rest/servicedeskapi/request/{key}/comment`
  `{"body", "public": false}` is an internal comment (201).

Jira has no groups to assign to and no email CC: the queue and the department heads are named in an
internal comment. Unlisted priorities use Jira's default scheme (Highest, High, Medium, Low, Lowest),
not "the same name", which Jira would refuse. The comment ends with `ref <key>`: a retry after a lost
answer may repeat it (Jira has no idempotency key), and the ref shows it.
Shared helpers (`HelpdeskApi`, `validated`, ...) are in `common.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from activities.helpdesks.base import Applied, Check, HelpdeskError, Inbound, InboundInvalid, InboundRefused
from activities.helpdesks.common import HelpdeskApi, dig, header, load, secret, validated
from config.helpdesk_schema import HELPDESK_EVENTS, HelpdeskMapping
from config.settings import EndpointSettings
from workflows.messages import OutboundEvent

READ_EVENTS = ("jira:issue_created", "jira:issue_updated", "comment_created")
TO_JIRA = {"urgent": "Highest", "high": "High", "normal": "Medium", "low": "Low"}
FROM_JIRA = {"highest": "urgent", "high": "high", "medium": "normal", "low": "low", "lowest": "low"}
OUR_PRIORITIES = ("low", "normal", "high", "urgent")
OUR_CHANNELS = ("email", "web", "chat", "phone", "social_public", "social_private")
TICKET_ID = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
ADF_BLOCKS = {"paragraph", "heading", "blockquote", "listItem", "codeBlock", "rule", "tableRow", "panel"}
LABELS = {"ticket.reassigned": "Reassigned", "ticket.escalated": "Escalated", "sla.breached": "SLA breached"}
LABELS |= {"ticket.cc": "Department heads copied in", "ticket.resolved": "Resolved"}


def adf_text(node: Any, limit: int = 20_000) -> str:
    """Plain text of Atlassian Document Format (API v3) or of wiki text (webhooks), bounded."""
    if not isinstance(node, dict):
        return str(node or "").strip()[:limit]
    out: list[str] = []
    size, stack = 0, [node]
    while stack and size < limit:
        item = stack.pop()
        kind = dig(item, "type")
        text = item if isinstance(item, str) else {"text": dig(item, "text"), "hardBreak": "\n"}.get(str(kind))
        text = str((dig(item, "attrs", "text") if kind == "mention" else text) or "")
        out.append(text)
        size += len(text)
        content = dig(item, "content")
        stack.extend(
            (["\n"] if kind in ADF_BLOCKS else []) + (list(reversed(content)) if isinstance(content, list) else [])
        )
    return "".join(out).strip()[:limit]


def jira_detail(data: Any) -> str:
    """Jira's `errorMessages` and `errors`, JSM's `errorMessage`."""
    parts = [str(m) for m in dig(data, "errorMessages") or [] if m]
    parts += (
        [f"{k}: {v}" for k, v in (dig(data, "errors") or {}).items()] if isinstance(dig(data, "errors"), dict) else []
    )
    return "; ".join([*parts, str(dig(data, "errorMessage") or "")]).strip("; ")


def jira_api(credentials: EndpointSettings, client: httpx.AsyncClient) -> HelpdeskApi:
    base, token, user = secret(credentials.url), secret(credentials.token), credentials.username
    if not base or not token or not user:
        why = "url (https://<site>.atlassian.net), username (the API user's email) and token"
        raise HelpdeskError(f"this Jira endpoint needs {why}", status=None, permanent=True)
    return HelpdeskApi("Jira", base, httpx.BasicAuth(user, token), credentials, client, jira_detail)


class Jira:
    """The Connector for Jira Service Management Cloud."""

    kind = "jira"

    def verify(
        self, body: bytes, headers: Mapping[str, str], credentials: EndpointSettings, tolerance_seconds: int
    ) -> str:
        key = secret(credentials.secret)
        if not key:
            raise InboundRefused("no webhook secret is configured for this Jira endpoint")
        given = header(headers, "X-Hub-Signature")
        if not given:
            raise InboundRefused("missing X-Hub-Signature header (register the Jira webhook with a secret)")
        method, _, digest = given.strip().partition("=")
        if method.lower() != "sha256" or not digest:
            raise InboundRefused("X-Hub-Signature is not of the form sha256=<hex>")
        expected = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), digest.strip().lower().encode()):
            raise InboundRefused("X-Hub-Signature does not match the body (wrong secret or altered body)")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise InboundRefused("the signed body is not JSON") from None
        stamp = data.get("timestamp") if isinstance(data, dict) else None
        if not isinstance(stamp, int | float) or isinstance(stamp, bool):
            raise InboundRefused("the body has no timestamp (milliseconds)")
        age = time.time() - stamp / 1000
        if age > tolerance_seconds:
            raise InboundRefused(f"stale: the event is {int(age)} s old, more than {tolerance_seconds} s")
        if age < -tolerance_seconds:
            raise InboundRefused(f"the event's timestamp is {int(-age)} s in the future")
        ident = (header(headers, "X-Atlassian-Webhook-Identifier") or "").strip()
        detail = dig(data, "changelog", "id") or dig(data, "comment", "id") or data.get("webhookEvent") or ""
        return (ident or f"jira:{int(stamp)}:{dig(data, 'issue', 'id') or ''}:{detail}")[:200]

    def read(self, body: bytes, mapping: HelpdeskMapping, event_id: str) -> Inbound:
        data = load(body)
        event = data.get("webhookEvent")
        if event not in READ_EVENTS:
            return Inbound(event_id, ignored=f"Jira event {event!r} is not read here")
        key = dig(data, "issue", "key")
        if not isinstance(key, str) or not TICKET_ID.match(mapping.prefix + key):
            raise InboundInvalid("issue.key", f"{key!r} does not make a ticket id")
        ticket_id, fields = mapping.prefix + key, f if isinstance(f := dig(data, "issue", "fields"), dict) else {}
        author = dig(data, "comment", "author") if event == "comment_created" else data.get("user")
        account = dig(author, "accountId")
        if mapping.own_user and account == mapping.own_user:
            return Inbound(event_id, ignored="our own change (the connector's API user)")
        if event == "jira:issue_created":
            return validated(event_id, ticket_id, open=self._open(ticket_id, key, fields, data, mapping))
        ours = {theirs: our for our, theirs in mapping.agents.items()}
        actor = (
            {"id": str(ours.get(account, account)), "role": "agent"} if account else {"id": "jira", "role": "system"}
        )
        acts: list[tuple[str, dict[str, Any]]] = []
        if event == "comment_created":
            reporter = dig(fields, "reporter", "accountId")
            if dig(author, "accountType") == "customer" or (account and account == reporter):
                return Inbound(event_id, ignored="the customer's comment (a status change says they replied)")
            if dig(data, "comment", "jsdPublic") is False:
                return Inbound(event_id, ignored="an internal comment, not a response to the customer")
            acts.append(("acknowledge", {"actor": actor}))
        for item in dig(data, "changelog", "items") or []:
            acts.extend(self._change(item, actor, ours, mapping))
        if not acts:
            return Inbound(event_id, ignored="no change this product acts on")
        return validated(event_id, ticket_id, acts=acts)

    @staticmethod
    def _open(
        ticket_id: str, key: str, fields: dict[str, Any], data: dict[str, Any], mapping: HelpdeskMapping
    ) -> dict[str, Any]:
        labels = [str(label) for label in fields.get("labels") or []]
        request_types = [str(dig(v, "requestType", "name")) for k, v in fields.items() if dig(v, "requestType", "name")]
        kinds = [*request_types, str(dig(fields, "issuetype", "name") or ""), *labels]
        category = next((mapping.categories[k] for k in kinds if k in mapping.categories), "general")
        channel = next((mapping.channels[k] for k in kinds if k in mapping.channels), "email")
        segment = next((mapping.segment_tags[k] for k in labels if k in mapping.segment_tags), "standard")
        reporter = fields.get("reporter") or data.get("user") or {}
        customer = {"id": str(dig(reporter, "accountId") or f"jira-reporter-{key}"), "segment": segment}
        customer |= {"name": str(dig(reporter, "displayName"))[:200]} if dig(reporter, "displayName") else {}
        customer |= {"email": str(dig(reporter, "emailAddress"))} if dig(reporter, "emailAddress") else {}
        now = datetime.now(UTC)
        try:
            created = datetime.strptime(str(fields.get("created")), "%Y-%m-%dT%H:%M:%S.%f%z")
        except ValueError:
            created = now
        return {
            "ticket_id": ticket_id,
            "subject": (str(fields.get("summary") or "").strip() or key)[:500],
            "description": adf_text(fields.get("description")),
            "channel": channel if channel in OUR_CHANNELS else "email",
            "category": category,
            "priority": inbound_priority(dig(fields, "priority", "name"), mapping) or "normal",
            "customer": customer,
            "opened_at": min(created, now).isoformat(),  # a clock ahead of ours is not a future ticket
            "source": "jira",
        }

    @staticmethod
    def _change(
        item: Any, actor: dict[str, Any], ours: dict[str, str], mapping: HelpdeskMapping
    ) -> list[tuple[str, dict[str, Any]]]:
        field, to = str(dig(item, "field") or "").lower(), dig(item, "to")
        if field == "assignee" and to:
            return [
                ("reassign", {"actor": actor, "to_agent": ours.get(str(to), str(to)), "reason": "assigned in Jira"})
            ]
        priority = inbound_priority(dig(item, "toString"), mapping) if field == "priority" else None
        if priority:
            return [("change_priority", {"actor": actor, "priority": priority, "reason": "changed in Jira"})]
        now, before = str(dig(item, "toString") or ""), str(dig(item, "fromString") or "").lower()
        pending = [s.lower() for s in mapping.pending_statuses]
        if field != "status":
            return []
        if now.lower() in [s.lower() for s in mapping.resolved_statuses]:
            return [("resolve", {"actor": actor, "resolution": f"{now} in Jira"})]
        if now.lower() in pending:
            return [("pending_customer", {"actor": actor})]
        return [("customer_replied", {})] if before in pending else []

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
            return Applied([], skipped=f"{event.type} is not acted on in Jira")
        if not event.ticket_id.startswith(mapping.prefix):
            return Applied([], skipped=f"ticket {event.ticket_id} was not opened from Jira (prefix {mapping.prefix})")
        issue = event.ticket_id[len(mapping.prefix) :]
        path = f"/rest/api/3/issue/{quote(issue, safe='')}"
        api = jira_api(credentials, client)
        lines = [f"[Escalations] {LABELS[event.type]}: {event.reason}"] + (
            [f"Rule: {event.rule}"] if event.rule else []
        )
        if event.type in ("ticket.reassigned", "ticket.escalated"):
            to: dict[str, Any] = event.data["to"] if isinstance(event.data.get("to"), dict) else {}
            agent, target = to.get("agent"), to.get("queue") or queue
            await api.call(
                "PUT", f"{path}/assignee", {"accountId": mapping.agents.get(agent, agent) if agent else None}
            )
            priority = mapping.priorities.get(event.priority) or TO_JIRA.get(event.priority, event.priority)
            await api.call("PUT", path, {"fields": {"priority": {"name": priority}}})
            lines.append(f"Tier {event.tier}, department {event.department}" + (f", queue {target}" if target else ""))
            lines.append(f"Assignee: {agent}" if agent else "Unassigned: for the queue to pick up")
        elif event.type == "ticket.cc":
            people = heads or [p.email or p.id for p in event.cc]
            lines.append("Department heads (Jira has no email CC): " + (", ".join(people) or "none listed"))
        elif event.type == "sla.breached" and event.deadline:
            lines.append(f"Deadline was {event.deadline.isoformat()}")
        elif event.type == "ticket.resolved" and mapping.resolved_status:
            wanted = mapping.resolved_status.casefold()
            found = dig(await api.call("GET", f"{path}/transitions"), "transitions") or []
            choice = next(
                (t for t in found if wanted in (str(dig(t, "name")).casefold(), str(dig(t, "to", "name")).casefold())),
                None,
            )
            if choice is not None:
                await api.call("POST", f"{path}/transitions", {"transition": {"id": str(choice.get("id"))}})
                return Applied(api.calls)
            lines.append(f"(transition {mapping.resolved_status!r} is not available on this issue)")
        lines.append(f"ref {key}")
        comment = {"body": "\n".join(lines)[:10_000], "public": False}
        await api.call("POST", f"/rest/servicedeskapi/request/{quote(issue, safe='')}/comment", comment)
        return Applied(api.calls)

    async def check(self, mapping: HelpdeskMapping, credentials: EndpointSettings, client: httpx.AsyncClient) -> Check:
        try:
            api = jira_api(credentials, client)
            me = await api.call("GET", "/rest/api/3/myself")
        except HelpdeskError as exc:
            if exc.status == 401:
                why = "check username (the API user's email) and token (an Atlassian API token)"
                return Check(False, f"bad credentials: Jira answered 401 to GET /rest/api/3/myself; {why}")
            return Check(False, f"cannot use Jira: {exc}")
        own = str(dig(me, "accountId") or "") or None
        if own is None:
            return Check(False, "not a Jira API: GET /rest/api/3/myself answered without an accountId (check url)")
        for ours, theirs in mapping.agents.items():
            try:
                await api.call("GET", f"/rest/api/3/user?accountId={quote(theirs, safe='')}")
            except HelpdeskError as exc:
                why = f"no Jira user with accountId {theirs!r}" if exc.status == 404 else str(exc)
                return Check(False, f"agent {ours!r}: {why}", own_user=own)
        ignored = "; queues are ignored (Jira has no groups)" if mapping.queues else ""
        who = dig(me, "displayName") or own
        return Check(True, f"ok: signed in as {who}; {len(mapping.agents)} mapped agents found{ignored}", own_user=own)

    def setup_text(self, mapping: HelpdeskMapping, webhook_url: str) -> str:
        own = mapping.own_user or "<the API user's accountId: `escalations connect` prints it>"
        return "\n".join([
            "In Jira, as a site admin: Settings > System > WebHooks > Create a WebHook",
            f"  URL:     {webhook_url}",
            "  Secret:  Generate secret, and store the same value as this endpoint's `secret`",
            "  Events:  Issue: created, updated; Comment: created",
            "  JQL:     project = <your service project key>   (e.g. project = SUP)",
            "  Exclude body: leave unticked (the body is needed)",
            f"Policy helpdesks.<name>: kind: jira, own_user: {own}",
            "  (the API user's own changes come back as webhooks: they are ignored as echoes)",
            f"Tickets opened from Jira get ids {mapping.prefix}<issue key>; resolved statuses: "
            + ", ".join(mapping.resolved_statuses),
            "  waiting on the customer: " + ", ".join(mapping.pending_statuses),
        ])  # fmt: skip


def inbound_priority(name: Any, mapping: HelpdeskMapping) -> str | None:
    """Their priority name to ours: the mapping reversed, then Jira's default scheme, then our names."""
    text = str(name or "").strip().lower()
    reverse = {theirs.lower(): ours for ours, theirs in mapping.priorities.items()}
    return reverse.get(text) or FROM_JIRA.get(text) or (text if text in OUR_PRIORITIES else None)
