"""The ticket's record for the store: numbering events, batching them, knowing what is stored.

Pure and deterministic (no Temporal import): the ticket workflow (`workflows/ticket_store_sync.py`)
feeds it every timeline event and every action as it arrives, and runs one `store_events`
activity per batch it hands out.
Events are numbered within the ticket's life (0, 1, ...) across continue-as-new, so the store
keys each row by (life, number) and a repeated write changes nothing.

Batching keeps the hot path cheap: a batch goes when its oldest event has waited `FLUSH_AFTER`,
when it is full, or at once before the ticket completes or continues as new. One batch is in
flight at a time; what happens meanwhile goes in the next.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from workflows.messages import StoreBatch, StoredEvent, TicketRecord
from workflows.models import Ticket, TimelineEvent
from workflows.state import StoreCarry, TicketState

FLUSH_AFTER = timedelta(seconds=10)
MAX_BATCH_EVENTS = 200
MAX_BATCH_BYTES = 512 * 1024
MAX_EVENT_BYTES = 128 * 1024  # an event's data beyond this is replaced by a note of its size
MAX_CARRIED_BYTES = 1024 * 1024  # unstored events carried across continue-as-new, at most
CARRY_AFTER = timedelta(minutes=2)  # a flush stuck this long (database down) no longer holds back CAN


def _size(data: Any) -> int:
    return len(json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":")).encode())


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list | bool):
        return None
    return str(value)


def _bounded(data: dict[str, Any]) -> tuple[dict[str, Any], int]:
    size = _size(data)
    if size <= MAX_EVENT_BYTES:
        return data, size
    note = {"omitted": f"{size} bytes of detail, over the store's {MAX_EVENT_BYTES}", "keys": sorted(map(str, data))}
    return note, _size(note)


class Recorder:
    def __init__(self, carry: StoreCarry | None, runs: int) -> None:
        self.next_seq = carry.next_seq if carry else 0
        self.opened_at = carry.opened_at if carry else None
        # A life whose earlier runs ran before the store is incomplete in it.
        self.complete = carry.complete if carry else runs == 1
        self.pending: list[StoredEvent] = list(carry.pending) if carry else []
        self.sizes: list[int] = [_size(e.data) for e in self.pending]
        self.since: datetime | None = None  # when the oldest pending event was buffered
        self.in_flight: int = 0  # events of the batch being written (the first ones of `pending`)
        self.flush_started: datetime | None = None
        self.closed_through: int | None = None  # the final summary is stored with events up to here

    # ------------------------------------------------------------------ what happened
    def add(self, event: StoredEvent, size: int, now: datetime) -> None:
        if not self.pending:
            self.since = now
        self.pending.append(event)
        self.sizes.append(size)

    def record_events(
        self,
        events: Sequence[TimelineEvent],
        tier: int | None,
        department: str | None,
        fallback: TicketState,
        policy_version: str,
        now: datetime,
    ) -> None:
        """Timeline events of one decision; `tier`/`department` held the ticket before it."""
        for ev in events:
            d = ev.detail
            if ev.kind == "tier_entered" and isinstance(d.get("tier"), int):
                tier, department = d["tier"], _text(d.get("department")) or department
            if ev.kind == "ticket_opened" and self.opened_at is None:
                self.opened_at = _opened_at(d.get("opened_at")) or ev.at
            data, size = _bounded(d)
            self.add(
                StoredEvent(
                    seq=self._number(),
                    stream="timeline",
                    at=ev.at,
                    kind=ev.kind,
                    actor=ev.actor,
                    rule=_text(d.get("rule")),
                    clock=_text(d.get("clock")),
                    deadline=_text(d.get("deadline")),
                    tier=tier if tier is not None else fallback.tier,
                    department=department if department is not None else fallback.department,
                    reason=_text(d.get("reason") if d.get("reason") is not None else d.get("why")),
                    policy_version=policy_version,
                    data=data,
                ),
                size,
                now,
            )

    def record_action(
        self,
        name: str,
        payload: Any,
        via: str,
        key: str | None,
        state: TicketState | None,
        policy_version: str,
        now: datetime,
        undecodable: str | None = None,
    ) -> None:
        """An agent action as it arrived (before the ticket decided on it), for replay by a backtest."""
        data: dict[str, Any] = {"action": name, "via": via, "key": key}
        if undecodable is not None:
            data["undecodable"] = undecodable
        else:
            data["payload"] = payload
        data, size = _bounded(data)
        if "omitted" in data:
            data = {"action": name, "via": via, "key": key, "payload_omitted": data["omitted"]}
            size = _size(data)
        actor = payload.get("actor") if isinstance(payload, dict) else None
        who = f"{actor.get('role')}:{actor.get('id')}" if isinstance(actor, dict) else None
        self.add(
            StoredEvent(
                seq=self._number(),
                stream="action",
                at=now,
                kind=f"action.{name}"[:100],
                actor=who,
                tier=state.tier if state else None,
                department=state.department if state else None,
                reason=_text(payload.get("reason")) if isinstance(payload, dict) else None,
                policy_version=policy_version,
                data=data,
            ),
            size,
            now,
        )

    def _number(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    # ------------------------------------------------------------------ flushing
    def waiting(self, final: bool) -> bool:
        """Something not stored yet: events, or (final) the closing summary."""
        return bool(self.pending) or (final and self.closed_through != self.next_seq)

    def due(self) -> datetime | None:
        """When the next batch should go (None: nothing waits, or a batch is in flight)."""
        if self.in_flight or not self.pending or self.since is None:
            return None
        return self.since + FLUSH_AFTER

    def should_flush(self, now: datetime, force: bool) -> bool:
        if self.flush_started is not None:
            return False
        if force:
            return True
        if not self.pending:
            return False
        if len(self.pending) >= MAX_BATCH_EVENTS or self.since is None:  # full, or carried from the last run
            return True
        return now >= self.since + FLUSH_AFTER

    def take(self, record: TicketRecord, now: datetime) -> StoreBatch:
        """The next batch: the oldest pending events, bounded in count and bytes."""
        count, total = 0, 0
        for size in self.sizes:
            if count and (count >= MAX_BATCH_EVENTS or total + size > MAX_BATCH_BYTES):
                break
            count, total = count + 1, total + size
        self.in_flight = count
        self.flush_started = now
        first = self.pending[0].seq if self.pending else self.next_seq
        return StoreBatch(record=record, first_seq=first, events=self.pending[:count])

    def stored(self, batch: StoreBatch, now: datetime) -> None:
        n = len(batch.events)
        del self.pending[:n]
        del self.sizes[:n]
        self.in_flight = 0
        self.flush_started = None
        self.since = now if self.pending else None
        if batch.record.closed_at is not None and not self.pending:
            self.closed_through = batch.first_seq + n

    def failed(self, now: datetime) -> None:
        self.in_flight = 0
        self.flush_started = None
        self.since = now  # try again after FLUSH_AFTER

    def may_carry(self, now: datetime) -> bool:
        """Continue as new with unstored events in the carried state: only when the database has
        been failing for a while (a flush stuck) and they are small enough to carry."""
        stuck = self.flush_started is not None and now - self.flush_started >= CARRY_AFTER
        return stuck and sum(self.sizes) <= MAX_CARRIED_BYTES

    def carry(self) -> StoreCarry:
        return StoreCarry(
            next_seq=self.next_seq, opened_at=self.opened_at, complete=self.complete, pending=list(self.pending)
        )


def _opened_at(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def ticket_record(
    ticket: Ticket,
    state: TicketState,
    life: str,
    workflow_id: str,
    opened_at: datetime,
    policy_version: str,
    complete: bool,
    with_ticket: bool,
    closed_at: datetime | None = None,
    summary: dict[str, Any] | None = None,
) -> TicketRecord:
    return TicketRecord(
        life_id=life,
        ticket_id=ticket.ticket_id,
        workflow_id=workflow_id,
        opened_at=opened_at,
        channel=ticket.channel.value,
        category=ticket.category,
        priority=ticket.priority.value,
        segment=ticket.customer.segment,
        source=ticket.source,
        policy_version=policy_version,
        route=state.route.route,
        state=state.state.value,
        tier=state.tier,
        department=state.department,
        current_priority=state.priority.value,
        assignee=state.assignee,
        escalations=state.escalations,
        breaches=state.breaches,
        first_response_at=state.first_response_at,
        resolved_at=state.resolved_at,
        closed_at=closed_at,
        summary=summary,
        ticket=ticket.model_dump(mode="json") if with_ticket else None,
        complete=complete,
    )
