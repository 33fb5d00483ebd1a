"""What the Temporal Web UI shows of a ticket: its summary (list row and page title) and its details.

No personal data: the subject, description, customer and metadata are what the customer wrote or
who they are, so none of it is shown (issue 9: all payloads are encrypted, and the UI decrypts only
through the codec server). What is shown is the ticket's id and what the policy made of it:
priority, channel, category, tier, department, queue, state, deadlines, breach, escalations,
undelivered notices and the policy version. The assignee (a person) is left out too; it is in the
`TicketAssignee` search attribute for those who may filter on it.

Pure functions: `ticket_effects.py` sets the details with `workflow.set_current_details` whenever the
ticket changes (not a command: nothing in history, nothing to replay); the starter sets the
summary (`static_summary`) when it opens the ticket.
"""

from __future__ import annotations

from datetime import datetime

from workflows.models import Ticket
from workflows.state import TicketState

MAX_SUMMARY = 200  # the UI shows one line; Temporal keeps the summary short


def static_summary(ticket: Ticket) -> str:
    """One line for the list row: `T-1001 · high · email · billing` (no subject: personal data)."""
    text = f"{ticket.ticket_id} · {ticket.priority.value} · {ticket.channel.value} · {ticket.category}"
    return text[:MAX_SUMMARY]


def current_details(
    ticket: Ticket, state: TicketState, policy_version: str, next_deadline: tuple[datetime, str] | None
) -> str:
    """Markdown for the ticket's page, kept current: where the ticket stands, nothing personal."""
    tier = "0 (self-service)" if state.tier == 0 else str(state.tier)
    lines = [
        f"**{_md(ticket.ticket_id)}**: {state.state.value.replace('_', ' ')}",
        "",
        f"- priority: {state.priority.value}; channel: {ticket.channel.value}; category: {_md(ticket.category)}",
        f"- tier {tier}, department {_md(state.department)}, queue {_md(state.queue or '-')}",
        f"- route: {_md(state.route.route)}",
    ]
    if next_deadline is not None:
        at, clock = next_deadline
        lines.append(f"- next deadline: {clock} at {at.isoformat()}")
    lines.append(f"- SLA breached: {'yes' if state.breaches else 'no'}; escalations: {state.escalations}")
    waiting = sum(1 for n in state.outbox if n.status != "pending")
    if waiting:
        lines.append(f"- undelivered notices: {waiting}")
    lines.append(f"- policy: {_md(policy_version)}")
    return "\n".join(lines)


def _md(text: str) -> str:
    """Policy names and ids as plain text in Markdown."""
    return "".join("\\" + ch if ch in "\\`*_[]<>|#" else ch for ch in text.replace("\n", " "))[:200]
