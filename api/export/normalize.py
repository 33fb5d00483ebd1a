"""The one row model of the audit timeline, whatever its source: `normalize_entry` turns a row from
the history, the workflow's query or the record store into it, and `AuditRow` describes it.

- `at`: UTC, RFC 3339 with microseconds and `Z`;
- `actor`: always set, `role:id`; automatic rows are `system:escalation-policy`;
- `detail`: JSON values only (never Python reprs), absent values left out, every duration in one
  notation, ISO 8601 in hours, minutes and seconds (`PT1H30M`, `PT24H`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from workflows.durations import as_iso, iso_duration, rewrite_legacy_prose

Entry = dict[str, Any]
SYSTEM_ACTOR = "system:escalation-policy"


def utc_text(value: datetime) -> str:
    """An instant as the timeline writes it: UTC, microseconds, `Z` (sorts as text, too)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


_DURATION_KEYS = {
    "target",
    "waits",
    "wait",
    "time_to_first_response",
    "time_to_resolution",
    "retry_for",
    "elapsed",
    "paused",
    "interval",
}


# Rows whose `reason` is the ticket's own refusal text.
_REFUSALS = {"action_rejected", "update_refused", "refused"}


def _json_value(value: Any, key: str = "") -> Any:
    """A plain JSON value: containers recursively, durations in one notation, no reprs."""
    if isinstance(value, dict):
        return {str(k): _json_value(v, str(k)) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_value(v, key) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, timedelta):
        return iso_duration(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        if key in _DURATION_KEYS:
            return as_iso(value) or value
        return value
    if hasattr(value, "model_dump"):
        return _json_value(value.model_dump(mode="json"), key)
    if hasattr(value, "value") and isinstance(value.value, str | int):  # enums
        return value.value
    return str(value)


def normalize_entry(entry: Entry) -> Entry:
    """The row as every format shows it (idempotent; tolerant of rows from older code or the store).

    Keys: `at`, `source` (`history`, `workflow`), `event_id` (history event id or null), `kind`,
    `actor` (never empty), `detail` (an object of JSON values; absent values are left out)."""
    detail = entry.get("detail")
    kind = str(entry.get("kind") or "unknown")
    detail = _json_value(detail if isinstance(detail, dict) else {} if detail is None else {"value": detail})
    if kind == "helpdesk_updated" and detail.get("outcome") == "skipped":  # older tickets said so when skipped
        kind = "helpdesk_skipped"
    if kind in _REFUSALS and isinstance(detail.get("reason"), str):
        # A guard's refusal written by 1.0.0 and earlier (`needs 0h30m`); a person's own reason is theirs.
        detail["reason"] = rewrite_legacy_prose(detail["reason"])
    at = entry.get("at")
    if isinstance(at, str) and _instant(at) != datetime.min.replace(tzinfo=UTC):
        at = _instant(at)
    return {
        "at": utc_text(at) if isinstance(at, datetime) else str(at or ""),
        "source": str(entry.get("source") or "workflow"),
        "event_id": entry.get("event_id"),
        "kind": kind,
        "actor": str(entry.get("actor") or SYSTEM_ACTOR),
        "detail": detail,
    }


def sort_entries(entries: list[Entry]) -> list[Entry]:
    """By instant, history before the workflow's account of the same instant; stable otherwise."""
    order = {"history": 0, "workflow": 1}
    return sorted(entries, key=lambda e: (_instant(e["at"]), order.get(e.get("source") or "workflow", 2)))


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class AuditRow(BaseModel):
    """One row of the exported timeline, in every format and from every source (`normalize_entry`)."""

    at: str = Field(description="UTC, RFC 3339 with microseconds and `Z`")
    source: str = Field(description="`history` (Temporal's event history) or `workflow` (the ticket's own account)")
    event_id: int | None = Field(default=None, description="the history event's id; null for `workflow` rows")
    kind: str
    actor: str = Field(description="`role:id`; automatic rows are `system:escalation-policy`")
    detail: dict[str, Any] = Field(description="JSON values only, absent values left out, durations ISO 8601")


class AuditTimeline(BaseModel):
    """`GET /tickets/{id}/timeline?format=json`, whatever the source."""

    ticket_id: str
    read_from: Literal["history", "state", "store"]
    store: dict[str, Any] | None = Field(
        default=None, description="with `read_from: store`: life, events stored, complete, closed"
    )
    events: list[AuditRow]
