"""The database's tables: the directory (districts, contacts, advisors, cases),
the call logs, and the callbacks promised and not logged yet.

The database is the source of truth for these; Redis only caches the few
facts a call needs (see `directory.cache`). Times are stored as UTC and come
back as aware datetimes in UTC on every backend.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    literal_column,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored as naive UTC and read back aware (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert an aware time to naive UTC; a naive time is taken to be UTC already."""
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC to the stored naive time."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every caseline table."""


class District(Base):
    """A customer school district."""

    __tablename__ = "districts"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, nullable=False)
    # Hosted districts get 24/7 outage support.
    hosted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class Contact(Base):
    """An authorized contact of a district: the only people who may discuss cases."""

    __tablename__ = "contacts"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, nullable=False)
    district_id: Mapped[str] = mapped_column(ForeignKey("districts.id"), nullable=False, index=True)
    phone: Mapped[str] = mapped_column(String, nullable=False, unique=True, index=True)
    # Never the clear PIN: directory.pins.hash_pin's output.
    pin_hash: Mapped[str] = mapped_column(String, nullable=False)
    # The date the operators' directory loaded (theirs to move, forward or back).
    last_active: Mapped[date | None] = mapped_column(Date, nullable=True)
    # The Central date of the contact's last verified call (the line's, forward only).
    last_verified_call: Mapped[date | None] = mapped_column(Date, nullable=True)
    deactivated: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Set by the daily job when the 180-day rule flags the account for deactivation.
    flagged_inactive_on: Mapped[date | None] = mapped_column(Date, nullable=True)

    @property
    def last_activity(self) -> date | None:
        """What the 180-day rule counts from (PRODUCT.md: "a verified call counts as case
        activity"): the later of the loaded `last_active` and the last verified call; None
        when neither is known."""
        days = [d for d in (self.last_active, self.last_verified_call) if d is not None]
        return max(days) if days else None


class Advisor(Base):
    """A support advisor; presence lives in Redis, not here."""

    __tablename__ = "advisors"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, nullable=False)
    phone: Mapped[str] = mapped_column(String, nullable=False)
    teams: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)


class ConsoleAccount(Base):
    """An advisor's sign-in to the web console (`caseline advisors set-password`)."""

    __tablename__ = "console_accounts"

    advisor_id: Mapped[str] = mapped_column(ForeignKey("advisors.id"), primary_key=True)
    # Argon2id, in the PHC string format argon2-cffi writes (salt and parameters inside).
    password_hash: Mapped[str] = mapped_column(String, nullable=False)
    supervisor: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class Case(Base):
    """A support case; its number routes a caller to its owner."""

    __tablename__ = "cases"

    number: Mapped[str] = mapped_column(String, primary_key=True)
    # Nullable only for an outage reported by a caller nobody could identify.
    district_id: Mapped[str | None] = mapped_column(
        ForeignKey("districts.id"), nullable=True, index=True
    )
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("advisors.id"), nullable=True)
    status: Mapped[str] = mapped_column(String, nullable=False)
    priority: Mapped[str] = mapped_column(String, nullable=False)
    product: Mapped[str] = mapped_column(String, nullable=False)
    # An outage reported by an unauthorized caller: hand over to an authorized contact.
    needs_handover: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    outage: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


def _significant_digits(number: Any) -> Any:
    """A case number without its leading zeros (SQL; the literal, not a bound parameter,
    so that SQLite's planner matches the index below)."""
    return func.ltrim(number, literal_column("'0'"))


# The order of case numbers as numbers (longer first, then by digits), without a cast
# that could overflow: `directory.case_numbers` reads the highest this way under the
# counter's lock for every case the line opens, so it is an index, not a sort of all
# the desk's cases (85 ms at 200,000 cases on SQLite, the database's write lock held).
CASE_NUMBER_ORDER = (func.length(_significant_digits(Case.number)),
                     _significant_digits(Case.number))
Index("ix_cases_number_magnitude", *CASE_NUMBER_ORDER)
# A day's outage cases (`routing.cases`, for every outage call the worker logs): the
# day's few, not every case of the district or of every unknown number.
Index("ix_cases_outage_created_at", Case.outage, Case.created_at)


class CaseNumberCounter(Base):
    """The last case number the line opened (one row, id 1): see directory.case_numbers.

    Updating this row is what serializes two workers opening cases at once.
    """

    __tablename__ = "case_number_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_number: Mapped[int] = mapped_column(BigInteger, nullable=False)


