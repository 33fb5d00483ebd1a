"""The input of the review: a stored ticket (`TicketFacts`) and its timeline rows (`EventRow`), and
how the values in those rows are read (times, durations, tier numbers, actors, reasons).

Rows come from the record store as the workflow wrote them; a value that cannot be read counts as
missing, never as an error, so one odd row does not stop a review.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
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
    channel: str = "unknown"
    category: str = "unknown"
    priority: str | None = Field(default=None, description="None: the routed priority from the timeline")
    opened_at: AwareDatetime | None = None
    events: list[EventRow] = Field(default_factory=list)


_DURATION = re.compile(r"^(?:(?P<days>-?\d+) days?, )?(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d(?:\.\d+)?)$")


_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: Any) -> timedelta | None:
    """`str(timedelta)` as the workflow writes it ('1 day, 2:00:00', '0:30:00'), ISO 8601 ('PT4H',
    'P1DT2H') as the exported timeline writes it, or seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return timedelta(seconds=float(text))
    if not isinstance(text, str):
        return None
    iso = _ISO_DURATION.match(text.strip())
    if iso and text.strip() not in ("P", "PT"):
        return timedelta(
            days=float(iso["d"] or 0),
            hours=float(iso["h"] or 0),
            minutes=float(iso["m"] or 0),
            seconds=float(iso["s"] or 0),
        )
    m = _DURATION.match(text.strip())
    if not m:
        return None
    return timedelta(days=int(m["days"] or 0), hours=int(m["h"]), minutes=int(m["m"]), seconds=float(m["s"]))


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


def agent_of(actor: str | None) -> str | None:
    if not actor or ":" not in actor:
        return None
    role, _, ident = actor.partition(":")
    return ident if role in ("agent", "lead", "manager") and ident else None


_REPEAT = re.compile(r" \(repeat \d+\)|; \d+ earlier reminder\(s\) missed.*$")


def normalise_reason(reason: Any) -> str:
    text = _REPEAT.sub("", str(reason or "")).strip()
    return (text[:200] or "(no reason given)").lower()
