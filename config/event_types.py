"""The event types a notice can have, and the parts of a template per channel.

Read by the policy's schema (which templates a policy may override) and by the template engine
(`config/templates.py`, which renders them); a module of its own so that neither imports the other
at run time.
"""

from __future__ import annotations

# Event types a template can be written for (`digest` is the flood-control summary).
EVENT_TYPES = (
    "sla.warning",
    "sla.breached",
    "ticket.escalated",
    "ticket.reassigned",
    "ticket.cc",
    "ticket.resolved",
    "ticket.reopened",
    "ticket.self_service",
    "approval.requested",
    "digest",
)
TEMPLATE_PARTS: dict[str, tuple[str, ...]] = {
    "email": ("subject", "text", "html"),
    "slack": ("title", "text"),
    "teams": ("title", "text"),
}
