"""The audit timeline: what happened to a ticket and why, from its Temporal event history.

The history is the record Temporal keeps whatever the workflow code says about itself, so the
export starts there: every signal and update with its payload and outcome, every timer with its
label, every activity with its input, attempts and result, every search-attribute change. The
workflow's own timeline (its interpretation: which rule fired, which clock paused) is merged in,
marked `source: workflow`, when a worker can answer the query.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, timedelta
from typing import Any

from google.protobuf.json_format import MessageToDict
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

Entry = dict[str, Any]
_CONVERTER = pydantic_data_converter.payload_converter


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
            "at": event.event_time.ToDatetime().isoformat() + "Z",
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
            add(
                ev,
                "workflow_started",
                ticket=_first(a.input),
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
                error=a.failure.message,
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
                waits=str(a.start_to_fire_timeout.ToTimedelta()),
                purpose=_summary(ev),
            )
        elif t == EventType.EVENT_TYPE_TIMER_FIRED:
            add(ev, "timer_fired", timer_id=ev.timer_fired_event_attributes.timer_id)
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            a = ev.workflow_execution_signaled_event_attributes
            payload = _first(a.input)
            add(ev, "signal_received", _actor(payload), action=a.signal_name, payload=payload)
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            a = ev.workflow_execution_update_accepted_event_attributes
            req = a.accepted_request
            payload = _first(req.input.args)
            updates[req.meta.update_id] = add(
                ev, "update_accepted", _actor(payload), action=req.input.name, payload=payload
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
                    reason=outcome.failure.message,
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
            add(
                ev,
                "workflow_ended",
                how=EventType.Name(t),
                detail=MessageToDict(ev)[
                    "workflowExecutionFailedEventAttributes"
                    if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
                    else "workflowExecutionTerminatedEventAttributes"
                ],
            )
    return out


def _actor(payload: Any) -> str | None:
    if isinstance(payload, dict) and isinstance(payload.get("actor"), dict):
        return f"{payload['actor'].get('role')}:{payload['actor'].get('id')}"
    return None


async def audit_from_history(client: Client, workflow_id: str) -> list[Entry]:
    """History entries of every run of the ticket, merged with the workflow's own timeline, by time."""
    handle = client.get_workflow_handle(workflow_id)
    history = await handle.fetch_history()
    entries = entries_from_history(history)
    try:
        from workflows.models import Timeline

        timeline = await handle.query("timeline", result_type=Timeline, rpc_timeout=timedelta(seconds=5))
        for e in timeline.events:
            entries.append(
                {
                    "at": e.at.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z",
                    "source": "workflow",
                    "event_id": None,
                    "kind": e.kind,
                    "actor": e.actor,
                    "detail": e.detail,
                }
            )
    except RPCError:
        pass  # no worker to answer: the history alone still tells what happened
    except Exception as err:
        if type(err).__name__ != "WorkflowQueryFailedError":
            raise
    order = {"history": 0, "workflow": 1}
    return sorted(entries, key=lambda e: (e["at"], order[e.get("source", "workflow")]))


def render_timeline(ticket_id: str, entries: list[Entry], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"ticket_id": ticket_id, "events": entries}, indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["at", "source", "kind", "actor", "detail"])
        for e in entries:
            writer.writerow(
                [
                    e["at"],
                    e.get("source", "workflow"),
                    e["kind"],
                    e.get("actor") or "",
                    json.dumps(e.get("detail") or {}, sort_keys=True, default=str),
                ]
            )
        return buf.getvalue()
    lines = [
        f"# Audit timeline: ticket {ticket_id}",
        "",
        "| at (UTC) | source | event | actor | detail |",
        "|---|---|---|---|---|",
    ]
    for e in entries:
        detail = ", ".join(f"{k}={v}" for k, v in (e.get("detail") or {}).items() if v not in (None, [], {}, ""))
        source, actor = e.get("source", "workflow"), e.get("actor") or ""
        lines.append(f"| {e['at']} | {source} | {e['kind']} | {actor} | {detail.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
