"""Call logs: the session of a finished call written once onto its case."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from directory.models import CallLog


def calls_on_case(session_factory: sessionmaker[Session] | None, number: str) -> list[dict]:
    """The call logs of a case, oldest first."""
    if session_factory is None:
        return []
    with session_factory() as db:
        rows = db.scalars(
            select(CallLog)
            .where(CallLog.case_number == number)
            .order_by(CallLog.started_at, CallLog.id)
        ).all()
        return [row.to_dict() for row in rows]


def calls_answered_by(session_factory: sessionmaker[Session] | None, advisor_id: str,
                      start: datetime, end: datetime) -> list[dict]:
    """The calls an advisor answered between `start` and `end`, newest first."""
    if session_factory is None:
        return []
    with session_factory() as db:
        rows = db.scalars(
            select(CallLog)
            .where(CallLog.answered_by == advisor_id, CallLog.started_at >= start,
                   CallLog.started_at < end)
            .order_by(CallLog.started_at.desc(), CallLog.id.desc())
        ).all()
        return [row.to_dict() for row in rows]
