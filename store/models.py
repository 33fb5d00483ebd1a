"""The store's tables (SQLAlchemy 2 declarative models). Changes go through an Alembic migration.

`tickets`: one row per life of a ticket (`life_id` = the first run id of its workflow chain; a
ticket id opened again after it closed is a new life). `ticket_events`: one row per event of a
life, numbered from 0 (`seq`), across continue-as-new; (`life_id`, `seq`) is the key that makes
every write idempotent.

`stream` tells the two kinds of event rows apart:
- `timeline`: the rows of the exported audit timeline, as the workflow recorded them (its own
  account: rule, clock, deadline, reason, notification outcomes, ...);
- `action`: each agent action as it arrived (name, payload, signal or update, idempotency key),
  accepted or refused, so a backtest can replay the ticket under another policy.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, ForeignKey, Index, Integer, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# JSON kept as written (PostgreSQL `json`, not `jsonb`, which would reorder an event's detail keys: the
# timeline read back must equal the one exported before). `->>` works on both databases.
Json = JSON()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every database (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class TicketRow(Base):
    __tablename__ = "tickets"

    life_id: Mapped[str] = mapped_column(String(64), primary_key=True, comment="first run id of the workflow chain")
    ticket_id: Mapped[str] = mapped_column(String(200), index=True)
    workflow_id: Mapped[str] = mapped_column(String(255))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    channel: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(100))
    priority: Mapped[str] = mapped_column(String(32), comment="priority as opened")
    segment: Mapped[str] = mapped_column(String(64), comment="customer segment")
    source: Mapped[str] = mapped_column(String(100), default="unknown")
    policy_version: Mapped[str] = mapped_column(String(200), index=True)
    route: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Where the ticket is now (as of the last stored event).
    state: Mapped[str] = mapped_column(String(32))
    tier: Mapped[int] = mapped_column(Integer)
    department: Mapped[str] = mapped_column(String(200), index=True)
    current_priority: Mapped[str] = mapped_column(String(32))
    assignee: Mapped[str | None] = mapped_column(String(200), nullable=True)
    escalations: Mapped[int] = mapped_column(Integer, default=0)
    breaches: Mapped[int] = mapped_column(Integer, default=0)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, index=True, comment="set when the workflow completed"
    )
    summary: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True, comment="TicketSummary at close")
    ticket: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True, comment="the ticket as opened")
    events_stored: Mapped[int] = mapped_column(Integer, default=0, comment="events 0..n-1 of this life are stored")
    complete: Mapped[bool] = mapped_column(
        default=True, comment="false: the life began before the store (earlier runs are not in it)"
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EventRow(Base):
    __tablename__ = "ticket_events"

    life_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("tickets.life_id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, comment="event number within the life, from 0")
    ticket_id: Mapped[str] = mapped_column(String(200))
    stream: Mapped[str] = mapped_column(String(16), comment="timeline | action")
    at: Mapped[datetime] = mapped_column(UTCDateTime(), comment="when it happened (UTC)")
    kind: Mapped[str] = mapped_column(String(100))
    actor: Mapped[str | None] = mapped_column(String(300), nullable=True)
    rule: Mapped[str | None] = mapped_column(String(300), nullable=True)
    clock: Mapped[str | None] = mapped_column(String(32), nullable=True)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    tier: Mapped[int | None] = mapped_column(Integer, nullable=True, comment="tier holding the ticket at the event")
    department: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    policy_version: Mapped[str | None] = mapped_column(String(200), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(Json, comment="the full detail (timeline) or the action")
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_ticket_events_ticket_id", "ticket_id"),
        Index("ix_ticket_events_kind_at", "kind", "at"),
        Index("ix_ticket_events_at", "at"),
    )
