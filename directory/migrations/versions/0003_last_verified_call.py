"""A contact's last verified call, apart from the date the directory loaded

A contact's last activity is the later of two dates: the `last_active` the
operators' directory loads (theirs to set, forward or back) and the Central date
of the contact's last verified call (the line's, moved forward only). Kept in one
column, a reload of an older file undid the calls. A database from before this
migration keeps its dates as both: a date already stored may be a call's.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column, filled from `last_active`."""
    op.add_column("contacts", sa.Column("last_verified_call", sa.Date(), nullable=True))
    op.execute("UPDATE contacts SET last_verified_call = last_active")


def downgrade() -> None:
    """Fold the calls back into `last_active` (the later date) and drop the column."""
    op.execute("UPDATE contacts SET last_active = last_verified_call "
               "WHERE last_verified_call IS NOT NULL "
               "AND (last_active IS NULL OR last_verified_call > last_active)")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("last_verified_call")
