"""Call logs: the session of a finished call written once onto its case."""

from __future__ import annotations

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
