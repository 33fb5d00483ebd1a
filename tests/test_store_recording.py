"""The recorder on its own (no Temporal): numbering, batching bounds, oversized events, what waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from workflows import recording
from workflows.messages import TicketRecord
from workflows.models import TimelineEvent
from workflows.recording import Recorder
from workflows.state import StoreCarry

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def rec() -> TicketRecord:
    return TicketRecord.model_validate(
        {
            "life_id": "l",
            "ticket_id": "T",
            "workflow_id": "ticket-T",
            "opened_at": T0,
            "channel": "email",
            "category": "c",
            "priority": "normal",
            "segment": "standard",
            "policy_version": "v",
            "state": "new",
            "tier": 1,
            "department": "support",
            "current_priority": "normal",
        }
    )


def events(sizes: list[int]) -> list[TimelineEvent]:
    return [TimelineEvent(at=T0, kind="note", detail={"text": "x" * size}) for size in sizes]


class _State:  # what record_events reads of the state when no tier is known
    tier = 1
    department = "support"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=300_000), min_size=1, max_size=400))
def test_batches_number_every_event_once_in_order_and_stay_bounded(sizes: list[int]) -> None:
    r = Recorder(None, runs=1)
    r.record_events(events(sizes), 1, "support", _State(), "v", T0)  # type: ignore[arg-type]
    seen: list[int] = []
    omitted: list[int] = []
    while r.pending:
        batch = r.take(rec(), T0)
        assert 1 <= len(batch.events) <= recording.MAX_BATCH_EVENTS
        total = sum(recording._size(e.data) for e in batch.events)
        assert len(batch.events) == 1 or total <= recording.MAX_BATCH_BYTES
        assert all(recording._size(e.data) <= recording.MAX_EVENT_BYTES for e in batch.events)
        seen += [e.seq for e in batch.events]
        omitted += [e.seq for e in batch.events if "omitted" in e.data]
        r.stored(batch, T0)
    assert seen == list(range(len(sizes)))
    # Oversized ones are kept, as a note of their size.
    assert omitted == [
        i for i, size in enumerate(sizes) if recording._size({"text": "x" * size}) > recording.MAX_EVENT_BYTES
    ]


def test_an_oversized_action_keeps_its_name_and_says_what_was_left_out() -> None:
    r = Recorder(None, runs=1)
    r.record_action(
        "acknowledge", {"actor": {"id": "a", "role": "agent"}, "note": "x" * 500_000}, "signal", None, None, "v", T0
    )
    event = r.pending[0]
    assert event.kind == "action.acknowledge" and event.actor == "agent:a"
    assert "payload" not in event.data and "500" in event.data["payload_omitted"]


def test_a_flush_waits_ten_seconds_or_goes_at_once_when_forced() -> None:
    r = Recorder(None, runs=1)
    assert not r.should_flush(T0, force=False) and r.should_flush(T0, force=True)
    r.record_events(events([1]), 1, "support", _State(), "v", T0)  # type: ignore[arg-type]
    assert r.due() == T0 + recording.FLUSH_AFTER
    assert not r.should_flush(T0 + timedelta(seconds=9), force=False)
    assert r.should_flush(T0 + timedelta(seconds=10), force=False)
    batch = r.take(rec(), T0)
    assert r.due() is None and not r.should_flush(T0 + timedelta(hours=1), force=True)  # one at a time
    # The database down for minutes: the events may be carried across continue-as-new.
    assert not r.may_carry(T0 + timedelta(minutes=1)) and r.may_carry(T0 + timedelta(minutes=3))
    carried = Recorder(StoreCarry.model_validate(r.carry().model_dump()), runs=2)
    assert [e.seq for e in carried.pending] == [0] and carried.next_seq == 1
    assert carried.should_flush(T0, force=False)  # carried events go at the next run's first chance
    r.stored(batch, T0)
    assert not r.waiting(final=False) and r.waiting(final=True)  # the closing summary is still owed
