"""The audit timeline: what happened to a ticket and why, from its Temporal event history.

The history is the record Temporal keeps whatever the workflow code says about itself, so the
export starts there: every signal and update with its payload and outcome, every timer with its
label, every activity with its input, attempts and result, every search-attribute change. The
workflow's own timeline (its interpretation: which rule fired, which clock paused) is merged in,
marked `source: workflow`, when a worker can answer the query.

Every row, whatever its source, goes through `normalize_entry` before it is rendered, so the three
formats carry the same rows with the same values (see docs/auditing.md):
- `at`: UTC, RFC 3339 with microseconds and `Z`;
- `actor`: always set, `role:id`; automatic rows are `system:escalation-policy`;
- `detail`: JSON values only (never Python reprs), absent values left out, every duration in one
  notation, ISO 8601 in hours, minutes and seconds (`PT1H30M`, `PT24H`: no days, months or years,
  whose length depends on the calendar).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel, Field
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import PayloadCodec
from temporalio.service import RPCError, RPCStatusCode

from workflows.models import iso_duration as iso_duration  # re-exported: the one notation

Entry = dict[str, Any]
_CONVERTER = pydantic_data_converter.payload_converter
SYSTEM_ACTOR = "system:escalation-policy"
_CUSTOMER_ACTIONS = {"customer_replied": "customer", "confirm_solved": "customer"}
COLUMNS = ["at", "source", "kind", "actor", "detail"]


def utc_text(value: datetime) -> str:
    """An instant as the timeline writes it: UTC, microseconds, `Z` (sorts as text, too)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _decode(payloads: Any) -> list[Any]:
    try:
        return list(_CONVERTER.from_payloads(list(payloads.payloads))) if payloads and payloads.payloads else []
    except Exception:  # a payload this code cannot read is shown as absent, not fatal
        return []


def _first(payloads: Any) -> Any:
    values = _decode(payloads)
    return values[0] if values else None


def _summary(event: HistoryEvent) -> str | None:
    if event.HasField("user_metadata") and event.user_metadata.HasField("summary"):
        value = _first_payload(event.user_metadata.summary)
        return str(value) if value is not None else None
    return None


def _first_payload(payload: Any) -> Any:
    try:
        return _CONVERTER.from_payloads([payload])[0]
    except Exception:
        return None


