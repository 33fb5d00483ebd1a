"""The input of the review: a stored ticket (`TicketFacts`) and its timeline rows (`EventRow`), and
how the values in those rows are read (times, durations, tier numbers, actors, reasons).

Rows come from the record store as the workflow wrote them; a value that cannot be read counts as
missing, never as an error, so one odd row does not stop a review.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SYSTEM_ACTOR = "system:escalation-policy"


class EventRow(BaseModel):
    """One row of a ticket's timeline (the workflow's own account), as stored."""

    model_config = ConfigDict(extra="ignore")

    at: AwareDatetime
    kind: str
    actor: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class TicketFacts(BaseModel):
    """A stored ticket: what the summary knows plus its timeline rows in the order they happened."""

    model_config = ConfigDict(extra="ignore")

    ticket_id: str
    life_id: str | None = None
    channel: str = "unknown"
    category: str = "unknown"
    priority: str | None = Field(default=None, description="None: the routed priority from the timeline")
    opened_at: AwareDatetime | None = None
    policy_version: str | None = Field(default=None, description="the policy version it froze (its calendars)")
    closed_at: AwareDatetime | None = Field(default=None, description="its workflow completed: nothing counts on after")
    events_stored: int = 0
    events: list[EventRow] = Field(default_factory=list)


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def tier_number(value: Any) -> int:
    """A tier number from a stored row; anything unreadable counts as 0."""
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


PERSON_ROLES: tuple[str, ...] = ("agent", "lead", "manager")


def agent_of(actor: str | None) -> str | None:
    if not actor or ":" not in actor:
        return None
    role, _, ident = actor.partition(":")
    return ident if role in PERSON_ROLES and ident else None


_REPEAT = re.compile(r" \(repeat \d+\)|; \d+ earlier reminder\(s\) missed.*$")


def normalise_reason(reason: Any) -> str:
    text = _REPEAT.sub("", str(reason or "")).strip()
    return (text[:200] or "(no reason given)").lower()
