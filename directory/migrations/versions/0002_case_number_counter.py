"""The case-number counter

The line opens cases numbered from one row that each opening updates, so two
workers never pick the same number (on PostgreSQL the row lock, on SQLite the
write lock, serializes them): `directory.case_numbers`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# One below the first number the line ever opens; a directory's higher case numbers
# still come first (directory.case_numbers numbers after the highest).
START = 2_000_000


def upgrade() -> None:
    """Create the counter with its one row."""
    counter = op.create_table(
        "case_number_counter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(counter, [{"id": 1, "last_number": START}])


def downgrade() -> None:
    """Drop the counter (cases are numbered from the highest again)."""
    op.drop_table("case_number_counter")
