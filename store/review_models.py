"""The review's own tables: what a year-long review needs to count in the database.

`policy_calendars`: the business calendars each policy version froze into its tickets, per holiday
year (written by the worker when it first freezes that version), so the review counts each ticket's
business time on its own calendars. `review_tickets` and `review_items`: each life's derivation
(`review.derive`), one row per life and one per breach, escalation, ownership period and ladder
step, written by the review itself (`review.materialize`) and kept until the life's stored events
change. The review's aggregates are SQL over these; only open lives are derived again per review.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from store.models import Base, Json, UTCDateTime


class PolicyCalendarsRow(Base):
    __tablename__ = "policy_calendars"

    policy_version: Mapped[str] = mapped_column(String(200), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True, comment="the holiday year the tickets froze")
    calendars: Mapped[dict[str, Any]] = mapped_column(Json, comment="calendar name -> Calendar, holidays expanded")
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ReviewTicketRow(Base):
    __tablename__ = "review_tickets"

    life_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("tickets.life_id", ondelete="CASCADE"), primary_key=True
    )
    derived_from: Mapped[int] = mapped_column(Integer, comment="events_stored of the life when derived")
    final: Mapped[bool] = mapped_column(Boolean, comment="the life was closed: this row stays as it is")
    basis: Mapped[str] = mapped_column(String(80), comment="derivation version and calendars it was derived on")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    opened_day: Mapped[str] = mapped_column(String(10), comment="UTC date of opened_at, YYYY-MM-DD")
    ticket_id: Mapped[str] = mapped_column(String(200))
    # The dimensions a review groups by, as `TicketReview.group_key` writes them.
    department: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(100))
    priority: Mapped[str] = mapped_column(String(32))
    policy_version: Mapped[str] = mapped_column(String(200))
    is_open: Mapped[bool] = mapped_column(Boolean)
    reached_person: Mapped[bool] = mapped_column(Boolean)
    resolved_once: Mapped[bool] = mapped_column(Boolean)
    reopened: Mapped[bool] = mapped_column(Boolean)
    first_tier: Mapped[bool] = mapped_column(Boolean, comment="reached a person, resolved, never hierarchical")
    self_service: Mapped[bool] = mapped_column(Boolean)
    deflected: Mapped[bool] = mapped_column(Boolean)
    fr_started: Mapped[bool] = mapped_column(Boolean)
    fr_breached: Mapped[bool] = mapped_column(Boolean)
    res_started: Mapped[bool] = mapped_column(Boolean)
    res_breached: Mapped[bool] = mapped_column(Boolean)
    breached: Mapped[bool] = mapped_column(Boolean)
    escalations: Mapped[int] = mapped_column(Integer)
    functional: Mapped[bool] = mapped_column(Boolean)
    hierarchical: Mapped[bool] = mapped_column(Boolean)
    ladder: Mapped[bool] = mapped_column(Boolean)
    manual: Mapped[bool] = mapped_column(Boolean)
    departments: Mapped[int] = mapped_column(Integer)
    assignees: Mapped[int] = mapped_column(Integer)
    first_response_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    resolution_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    paused_s: Mapped[float | None] = mapped_column(Float, nullable=True, comment="null when it never paused")

    __table_args__ = (Index("ix_review_tickets_opened_at", "opened_at"), Index("ix_review_tickets_final", "final"))


class ReviewItemRow(Base):
    """kind `breach` (sub: clock, seconds past the deadline), `escalation` (label: reason, sub: kind,
    trigger), `period` (tier, department, business seconds, share of SLA, breaches) or `ladder` (label: rule)."""

    __tablename__ = "review_items"

    life_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("review_tickets.life_id", ondelete="CASCADE"), primary_key=True
    )
    n: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), comment="the life's, to select a period")
    label: Mapped[str | None] = mapped_column(Text, nullable=True)
    sub: Mapped[str | None] = mapped_column(String(32), nullable=True)
    trigger: Mapped[str | None] = mapped_column(String(16), nullable=True)
    tier: Mapped[int | None] = mapped_column(Integer, nullable=True)
    department: Mapped[str | None] = mapped_column(String(200), nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    share: Mapped[float | None] = mapped_column(Float, nullable=True)
    breaches: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (Index("ix_review_items_kind_opened_at", "kind", "opened_at"),)
