"""Reading a ticket's Temporal event history into audit rows: one handler per event type (`_HANDLERS`).

The history is the record Temporal keeps whatever the workflow code says about itself: every signal
and update with its payload and outcome, every timer with its label, every activity with its input,
attempts and result, every search-attribute change. Rows come out in history order, not yet
normalized (`api/export/normalize.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Any

from google.protobuf.json_format import MessageToDict
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import PayloadCodec

from api.export.normalize import Entry, utc_text
from workflows.durations import iso_duration

_CONVERTER = pydantic_data_converter.payload_converter
_CUSTOMER_ACTIONS = {"customer_replied": "customer", "confirm_solved": "customer"}


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


def _actor(payload: Any, default: str | None = None) -> str | None:
    if isinstance(payload, dict) and isinstance(payload.get("actor"), dict):
        return f"{payload['actor'].get('role')}:{payload['actor'].get('id')}"
    return default


def _failure_message(failure: Any) -> str:
    """A failure's message, also when the codec moved it into the encoded attributes."""
    if failure.HasField("encoded_attributes"):
        attrs = _first_payload(failure.encoded_attributes)
        if isinstance(attrs, dict) and isinstance(attrs.get("message"), str):
            return str(attrs["message"])
    return str(failure.message)


async def decode_history(history: WorkflowHistory, codec: PayloadCodec | None) -> None:
    """Undo the payload codec (encryption) in place on every payload of the history, and give encoded
    failures their message back (`workers.codec.decode_in_place`); a payload no known key opens stays
    as it is (shown as absent), the rest of the history still reads."""
    from workers.codec import decode_in_place

    await decode_in_place(history.events, codec)


def entries_from_history(history: WorkflowHistory) -> list[Entry]:
    """One audit entry per meaningful history event, in history order."""
    reader = _Reader()
    for ev in history.events:
        handler = _HANDLERS.get(ev.event_type)
        if handler is not None:
            handler(reader, ev)
    return reader.out


