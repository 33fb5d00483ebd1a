"""Notice templates: one per event type and channel, overridable by the policy.

The built-in templates, which template stands for a part (the policy's, else the built-in),
rendering a notice's parts, the plain-data contexts a template sees, and `template_problems`,
which `policy check` and the worker's policy loading run on every template with a sample ticket.
Rendering itself, with its limits, is `config/template_sandbox.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from config.notification_schema import EVENT_TYPES, TEMPLATE_PARTS
from config.template_sandbox import TemplateFailure, TemplateLimit, render_one

if TYPE_CHECKING:
    from config.model import Policy

__all__ = [
    "BUILTIN",
    "ONE_LINE_MAX",
    "TITLES",
    "TemplateFailure",
    "TemplateLimit",
    "digest_context",
    "event_context",
    "render",
    "sample_context",
    "sample_event",
    "template_problems",
]

ONE_LINE_MAX = 250  # subject and title: one line, cut

TITLES = {
    "sla.warning": "SLA warning",
    "sla.breached": "SLA breached",
    "ticket.escalated": "Ticket escalated",
    "ticket.reassigned": "Ticket reassigned",
    "ticket.cc": "Department head copied in",
    "ticket.resolved": "Ticket resolved",
    "ticket.reopened": "Ticket reopened",
    "ticket.self_service": "Self-service answer",
    "approval.requested": "Approval requested",
    "digest": "Digest",
}

_FACTS = """Ticket: {{ ticket_id }}{% if subject %} ({{ subject }}){% endif %}
Tier: {{ tier }} ({{ department }}), priority {{ priority }}
{% if deadline %}Deadline: {{ deadline }}
{% endif %}{% if rule %}Rule: {{ rule }}
{% endif %}Reason: {{ reason }}"""

BUILTIN: dict[str, dict[str, dict[str, str]]] = {
    "email": {
        "default": {
            # Constant per ticket, so every mail client threads a ticket's notices together.
            "subject": "[{{ ticket_id }}] {{ subject or 'ticket ' ~ ticket_id }}",
            "text": "{{ title }}\n\n" + _FACTS + "\n\nTimeline: {{ link }}\n",
            "html": (
                "<h2>{{ title }}</h2>\n<table>\n"
                "<tr><th align=left>Ticket</th><td>{{ ticket_id }}"
                "{% if subject %}: {{ subject }}{% endif %}</td></tr>\n"
                "<tr><th align=left>Tier</th><td>{{ tier }} ({{ department }}), priority {{ priority }}</td></tr>\n"
                "{% if deadline %}<tr><th align=left>Deadline</th><td>{{ deadline }}</td></tr>\n{% endif %}"
                "{% if rule %}<tr><th align=left>Rule</th><td>{{ rule }}</td></tr>\n{% endif %}"
                "<tr><th align=left>Reason</th><td>{{ reason }}</td></tr>\n</table>\n"
                '<p><a href="{{ link }}">Timeline of {{ ticket_id }}</a></p>\n'
            ),
        },
        "digest": {
            "subject": "Digest: {{ count }} notices between {{ start }} and {{ end }}",
            "text": (
                "{{ count }} notices for {{ recipient.id if recipient else endpoint }}"
                " between {{ start }} and {{ end }}"
                " (more than {{ limit }} in the window, so they are grouped here).\n\n"
                "{% for e in entries %}- {{ e.ticket_id }} {{ e.title }}{% if e.subject %}: {{ e.subject }}{% endif %}"
                " (tier {{ e.tier }}{% if e.deadline %}, deadline {{ e.deadline }}{% endif %})"
                "{% if e.sent %} [sent on its own]{% endif %}\n  {{ e.reason }}\n  {{ e.link }}\n{% endfor %}"
                "{% if more %}... and {{ more }} more\n{% endif %}"
            ),
            "html": (
                "<h2>{{ count }} notices between {{ start }} and {{ end }}</h2>\n<ul>\n"
                '{% for e in entries %}<li><a href="{{ e.link }}">{{ e.ticket_id }}</a> {{ e.title }}'
                "{% if e.subject %}: {{ e.subject }}{% endif %} (tier {{ e.tier }}"
                "{% if e.deadline %}, deadline {{ e.deadline }}{% endif %}){% if e.sent %} [sent on its own]{% endif %}"
                "<br>{{ e.reason }}</li>\n{% endfor %}</ul>\n{% if more %}<p>... and {{ more }} more</p>{% endif %}\n"
            ),
        },
    },
    "slack": {
        "default": {
            "title": "{{ title }}: {{ ticket_id }}",
            "text": (
                "*{{ title }}* for <{{ link }}|{{ ticket_id }}>{% if subject %}: {{ subject }}{% endif %}\n{{ reason }}"
            ),
        },
        "digest": {
            "title": "Digest: {{ count }} notices",
            "text": (
                "{{ count }} notices between {{ start }} and {{ end }}:\n"
                "{% for e in entries %}• <{{ e.link }}|{{ e.ticket_id }}> {{ e.title }}: {{ e.reason }}\n{% endfor %}"
                "{% if more %}... and {{ more }} more{% endif %}"
            ),
        },
    },
    "teams": {
        "default": {
            "title": "{{ title }}: {{ ticket_id }}",
            "text": "**{{ title }}** for {{ ticket_id }}{% if subject %}: {{ subject }}{% endif %}\n\n{{ reason }}",
        },
        "digest": {
            "title": "Digest: {{ count }} notices",
            "text": (
                "{{ count }} notices between {{ start }} and {{ end }}:\n\n"
                "{% for e in entries %}- [{{ e.ticket_id }}]({{ e.link }}) {{ e.title }}: {{ e.reason }}\n{% endfor %}"
                "{% if more %}\n... and {{ more }} more{% endif %}"
            ),
        },
    },
}


def _source(
    overrides: dict[str, dict[str, dict[str, str]]], channel: str, event_type: str, part: str
) -> tuple[str, str]:
    """(name, source) of the template for one part: the policy's, else the built-in."""
    own = overrides.get(channel, {})
    builtin = BUILTIN[channel]
    kind = "digest" if event_type == "digest" else event_type
    for where, table, key in (
        ("notifications.templates", own, kind),
        ("notifications.templates", own, "default" if kind != "digest" else "digest"),
        ("built-in", builtin, kind),
        ("built-in", builtin, "default" if kind != "digest" else "digest"),
    ):
        source = table.get(key, {}).get(part)
        if source is not None:
            return f"{where}.{channel}.{key}.{part}", source
    raise KeyError(f"no template for {channel}/{event_type}/{part}")


