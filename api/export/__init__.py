"""The audit timeline: what happened to a ticket and why, from its Temporal event history.

The history is the record Temporal keeps whatever the workflow code says about itself, so the
export starts there (`history`); the workflow's own timeline (its interpretation: which rule fired,
which clock paused) is merged in, marked `source: workflow`, when a worker can answer the query
(`sources`). Every row, whatever its source, goes through `normalize_entry` (`normalize`) before it
is rendered (`render`), so the three formats carry the same rows with the same values (see
docs/auditing.md). This module is the package's public face.
"""

from __future__ import annotations

from api.export.history import decode_history, entries_from_history
from api.export.normalize import (
    SYSTEM_ACTOR,
    AuditRow,
    AuditTimeline,
    Entry,
    normalize_entry,
    sort_entries,
    utc_text,
)
from api.export.render import COLUMNS, detail_text, render_timeline
from api.export.sources import Audit, NotInStore, StoreUnavailable, audit, audit_from_history

__all__ = [
    "COLUMNS",
    "SYSTEM_ACTOR",
    "Audit",
    "AuditRow",
    "AuditTimeline",
    "Entry",
    "NotInStore",
    "StoreUnavailable",
    "audit",
    "audit_from_history",
    "decode_history",
    "detail_text",
    "entries_from_history",
    "normalize_entry",
    "render_timeline",
    "sort_entries",
    "utc_text",
]
