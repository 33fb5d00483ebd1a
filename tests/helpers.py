"""Small builders shared by the workflow tests."""

from __future__ import annotations

import uuid
from typing import Any

from workflows.models import Ticket

AGENT = {"id": "ann", "role": "agent", "tier": 1}
LEAD = {"id": "lee.lead", "role": "lead", "tier": 2}
MANAGER = {"id": "dana.head", "role": "manager"}


def ticket(**fields: Any) -> Ticket:
    base: dict[str, Any] = {
        "ticket_id": f"T-{uuid.uuid4().hex[:8]}",
        "subject": "Cannot log in",
        "channel": "email",
        "category": "account",
        "priority": "normal",
        "customer": {"id": "c-1", "email": "c@example.com"},
    }
    base.update(fields)
    return Ticket.model_validate(base)
