"""Indexes for a desk's years of cases and call logs

What the line reads by something other than a key scanned every row: the highest
case number, read under the case-number counter's lock for every case the line
opens (85 ms at 200,000 cases on SQLite, with the database's write lock held); a
contact's call logs, read by a webhook for the survey's eligibility; the day's
outage cases and an unknown number's call logs, for an outage call's case; today's
call logs, for the console's figures; an advisor's calls of a day.
`bench/db_growth.py` measures each with and without these. Building them reads
every row once (seconds at a million call logs).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The case number's order as numbers, exactly as `directory.models.CASE_NUMBER_ORDER`
# writes it (SQLite uses an expression index only for the same expression).
_CASE_NUMBER_ORDER = [sa.text("length(ltrim(number, '0'))"), sa.text("ltrim(number, '0')")]


def upgrade() -> None:
    """Create the six indexes; one an operator created beforehand under its name (on
    PostgreSQL, `CONCURRENTLY`: docs/deploy.md) is left alone."""
    op.create_index("ix_cases_number_magnitude", "cases", _CASE_NUMBER_ORDER,
                    if_not_exists=True)
    op.create_index("ix_cases_outage_created_at", "cases", ["outage", "created_at"],
                    if_not_exists=True)
    op.create_index("ix_call_logs_caller", "call_logs", ["caller"], if_not_exists=True)
    op.create_index("ix_call_logs_contact_id", "call_logs", ["contact_id"], if_not_exists=True)
    op.create_index("ix_call_logs_started_at", "call_logs", ["started_at"], if_not_exists=True)
    op.create_index("ix_call_logs_answered_by_started_at", "call_logs",
                    ["answered_by", "started_at"], if_not_exists=True)


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_call_logs_answered_by_started_at", table_name="call_logs")
    op.drop_index("ix_call_logs_started_at", table_name="call_logs")
    op.drop_index("ix_call_logs_contact_id", table_name="call_logs")
    op.drop_index("ix_call_logs_caller", table_name="call_logs")
    op.drop_index("ix_cases_outage_created_at", table_name="cases")
    op.drop_index("ix_cases_number_magnitude", table_name="cases")
