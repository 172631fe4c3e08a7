"""Today's schema

The directory, the call logs, the console's accounts, the audit and the
posted maintenance windows. On an empty database it creates them. On a
database of the scheme before Alembic (a `schema_version` table at version 1:
the previous release, or main before this migration existed), whose tables
are these same ones, it creates only the tables missing (as that scheme's
`create_all` did) and drops `schema_version`: Alembic takes over without
recreating a table.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from directory.db import SchemaError

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The last version of the scheme before Alembic; its tables are exactly these.
ADOPTABLE_VERSION = 1


def _districts() -> None:
    op.create_table(
        "districts",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("hosted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def _advisors() -> None:
    op.create_table(
        "advisors",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("phone", sa.String(), nullable=False),
        sa.Column("teams", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def _contacts() -> None:
    op.create_table(
        "contacts",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("district_id", sa.String(), nullable=False),
        sa.Column("phone", sa.String(), nullable=False),
        sa.Column("pin_hash", sa.String(), nullable=False),
        sa.Column("last_active", sa.Date(), nullable=True),
        sa.Column("deactivated", sa.Boolean(), nullable=False),
        sa.Column("flagged_inactive_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["district_id"], ["districts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_contacts_district_id", "contacts", ["district_id"], unique=False)
    op.create_index("ix_contacts_phone", "contacts", ["phone"], unique=True)


def _cases() -> None:
    op.create_table(
        "cases",
        sa.Column("number", sa.String(), nullable=False),
        sa.Column("district_id", sa.String(), nullable=True),
        sa.Column("owner_id", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("priority", sa.String(), nullable=False),
        sa.Column("product", sa.String(), nullable=False),
        sa.Column("needs_handover", sa.Boolean(), nullable=False),
        sa.Column("outage", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["district_id"], ["districts.id"]),
        sa.ForeignKeyConstraint(["owner_id"], ["advisors.id"]),
        sa.PrimaryKeyConstraint("number"),
    )
    op.create_index("ix_cases_district_id", "cases", ["district_id"], unique=False)


def _call_logs() -> None:
    op.create_table(
        "call_logs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_sid", sa.String(), nullable=False),
        sa.Column("case_number", sa.String(), nullable=True),
        sa.Column("caller", sa.String(), nullable=False),
        sa.Column("contact_id", sa.String(), nullable=True),
        sa.Column("district_id", sa.String(), nullable=True),
        sa.Column("menu_path", sa.String(), nullable=False),
        sa.Column("product", sa.String(), nullable=True),
        sa.Column("outage", sa.Boolean(), nullable=False),
        sa.Column("advisors_tried", sa.JSON(), nullable=False),
        sa.Column("answered_by", sa.String(), nullable=True),
        sa.Column("queue_wait_seconds", sa.Float(), nullable=True),
        sa.Column("talk_seconds", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("recording_url", sa.Text(), nullable=True),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("priority", sa.String(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["case_number"], ["cases.number"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_call_logs_call_sid", "call_logs", ["call_sid"], unique=True)
    op.create_index("ix_call_logs_case_number", "call_logs", ["case_number"], unique=False)


def _console_accounts() -> None:
    op.create_table(
        "console_accounts",
        sa.Column("advisor_id", sa.String(), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=False),
        sa.Column("supervisor", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["advisor_id"], ["advisors.id"]),
        sa.PrimaryKeyConstraint("advisor_id"),
    )


def _audit_entries() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_entries_at", "audit_entries", ["at"], unique=False)
    op.create_index("ix_audit_entries_record_id", "audit_entries", ["record_id"], unique=False)


def _posted_maintenance() -> None:
    op.create_table(
        "posted_maintenance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("windows", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


# In the order foreign keys need them.
TABLES: dict[str, Callable[[], None]] = {
    "districts": _districts,
    "advisors": _advisors,
    "contacts": _contacts,
    "cases": _cases,
    "call_logs": _call_logs,
    "console_accounts": _console_accounts,
    "audit_entries": _audit_entries,
    "posted_maintenance": _posted_maintenance,
}


def upgrade() -> None:
    """Create today's tables; adopt a `schema_version` 1 database in place."""
    bind = op.get_bind()
    existing = set(sa.inspect(bind).get_table_names())
    if "schema_version" in existing:
        versions = bind.execute(sa.text("SELECT id, version FROM schema_version")).all()
        if [tuple(row) for row in versions] not in ([(1, ADOPTABLE_VERSION)], []):
            raise SchemaError(
                f"table schema_version holds {[tuple(row) for row in versions]}, not "
                f"[(1, {ADOPTABLE_VERSION})]: this database was not written by a caseline "
                "release this one can upgrade"
            )
    for name, create in TABLES.items():
        if name not in existing:
            create()
    if "schema_version" in existing:
        op.drop_table("schema_version")


def downgrade() -> None:
    """Drop every table (the directory and the call logs with them)."""
    for name in reversed(TABLES):
        op.drop_table(name)