def entries_from_history(history: WorkflowHistory) -> list[Entry]:
    """One audit entry per meaningful history event, in history order."""
    out: list[Entry] = []
    scheduled: dict[int, Entry] = {}
    attempts: dict[int, int] = {}
    updates: dict[str, Entry] = {}

    def add(event: HistoryEvent, kind: str, actor: str | None = None, **detail: Any) -> Entry:
        entry = {
            "at": utc_text(event.event_time.ToDatetime().replace(tzinfo=UTC)),
            "source": "history",
            "event_id": event.event_id,
            "kind": kind,
            "actor": actor,
            "detail": detail,
        }
        out.append(entry)
        return entry

    a: Any  # the attributes message of the event at hand
    for ev in history.events:
        t = ev.event_type
        if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            a = ev.workflow_execution_started_event_attributes
            started_ticket = _first(a.input)
            source = started_ticket.get("source") if isinstance(started_ticket, dict) else None
            add(
                ev,
                "workflow_started",
                f"source:{source or 'unknown'}" if not a.continued_execution_run_id else None,
                ticket=started_ticket,
                task_queue=a.task_queue.name,
                continued_from=a.continued_execution_run_id or None,
            )
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = ev.activity_task_scheduled_event_attributes
            request = _first(a.input) or {}
            info: Entry = {"activity": a.activity_type.name, "activity_id": a.activity_id}
            if isinstance(request, dict) and "event" in request:
                e = request["event"]
                info.update(
                    event_id=e.get("id"),
                    event_type=e.get("type"),
                    endpoint=request["endpoint"]["name"],
                    recipients=[p["id"] for p in e.get("recipients", [])],
                    cc=[p["id"] for p in e.get("cc", [])],
                    rule=e.get("rule"),
                    reason=e.get("reason"),
                    tier=e.get("tier"),
                    department=e.get("department"),
                )
            elif isinstance(request, dict):
                info.update({k: v for k, v in request.items() if k in ("queue", "agent", "reason", "opened_at")})
            scheduled[ev.event_id] = info
            add(ev, f"{a.activity_type.name}_scheduled", **info)
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            a = ev.activity_task_started_event_attributes
            attempts[a.scheduled_event_id] = a.attempt
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            a = ev.activity_task_completed_event_attributes
            info = scheduled.get(a.scheduled_event_id, {})
            result = _first(a.result)
            extra: Entry = {}
            if info.get("activity") == "load_policy" and isinstance(result, dict):
                extra = {"policy_version": result.get("version"), "policy_source": result.get("source")}
            elif isinstance(result, dict):
                extra = {k: v for k, v in result.items() if k in ("status_code", "outcome", "detail")}
            add(
                ev,
                f"{info.get('activity', 'activity')}_completed",
                attempts=attempts.get(a.scheduled_event_id, 1),
                **{k: v for k, v in info.items() if k in ("event_id", "event_type", "endpoint", "recipients", "cc")},
                **extra,
            )
        elif t in (EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED, EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT):
            a = (
                ev.activity_task_failed_event_attributes
                if t == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
                else ev.activity_task_timed_out_event_attributes
            )
            info = scheduled.get(a.scheduled_event_id, {})
            add(
                ev,
                f"{info.get('activity', 'activity')}_failed",
                attempts=attempts.get(a.scheduled_event_id, 1),
                error=_failure_message(a.failure),
                **{k: v for k, v in info.items() if k in ("event_id", "event_type", "endpoint")},
            )
        elif t == EventType.EVENT_TYPE_MARKER_RECORDED:
            a = ev.marker_recorded_event_attributes
            if a.marker_name == "core_local_activity":  # load_policy runs as a local activity
                data = _first(a.details["data"]) if "data" in a.details else {}
                result = _first(a.details["result"]) if "result" in a.details else None
                name = (data or {}).get("activity_type", "local_activity")
                extra = {}
                if name == "load_policy" and isinstance(result, dict):
                    extra = {"policy_version": result.get("version"), "policy_source": result.get("source")}
                add(ev, f"{name}_completed", attempts=(data or {}).get("attempt", 1), local=True, **extra)
        elif t == EventType.EVENT_TYPE_TIMER_STARTED:
            a = ev.timer_started_event_attributes
            add(
                ev,
                "timer_started",
                timer_id=a.timer_id,
                waits=iso_duration(a.start_to_fire_timeout.ToTimedelta()),
                purpose=_summary(ev),
            )
        elif t == EventType.EVENT_TYPE_TIMER_FIRED:
            add(ev, "timer_fired", timer_id=ev.timer_fired_event_attributes.timer_id)
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            a = ev.workflow_execution_signaled_event_attributes
            payload = _first(a.input)
            add(
                ev,
                "signal_received",
                _actor(payload, _CUSTOMER_ACTIONS.get(a.signal_name)),
                action=a.signal_name,
                payload=payload,
            )
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            a = ev.workflow_execution_update_accepted_event_attributes
            req = a.accepted_request
            payload = _first(req.input.args)
            updates[req.meta.update_id] = add(
                ev,
                "update_accepted",
                _actor(payload, _CUSTOMER_ACTIONS.get(req.input.name)),
                action=req.input.name,
                payload=payload,
            )
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            a = ev.workflow_execution_update_completed_event_attributes
            accepted = updates.get(a.meta.update_id, {})
            outcome = a.outcome
            if outcome.HasField("failure"):
                add(
                    ev,
                    "update_refused",
                    accepted.get("actor"),
                    action=accepted.get("detail", {}).get("action"),
                    reason=_failure_message(outcome.failure),
                )
            else:
                status = _first(outcome.success) or {}
                add(
                    ev,
                    "update_completed",
                    accepted.get("actor"),
                    action=accepted.get("detail", {}).get("action"),
                    state=status.get("state"),
                    tier=status.get("tier"),
                    department=status.get("department"),
                )
        elif t == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = ev.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            add(ev, "search_attributes", **{k: _first_payload(v) for k, v in sorted(fields.items())})
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            add(ev, "workflow_completed", summary=_first(ev.workflow_execution_completed_event_attributes.result))
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            add(
                ev,
                "continued_as_new",
                new_run_id=ev.workflow_execution_continued_as_new_event_attributes.new_execution_run_id,
            )
        elif t in (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED):
            identity = ev.workflow_execution_terminated_event_attributes.identity
            add(
                ev,
                "workflow_ended",
                f"operator:{identity or 'unknown'}"
                if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED
                else None,
                how=EventType.Name(t),
                detail=MessageToDict(ev)[
                    "workflowExecutionFailedEventAttributes"
                    if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
                    else "workflowExecutionTerminatedEventAttributes"
                ],
            )
    return out


