"""tickets and ticket_events

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.models import Json, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("life_id", sa.String(64), primary_key=True, comment="first run id of the workflow chain"),
        sa.Column("ticket_id", sa.String(200), nullable=False),
        sa.Column("workflow_id", sa.String(255), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("priority", sa.String(32), nullable=False, comment="priority as opened"),
        sa.Column("segment", sa.String(64), nullable=False, comment="customer segment"),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("policy_version", sa.String(200), nullable=False),
        sa.Column("route", sa.String(200), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("department", sa.String(200), nullable=False),
        sa.Column("current_priority", sa.String(32), nullable=False),
        sa.Column("assignee", sa.String(200), nullable=True),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.Column("breaches", sa.Integer(), nullable=False),
        sa.Column("first_response_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("closed_at", UTCDateTime(), nullable=True, comment="set when the workflow completed"),
        sa.Column("summary", Json, nullable=True, comment="TicketSummary at close"),
        sa.Column("ticket", Json, nullable=True, comment="the ticket as opened"),
        sa.Column("events_stored", sa.Integer(), nullable=False, comment="events 0..n-1 of this life are stored"),
        sa.Column(
            "complete",
            sa.Boolean(),
            nullable=False,
            comment="false: the life began before the store (earlier runs are not in it)",
        ),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_tickets_ticket_id", "tickets", ["ticket_id"])
    op.create_index("ix_tickets_opened_at", "tickets", ["opened_at"])
    op.create_index("ix_tickets_policy_version", "tickets", ["policy_version"])
    op.create_index("ix_tickets_department", "tickets", ["department"])
    op.create_index("ix_tickets_closed_at", "tickets", ["closed_at"])
    op.create_table(
        "ticket_events",
        sa.Column(
            "life_id",
            sa.String(64),
            sa.ForeignKey("tickets.life_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer(), primary_key=True, comment="event number within the life, from 0"),
        sa.Column("ticket_id", sa.String(200), nullable=False),
        sa.Column("stream", sa.String(16), nullable=False, comment="timeline | action"),
        sa.Column("at", UTCDateTime(), nullable=False, comment="when it happened (UTC)"),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("actor", sa.String(300), nullable=True),
        sa.Column("rule", sa.String(300), nullable=True),
        sa.Column("clock", sa.String(32), nullable=True),
        sa.Column("deadline", UTCDateTime(), nullable=True),
        sa.Column("tier", sa.Integer(), nullable=True, comment="tier holding the ticket at the event"),
        sa.Column("department", sa.String(200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("policy_version", sa.String(200), nullable=True),
        sa.Column("data", Json, nullable=False, comment="the full detail (timeline) or the action"),
        sa.Column("stored_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_ticket_events_ticket_id", "ticket_events", ["ticket_id"])
    op.create_index("ix_ticket_events_kind_at", "ticket_events", ["kind", "at"])
    op.create_index("ix_ticket_events_at", "ticket_events", ["at"])


def downgrade() -> None:
    op.drop_table("ticket_events")
    op.drop_table("tickets")