class _Reader:
    """The rows so far, and what later events refer back to (scheduled activities, their attempts,
    accepted updates)."""

    def __init__(self) -> None:
        self.out: list[Entry] = []
        self.scheduled: dict[int, Entry] = {}
        self.attempts: dict[int, int] = {}
        self.updates: dict[str, Entry] = {}

    def add(self, event: HistoryEvent, kind: str, actor: str | None = None, **detail: Any) -> Entry:
        entry = {
            "at": utc_text(event.event_time.ToDatetime().replace(tzinfo=UTC)),
            "source": "history",
            "event_id": event.event_id,
            "kind": kind,
            "actor": actor,
            "detail": detail,
        }
        self.out.append(entry)
        return entry

    def workflow_started(self, ev: HistoryEvent) -> None:
        a = ev.workflow_execution_started_event_attributes
        started_ticket = _first(a.input)
        source = started_ticket.get("source") if isinstance(started_ticket, dict) else None
        self.add(
            ev,
            "workflow_started",
            f"source:{source or 'unknown'}" if not a.continued_execution_run_id else None,
            ticket=started_ticket,
            task_queue=a.task_queue.name,
            continued_from=a.continued_execution_run_id or None,
        )

    def activity_scheduled(self, ev: HistoryEvent) -> None:
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
        self.scheduled[ev.event_id] = info
        self.add(ev, f"{a.activity_type.name}_scheduled", **info)

    def activity_started(self, ev: HistoryEvent) -> None:
        a = ev.activity_task_started_event_attributes
        self.attempts[a.scheduled_event_id] = a.attempt

    def activity_completed(self, ev: HistoryEvent) -> None:
        a = ev.activity_task_completed_event_attributes
        info = self.scheduled.get(a.scheduled_event_id, {})
        result = _first(a.result)
        extra: Entry = {}
        if info.get("activity") == "load_policy" and isinstance(result, dict):
            extra = {"policy_version": result.get("version"), "policy_source": result.get("source")}
        elif isinstance(result, dict):
            extra = {k: v for k, v in result.items() if k in ("status_code", "outcome", "detail")}
        self.add(
            ev,
            f"{info.get('activity', 'activity')}_completed",
            attempts=self.attempts.get(a.scheduled_event_id, 1),
            **{k: v for k, v in info.items() if k in ("event_id", "event_type", "endpoint", "recipients", "cc")},
            **extra,
        )

    def activity_failed(self, ev: HistoryEvent) -> None:
        a: Any = (
            ev.activity_task_failed_event_attributes
            if ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
            else ev.activity_task_timed_out_event_attributes
        )
        info = self.scheduled.get(a.scheduled_event_id, {})
        self.add(
            ev,
            f"{info.get('activity', 'activity')}_failed",
            attempts=self.attempts.get(a.scheduled_event_id, 1),
            error=_failure_message(a.failure),
            **{k: v for k, v in info.items() if k in ("event_id", "event_type", "endpoint")},
        )

    def marker_recorded(self, ev: HistoryEvent) -> None:
        a = ev.marker_recorded_event_attributes
        if a.marker_name != "core_local_activity":  # load_policy runs as a local activity
            return
        data = _first(a.details["data"]) if "data" in a.details else {}
        result = _first(a.details["result"]) if "result" in a.details else None
        name = (data or {}).get("activity_type", "local_activity")
        extra = {}
        if name == "load_policy" and isinstance(result, dict):
            extra = {"policy_version": result.get("version"), "policy_source": result.get("source")}
        self.add(ev, f"{name}_completed", attempts=(data or {}).get("attempt", 1), local=True, **extra)

    def timer_started(self, ev: HistoryEvent) -> None:
        a = ev.timer_started_event_attributes
        self.add(
            ev,
            "timer_started",
            timer_id=a.timer_id,
            waits=iso_duration(a.start_to_fire_timeout.ToTimedelta()),
            purpose=_summary(ev),
        )

    def timer_fired(self, ev: HistoryEvent) -> None:
        self.add(ev, "timer_fired", timer_id=ev.timer_fired_event_attributes.timer_id)

    def signaled(self, ev: HistoryEvent) -> None:
        a = ev.workflow_execution_signaled_event_attributes
        payload = _first(a.input)
        self.add(
            ev,
            "signal_received",
            _actor(payload, _CUSTOMER_ACTIONS.get(a.signal_name)),
            action=a.signal_name,
            payload=payload,
        )

    def update_accepted(self, ev: HistoryEvent) -> None:
        req = ev.workflow_execution_update_accepted_event_attributes.accepted_request
        payload = _first(req.input.args)
        self.updates[req.meta.update_id] = self.add(
            ev,
            "update_accepted",
            _actor(payload, _CUSTOMER_ACTIONS.get(req.input.name)),
            action=req.input.name,
            payload=payload,
        )

    def update_completed(self, ev: HistoryEvent) -> None:
        a = ev.workflow_execution_update_completed_event_attributes
        accepted = self.updates.get(a.meta.update_id, {})
        outcome = a.outcome
        if outcome.HasField("failure"):
            self.add(
                ev,
                "update_refused",
                accepted.get("actor"),
                action=accepted.get("detail", {}).get("action"),
                reason=_failure_message(outcome.failure),
            )
            return
        status = _first(outcome.success) or {}
        self.add(
            ev,
            "update_completed",
            accepted.get("actor"),
            action=accepted.get("detail", {}).get("action"),
            state=status.get("state"),
            tier=status.get("tier"),
            department=status.get("department"),
        )

    def search_attributes(self, ev: HistoryEvent) -> None:
        fields = ev.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
        self.add(ev, "search_attributes", **{k: _first_payload(v) for k, v in sorted(fields.items())})

    def workflow_completed(self, ev: HistoryEvent) -> None:
        self.add(ev, "workflow_completed", summary=_first(ev.workflow_execution_completed_event_attributes.result))

    def continued_as_new(self, ev: HistoryEvent) -> None:
        self.add(
            ev,
            "continued_as_new",
            new_run_id=ev.workflow_execution_continued_as_new_event_attributes.new_execution_run_id,
        )

    def workflow_ended(self, ev: HistoryEvent) -> None:
        t = ev.event_type
        identity = ev.workflow_execution_terminated_event_attributes.identity
        self.add(
            ev,
            "workflow_ended",
            f"operator:{identity or 'unknown'}" if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED else None,
            how=EventType.Name(t),
            detail=MessageToDict(ev)[
                "workflowExecutionFailedEventAttributes"
                if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
                else "workflowExecutionTerminatedEventAttributes"
            ],
        )


_HANDLERS: dict[EventType.ValueType, Callable[[_Reader, HistoryEvent], None]] = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: _Reader.workflow_started,
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: _Reader.activity_scheduled,
    EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: _Reader.activity_started,
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: _Reader.activity_completed,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: _Reader.activity_failed,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: _Reader.activity_failed,
    EventType.EVENT_TYPE_MARKER_RECORDED: _Reader.marker_recorded,
    EventType.EVENT_TYPE_TIMER_STARTED: _Reader.timer_started,
    EventType.EVENT_TYPE_TIMER_FIRED: _Reader.timer_fired,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: _Reader.signaled,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: _Reader.update_accepted,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED: _Reader.update_completed,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: _Reader.search_attributes,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: _Reader.workflow_completed,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: _Reader.continued_as_new,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: _Reader.workflow_ended,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: _Reader.workflow_ended,
}