def _actor(payload: Any, default: str | None = None) -> str | None:
    if isinstance(payload, dict) and isinstance(payload.get("actor"), dict):
        return f"{payload['actor'].get('role')}:{payload['actor'].get('id')}"
    return default


async def decode_history(history: WorkflowHistory, codec: PayloadCodec | None) -> None:
    """Undo the payload codec (encryption) in place on every payload of the history, and give encoded
    failures their message back (`workers.codec.decode_in_place`); a payload no known key opens stays
    as it is (shown as absent), the rest of the history still reads."""
    from workers.codec import decode_in_place

    await decode_in_place(history.events, codec)


def _failure_message(failure: Any) -> str:
    """A failure's message, also when the codec moved it into the encoded attributes."""
    if failure.HasField("encoded_attributes"):
        attrs = _first_payload(failure.encoded_attributes)
        if isinstance(attrs, dict) and isinstance(attrs.get("message"), str):
            return str(attrs["message"])
    return str(failure.message)


async def _run_chain(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """The histories of the ticket's runs, oldest first (continue-as-new chains them)."""
    histories: list[WorkflowHistory] = []
    run_id: str | None = None
    for _ in range(1000):  # a bound, far above any real chain
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.insert(0, history)
        first = history.events[0] if history.events else None
        previous = first.workflow_execution_started_event_attributes.continued_execution_run_id if first else ""
        if not previous:
            break
        run_id = previous
    return histories


async def audit_from_history(client: Client, workflow_id: str) -> list[Entry]:
    """History entries of every run of the ticket, merged with the workflow's own timeline, by time.

    Rows are normalized (`normalize_entry`): ready to store or render."""
    from workflows.models import Timeline

    entries: list[Entry] = []
    for history in await _run_chain(client, workflow_id):
        await decode_history(history, client.data_converter.payload_codec)
        entries += entries_from_history(history)
        run_id = history.events[0].workflow_execution_started_event_attributes.original_execution_run_id or None
        try:
            handle = client.get_workflow_handle(workflow_id, run_id=run_id)
            timeline = await handle.query("timeline", result_type=Timeline, rpc_timeout=timedelta(seconds=5))
        except RPCError:
            continue  # no worker to answer: the history alone still tells what happened
        except Exception as err:
            if type(err).__name__ != "WorkflowQueryFailedError":
                raise
            continue
        for e in timeline.events:
            entries.append(
                {
                    "at": utc_text(e.at),
                    "source": "workflow",
                    "event_id": None,
                    "kind": e.kind,
                    "actor": e.actor,
                    "detail": e.detail,
                }
            )
    return sort_entries([normalize_entry(e) for e in entries])


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


class NotInStore(LookupError):
    """Temporal has no history of the ticket, and the record store has no record of it."""


class StoreUnavailable(Exception):
    """The record store could not be read (down, unreachable, not a database): try again later.
    The message names the error's type only (a database error may carry the URL's host)."""


@dataclass
class Audit:
    """An exported timeline and where it was read from: `history` (Temporal's event history merged
    with the workflow's account), `state` (the workflow's account, by query), or `store` (the
    record store: the workflow's account as it was stored, read once Temporal's retention has
    deleted the history; `store` then says which life, how many events, whether complete)."""

    entries: list[Entry]
    read_from: Literal["history", "state", "store"]
    store: dict[str, Any] | None = field(default=None)


async def audit(
    client: Client, ticket_id: str, store_url: str, source: Literal["history", "state", "store"] = "history"
) -> Audit:
    """The ticket's audit timeline from `source`, or from the record store when Temporal no longer
    has the ticket. Raises `NotInStore` when neither has it."""
    from store.repository import shared_store
    from store.timeline import about, entries_from_store
    from workflows.models import workflow_id_for

    if source != "store":
        try:
            if source == "state":
                from api.client import TicketClient

                timeline = await TicketClient(client, "").timeline(ticket_id)
                # The same row model as every other source (the raw model is the `timeline` query's).
                rows = [{**e.model_dump(mode="json"), "source": "workflow", "event_id": None} for e in timeline.events]
                return Audit([normalize_entry(e) for e in rows], "state")
            return Audit(await audit_from_history(client, workflow_id_for(ticket_id)), "history")
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
    from sqlalchemy.exc import SQLAlchemyError

    try:
        life = await asyncio.to_thread(lambda: shared_store(store_url).life(ticket_id))
    except (SQLAlchemyError, OSError, ImportError) as err:  # ImportError: a URL for a driver not installed
        raise StoreUnavailable(f"the record store cannot be read now ({type(err).__name__})") from None
    if life is None:
        raise NotInStore(ticket_id)
    return Audit(sort_entries([normalize_entry(e) for e in entries_from_store(life)]), "store", about(life))


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


# ---------------------------------------------------------------------- one row model, three formats
# Python's str(timedelta) ("0:15:00", "1 day, 2:00:00"), as older tickets recorded targets.
_PY_DURATION = re.compile(r"^(-?\d+) days?, (\d+):(\d{2}):(\d{2})(\.\d+)?$|^(\d+):(\d{2}):(\d{2})(\.\d+)?$")
# The guards' prose durations ("0h20m") in refusal reasons.
_PROSE_DURATION = re.compile(r"\b(\d+)h(\d{2})m\b")
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


_ISO_DURATION = re.compile(r"^-?P(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")


def _as_duration(text: str) -> str | None:
    """A duration written by older code or by pydantic (`0:15:00`, `1 day, 2:00:00`, `P1DT2H`), in
    this notation (`PT15M`, `PT26H`); None when `text` is not a duration."""
    if _ISO_DURATION.match(text) and text not in ("P", "-P", "PT", "-PT"):
        from pydantic import TypeAdapter

        try:
            return iso_duration(TypeAdapter(timedelta).validate_python(text))
        except ValueError:
            return None
    m = _PY_DURATION.match(text)
    if m is None:
        return None
    if m.group(1) is not None:
        days, h, mi, sec, frac = int(m.group(1)), m.group(2), m.group(3), m.group(4), m.group(5) or ""
    else:
        days, h, mi, sec, frac = 0, m.group(6), m.group(7), m.group(8), m.group(9) or ""
    seconds = float(f"{sec}{frac}")
    return iso_duration(timedelta(days=days, hours=int(h), minutes=int(mi), seconds=seconds))


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
            return _as_duration(value) or value
        if key in ("reason", "error"):
            return _PROSE_DURATION.sub(lambda m: iso_duration(timedelta(hours=int(m[1]), minutes=int(m[2]))), value)
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


_INVISIBLE = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})  # controls, bidi overrides, zero-width, separators
_MD_SPECIAL = re.compile(r"([\\|`\[<>&])")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _visible(text: str) -> str:
    """Characters that print nothing or reorder the line, as JSON escapes (`\\u202e`)."""
    return "".join(json.dumps(ch)[1:-1] if unicodedata.category(ch) in _INVISIBLE else ch for ch in text)