class CallLog(Base):
    """Exactly one row per call (unique CallSid), written by the worker."""

    __tablename__ = "call_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_sid: Mapped[str] = mapped_column(String, nullable=False, unique=True, index=True)
    case_number: Mapped[str | None] = mapped_column(
        ForeignKey("cases.number"), nullable=True, index=True
    )
    # Indexed, as started_at and answered_by below, for what reads a desk's years of
    # logs by them: an unknown number's outage case (the worker), the survey's
    # eligibility (a webhook), today's figures and an advisor's day (the console).
    caller: Mapped[str] = mapped_column(String, nullable=False, index=True)
    contact_id: Mapped[str | None] = mapped_column(String, nullable=True, index=True)
    district_id: Mapped[str | None] = mapped_column(String, nullable=True)
    menu_path: Mapped[str] = mapped_column(String, nullable=False, default="")
    product: Mapped[str | None] = mapped_column(String, nullable=True)
    outage: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    advisors_tried: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    answered_by: Mapped[str | None] = mapped_column(String, nullable=True)
    queue_wait_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    talk_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    recording_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    team: Mapped[str | None] = mapped_column(String, nullable=True)
    priority: Mapped[str | None] = mapped_column(String, nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    def to_dict(self) -> dict[str, Any]:
        """The call log as JSON-ready values (times in ISO 8601, UTC)."""
        return {
            "id": self.id,
            "call_sid": self.call_sid,
            "caller": self.caller,
            "contact": self.contact_id,
            "district": self.district_id,
            "menu_path": self.menu_path,
            "case_number": self.case_number,
            "product": self.product,
            "outage": bool(self.outage),
            "team": self.team,
            "priority": self.priority,
            "advisors_tried": list(self.advisors_tried or []),
            "answered_by": self.answered_by,
            "queue_wait_seconds": self.queue_wait_seconds,
            "talk_seconds": self.talk_seconds,
            "status": self.status,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "recording_url": self.recording_url,
            "details": dict(self.details) if self.details else {},
            # The satisfaction survey's answers by question (1-5), when it was asked.
            "survey": (self.details or {}).get("survey"),
        }


# An advisor's calls of a day (`directory.call_logs.calls_answered_by`, the console).
Index("ix_call_logs_answered_by_started_at", CallLog.answered_by, CallLog.started_at)


def _iso(value: datetime | None) -> str | None:
    """ISO 8601 of a time, as UTC when it carries no zone (a not-yet-reloaded row)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


class PendingCallback(Base):
    """A callback the desk promised a waiting contact and has not logged yet: what puts
    it back in its queue should Redis lose it (`routing.redis_restarts`). Written when
    the contact presses 1 on hold, before the promise; deleted in the transaction that
    writes the call's log, so at every moment one of the two exists."""

    __tablename__ = "pending_callbacks"

    call_sid: Mapped[str] = mapped_column(String, primary_key=True)
    contact_id: Mapped[str] = mapped_column(String, nullable=False)
    district_id: Mapped[str | None] = mapped_column(String, nullable=True)
    case_number: Mapped[str | None] = mapped_column(String, nullable=True)
    # The team's queue it waits in, and its place there: the waiting set's score,
    # priority band x 10^13 + first arrival (ms since the epoch, UTC).
    team: Mapped[str] = mapped_column(String, nullable=False)
    wait_score: Mapped[int] = mapped_column(BigInteger, nullable=False)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    caller: Mapped[str] = mapped_column(String, nullable=False)  # E.164 it called from
    callback_number: Mapped[str] = mapped_column(String, nullable=False)  # E.164 to dial
    # The call's hash in Redis as it was asked (text fields): its log's menu path,
    # verification, start, the line and webhook base the callback is placed from.
    call: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, default=dict)


class AuditEntry(Base):
    """One change an operator made through the API: who, when, what (never a PIN or hash)."""

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, index=True)
    # Who: the API token's holder ("api"); the token itself is never stored.
    actor: Mapped[str] = mapped_column(String, nullable=False)
    kind: Mapped[str] = mapped_column(String, nullable=False)  # case, contact, maintenance
    record_id: Mapped[str] = mapped_column(String, nullable=False, index=True)
    action: Mapped[str] = mapped_column(String, nullable=False)  # created, updated, closed, ...
    # {field: {"old": ..., "new": ...}}; a PIN change is {"pin": {"changed": true}}.
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready values."""
        return {
            "id": self.id,
            "at": _iso(self.at),
            "actor": self.actor,
            "kind": self.kind,
            "record_id": self.record_id,
            "action": self.action,
            "changes": dict(self.changes or {}),
        }


class PostedMaintenance(Base):
    """The maintenance windows operators posted through the API (one row, id 1).

    No row means none was ever posted: config/maintenance.json still holds them.
    """

    __tablename__ = "posted_maintenance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # [{"start": ISO 8601 with offset, "end": ..., "kind": ..., "note": ...}]
    windows: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