def render(
    overrides: dict[str, dict[str, dict[str, str]]], channel: str, event_type: str, context: dict[str, Any]
) -> dict[str, str]:
    """Every part of the channel's template for this event type, rendered; raises `TemplateFailure`."""
    parts: dict[str, str] = {}
    for part in TEMPLATE_PARTS[channel]:
        name, source = _source(overrides, channel, event_type, part)
        text = render_one(name, source, context)
        if part in ("subject", "title"):
            text = " ".join(text.split())[:ONE_LINE_MAX]
        parts[part] = text
    return parts


# ---------------------------------------------------------------------- contexts
def _when(value: Any) -> str | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def event_context(event: dict[str, Any], link: str, recipient: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a template sees for one event (plain data only)."""
    return {
        "event": event,
        "type": event["type"],
        "title": TITLES.get(event["type"], event["type"]),
        "ticket_id": event["ticket_id"],
        "subject": event.get("subject"),
        "tier": event["tier"],
        "department": event["department"],
        "priority": event["priority"],
        "deadline": _when(event.get("deadline")),
        "occurred_at": _when(event.get("occurred_at")),
        "rule": event.get("rule"),
        "reason": event["reason"],
        "recipients": event.get("recipients", []),
        "cc": event.get("cc", []),
        "data": event.get("data", {}),
        "link": link,
        "recipient": recipient,
    }


def digest_context(
    entries: list[dict[str, Any]],
    *,
    start: datetime,
    end: datetime,
    limit: int,
    more: int,
    endpoint: str,
    recipient: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "type": "digest",
        "title": TITLES["digest"],
        "entries": entries,
        "count": len(entries) + more,
        "more": more,
        "limit": limit,
        "start": _when(start),
        "end": _when(end),
        "endpoint": endpoint,
        "recipient": recipient,
    }


def sample_event(event_type: str) -> dict[str, Any]:
    """A sample ticket's event, for `policy check` and `notify preview`."""
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    return {
        "id": "msg_ticket-T-1001_0f1e2d3c_7",
        "type": event_type,
        "occurred_at": now.isoformat(),
        "ticket_id": "T-1001",
        "workflow_id": "ticket-T-1001",
        "tier": 2,
        "department": "billing",
        "priority": "high",
        "recipients": [{"role": "assignee", "id": "ann", "email": "ann@example.com"}],
        "cc": [{"role": "department_head", "id": "bea.head", "email": "bea@example.com"}],
        "rule": "ladders.resolution[1] (res-breach)",
        "reason": "resolution SLA after breach",
        "data": {},
        "subject": "Charged twice",
        "deadline": (now + timedelta(minutes=30)).isoformat(),
    }


def sample_context(channel: str, event_type: str, link_base: str = "http://127.0.0.1:8000") -> dict[str, Any]:
    recipient = {"role": "department_head", "id": "bea.head", "email": "bea@example.com"}
    if event_type != "digest":
        return event_context(sample_event(event_type), f"{link_base}/tickets/T-1001/timeline?format=md", recipient)
    entries = []
    for i, kind in enumerate(("sla.breached", "ticket.cc", "sla.warning")):
        event = sample_event(kind) | {"ticket_id": f"T-10{i:02d}"}
        entry = event_context(event, f"{link_base}/tickets/T-10{i:02d}/timeline?format=md")
        entries.append(entry | {"sent": i == 0})
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    return digest_context(
        entries, start=start, end=start + timedelta(minutes=10), limit=1, more=0, endpoint="mail", recipient=recipient
    )


def template_problems(policy: Policy) -> list[str]:
    """Render every template (the policy's overrides and the built-ins they stand beside) with a
    sample ticket; each problem names the template and the line."""
    overrides: dict[str, dict[str, dict[str, str]]] = {str(k): v for k, v in policy.notifications.templates.items()}
    problems: list[str] = []
    seen: set[str] = set()
    for channel in TEMPLATE_PARTS:
        for event_type in EVENT_TYPES:
            for part in TEMPLATE_PARTS[channel]:
                name, source = _source(overrides, channel, event_type, part)
                if name in seen:
                    continue
                seen.add(name)
                try:
                    render_one(name, source, sample_context(channel, event_type))
                except TemplateFailure as failure:
                    problems.append(str(failure))
    return problems
