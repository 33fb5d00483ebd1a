"""The audit timeline read back from the store, in the export's entry format (`api/export/`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from store.repository import Life


def _at(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def entries_from_store(life: Life) -> list[dict[str, Any]]:
    """The ticket's own account (the rows marked `source: workflow` in the export), as stored, in
    the export's order (by time; events of one instant in the order they happened)."""
    rows = [
        {"at": _at(e.at), "source": "workflow", "event_id": None, "kind": e.kind, "actor": e.actor, "detail": e.data}
        for e in life.events
        if e.stream == "timeline"
    ]
    return sorted(rows, key=lambda row: row["at"])


def about(life: Life) -> dict[str, Any]:
    """What the store says about the life it read: for the `store` field of an export."""
    t = life.ticket
    return {
        "life_id": t.life_id,
        "opened_at": _at(t.opened_at),
        "closed_at": _at(t.closed_at) if t.closed_at else None,
        "events_stored": t.events_stored,
        "complete": t.complete,
    }
