"""Pending callbacks, kept where an empty Redis cannot lose them

A contact who presses 1 on hold is promised a call back; until its log is written
the callback lived only in Redis, and a Redis that came back empty (flushed, or
restarted without persistence) lost it: never placed, never logged. Each callback
asked for is now also a row here, deleted with the writing of its call's log, and
put back in its queue from here when Redis has lost it (`routing.redis_restarts`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table (empty: the callbacks pending now are in Redis, and stay there)."""
    op.create_table(
        "pending_callbacks",
        sa.Column("call_sid", sa.String(), nullable=False),
        sa.Column("contact_id", sa.String(), nullable=False),
        sa.Column("district_id", sa.String(), nullable=True),
        sa.Column("case_number", sa.String(), nullable=True),
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("wait_score", sa.BigInteger(), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("caller", sa.String(), nullable=False),
        sa.Column("callback_number", sa.String(), nullable=False),
        sa.Column("call", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("call_sid"),
    )


def downgrade() -> None:
    """Drop the table (pending callbacks live in Redis alone again)."""
    op.drop_table("pending_callbacks")
