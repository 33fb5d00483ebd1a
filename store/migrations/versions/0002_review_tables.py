"""the review's tables: policy_calendars, review_tickets, review_items

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.models import Json, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# review_tickets' yes/no columns (see store/review_models.py for what each means).
FLAGS = [
    "is_open",
    "reached_person",
    "resolved_once",
    "reopened",
    "first_tier",
    "self_service",
    "deflected",
    "fr_started",
    "fr_breached",
    "res_started",
    "res_breached",
    "breached",
    "functional",
    "hierarchical",
    "ladder",
    "manual",
]


def upgrade() -> None:
    op.create_table(
        "policy_calendars",
        sa.Column("policy_version", sa.String(200), primary_key=True),
        sa.Column("year", sa.Integer(), primary_key=True, comment="the holiday year the tickets froze"),
        sa.Column("calendars", Json, nullable=False, comment="calendar name -> Calendar, holidays expanded"),
        sa.Column("stored_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "review_tickets",
        sa.Column("life_id", sa.String(64), sa.ForeignKey("tickets.life_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("derived_from", sa.Integer(), nullable=False, comment="events_stored of the life when derived"),
        sa.Column("final", sa.Boolean(), nullable=False, comment="the life was closed: this row stays as it is"),
        sa.Column("basis", sa.String(80), nullable=False, comment="derivation version and calendars it was derived on"),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("opened_day", sa.String(10), nullable=False, comment="UTC date of opened_at, YYYY-MM-DD"),
        sa.Column("ticket_id", sa.String(200), nullable=False),
        sa.Column("department", sa.String(200), nullable=False),
        sa.Column("tier", sa.String(8), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("priority", sa.String(32), nullable=False),
        sa.Column("policy_version", sa.String(200), nullable=False),
        *(sa.Column(name, sa.Boolean(), nullable=False) for name in FLAGS),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.Column("departments", sa.Integer(), nullable=False),
        sa.Column("assignees", sa.Integer(), nullable=False),
        sa.Column("first_response_s", sa.Float(), nullable=True),
        sa.Column("resolution_s", sa.Float(), nullable=True),
        sa.Column("paused_s", sa.Float(), nullable=True, comment="null when it never paused"),
    )
    op.create_index("ix_review_tickets_opened_at", "review_tickets", ["opened_at"])
    op.create_index("ix_review_tickets_final", "review_tickets", ["final"])
    op.create_table(
        "review_items",
        sa.Column(
            "life_id",
            sa.String(64),
            sa.ForeignKey("review_tickets.life_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("n", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False, comment="the life's, to select a period"),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("sub", sa.String(32), nullable=True),
        sa.Column("trigger", sa.String(16), nullable=True),
        sa.Column("tier", sa.Integer(), nullable=True),
        sa.Column("department", sa.String(200), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("share", sa.Float(), nullable=True),
        sa.Column("breaches", sa.Integer(), nullable=True),
    )
    op.create_index("ix_review_items_kind_opened_at", "review_items", ["kind", "opened_at"])


def downgrade() -> None:
    op.drop_table("review_items")
    op.drop_table("review_tickets")
    op.drop_table("policy_calendars")