def _json_text(value: Any) -> str:
    """Compact JSON with readable Unicode; invisible and direction-changing characters escaped."""
    return _visible(json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")))


def detail_text(detail: dict[str, Any]) -> str:
    """The detail as `key=<JSON value>` pairs, keys sorted: one line, parseable back."""
    return " ".join(f"{k if _PLAIN_KEY.match(k) else _json_text(k)}={_json_text(v)}" for k, v in sorted(detail.items()))


def _md_cell(text: str) -> str:
    """Safe in a Markdown table cell: pipes, HTML, links and code spans are shown as text (CommonMark
    backslash escapes), line breaks and other invisible characters as `\\uXXXX` (UTF-16, as in JSON).
    Reading the raw file: `\\` + punctuation is that punctuation; `\\u` + 4 hex digits one code unit."""
    escaped = _MD_SPECIAL.sub(r"\\\1", text)
    return "".join(_utf16_escape(ch) if unicodedata.category(ch) in _INVISIBLE else ch for ch in escaped)


def _utf16_escape(ch: str) -> str:
    data = ch.encode("utf-16-be")
    return "".join(f"\\u{int.from_bytes(data[i : i + 2], 'big'):04x}" for i in range(0, len(data), 2))


def _csv_cell(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render_timeline(
    ticket_id: str,
    entries: list[Entry],
    fmt: str,
    read_from: str | None = None,
    store: dict[str, Any] | None = None,
) -> str:
    """The same rows in JSON, CSV or Markdown (see `normalize_entry`). `read_from` (and `store`),
    when given, say where the rows were read (JSON fields, a Markdown line; CSV has only rows)."""
    rows = [normalize_entry(e) for e in entries]
    if fmt == "json":
        head: dict[str, Any] = {"ticket_id": ticket_id}
        if read_from is not None:
            head["read_from"] = read_from
        if store is not None:
            head["store"] = store
        return json.dumps({**head, "events": rows}, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)  # RFC 4180: CRLF; any field with CR, LF, comma or quote is quoted
        writer.writerow(COLUMNS)
        for e in rows:
            writer.writerow(
                [_csv_cell(e["at"]), e["source"], _csv_cell(e["kind"]), _csv_cell(e["actor"]), _json_text(e["detail"])]
            )
        return buf.getvalue()
    lines = [
        f"# Audit timeline: ticket {_md_cell(ticket_id)}",
        "",
        f"{len(rows)} events. Times in UTC; durations ISO 8601 (`PT1H30M`); details as `key=<JSON value>`.",
        "",
        *_source_lines(read_from, store),
        "| at (UTC) | source | event | actor | detail |",
        "|---|---|---|---|---|",
    ]
    for e in rows:
        cells = [e["at"], e["source"], e["kind"], e["actor"], detail_text(e["detail"])]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _source_lines(read_from: str | None, store: dict[str, Any] | None) -> list[str]:
    if read_from == "store" and store is not None:
        return [
            f"Read from the record store (Temporal no longer has the history): life {_md_cell(store['life_id'])}, "
            f"{store['events_stored']} events stored{'' if store['complete'] else ' (earlier runs missing)'}, "
            f"closed {store['closed_at'] or 'not yet'}.",
            "",
        ]
    if read_from is not None:
        return [f"Read from: {read_from}.", ""]
    return []
