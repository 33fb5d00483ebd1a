"""The ticket record store, on SQLite and on a real PostgreSQL: schema, idempotent writes, and the
workflow writing every event of a ticket before it completes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.testing import WorkflowEnvironment

from store.repository import Store
from store.timeline import entries_from_store
from tests.conftest import policy_doc
from tests.helpers import AGENT, ticket
from tests.receiver import Receiver
from workflows.messages import StoreBatch, StoredEvent, TicketRecord
from workflows.models import Timeline

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def workflow_entries(timeline: Timeline) -> list[dict[str, Any]]:
    """The workflow's own timeline as the export shows it (rows `source: workflow`, by time)."""
    rows = [
        {
            "at": e.at.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z",
            "source": "workflow",
            "event_id": None,
            "kind": e.kind,
            "actor": e.actor,
            "detail": e.model_dump(mode="json")["detail"],
        }
        for e in timeline.events
    ]
    return sorted(rows, key=lambda row: row["at"])


def record(**fields: Any) -> TicketRecord:
    base: dict[str, Any] = {
        "life_id": "life-1",
        "ticket_id": "T-1",
        "workflow_id": "ticket-T-1",
        "opened_at": T0,
        "channel": "email",
        "category": "billing",
        "priority": "high",
        "segment": "vip",
        "policy_version": "v1+abc",
        "state": "new",
        "tier": 1,
        "department": "billing",
        "current_priority": "high",
    }
    base.update(fields)
    return TicketRecord.model_validate(base)


def event(seq: int, **fields: Any) -> StoredEvent:
    base: dict[str, Any] = {"seq": seq, "at": T0 + timedelta(minutes=seq), "kind": "ladder_step", "data": {"n": seq}}
    base.update(fields)
    return StoredEvent.model_validate(base)


def test_writes_are_idempotent_and_the_summary_only_moves_forward(store_url: str) -> None:
    store = Store(store_url)
    try:
        assert store.migrate() == store.head() == "0002"
        assert store.migrate() == "0002"  # again: nothing to do
        first = StoreBatch(record=record(ticket={"ticket_id": "T-1"}), first_seq=0, events=[event(0), event(1)])
        assert store.write(first).written == 2
        again = store.write(first)  # a retried flush
        assert (again.written, again.duplicates) == (0, 2)
        later = StoreBatch(
            record=record(state="resolved", tier=2, closed_at=T0 + timedelta(hours=1), summary={"breaches": 1}),
            first_seq=2,
            events=[
                event(2, kind="sla_breached", clock="resolution", deadline=(T0 + timedelta(minutes=30)).isoformat()),
                # What PostgreSQL refuses as text, and values longer than their columns: cleaned and cut.
                event(3, kind="x" * 500, actor="a\x00b", reason="why\x00", data={"note": "nul\x00", "k\x00": "\ud800"}),
            ],
        )
        assert store.write(later).written == 2
        # A stale attempt of the first batch arriving late (a zombie activity) changes nothing.
        assert store.write(first).written == 0
        life = store.life("T-1")
        assert life is not None
        assert life.ticket.state == "resolved" and life.ticket.tier == 2 and life.ticket.events_stored == 4
        assert life.ticket.ticket == {"ticket_id": "T-1"}  # sent once, with the first batch, kept
        assert life.ticket.closed_at == T0 + timedelta(hours=1)
        assert [e.seq for e in life.events] == [0, 1, 2, 3]
        assert life.events[2].deadline == T0 + timedelta(minutes=30) and life.events[2].clock == "resolution"
        assert life.events[0].at == T0 and life.events[0].at.tzinfo is not None
        assert len(life.events[3].kind) == 100 and life.events[3].actor == "a\ufffdb"
        assert life.events[3].data == {"note": "nul\ufffd", "k\ufffd": "?"}
        assert [e.seq for e in store.events(kinds=["sla_breached"])] == [2]
        assert [t.life_id for t in store.tickets(opened_since=T0)] == ["life-1"]
    finally:
        store.dispose()


async def test_every_event_of_a_ticket_is_stored_before_it_completes(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any, store_url: str
) -> None:
    async with make_harness(ts_env, receiver, policy_doc(reopen_window="PT1M"), store_url=store_url) as h:
        t = ticket(priority="urgent")
        await h.tickets.open(t)
        await ts_env.sleep(timedelta(hours=3))  # breaches, escalations, notices
        await h.tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})
        await h.tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "fixed"})
        await ts_env.sleep(timedelta(minutes=2))  # the reopen window
        summary = await h.tickets.handle(t.ticket_id).result()
        timeline = await h.tickets.timeline(t.ticket_id)
    store = Store(store_url)
    try:
        life = store.life(t.ticket_id)
        assert life is not None
        assert life.ticket.closed_at is not None and life.ticket.summary is not None
        assert life.ticket.summary["breaches"] == summary["breaches"] > 0
        assert life.ticket.ticket is not None and life.ticket.ticket["ticket_id"] == t.ticket_id
        assert entries_from_store(life) == workflow_entries(timeline)
        everything = store.events([life.ticket.life_id])
        assert [e.seq for e in everything] == list(range(life.ticket.events_stored))
        actions = [e for e in everything if e.stream == "action"]
        assert [a.kind for a in actions] == ["action.acknowledge", "action.resolve"]
        assert actions[1].data["payload"]["resolution"] == "fixed"
        breach = next(e for e in everything if e.kind == "sla_breached")
        assert breach.clock in ("first_response", "resolution") and breach.deadline is not None
        assert breach.tier is not None and breach.department and breach.policy_version
    finally:
        store.dispose()
