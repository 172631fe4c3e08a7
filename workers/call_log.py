"""The call-log job: one row per CallSid, written from the call's session.

The job is idempotent: it re-reads the session, and the row is keyed by a
unique CallSid, so a re-run (duplicate callback, killed worker, retry after a
database outage) changes nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from routing.call_session import get_session
from routing.models import CallLog
from workers.context import current_desk

log = logging.getLogger(__name__)


def _time(ms: str | None) -> datetime | None:
    """A session timestamp (ms since the epoch) as an aware UTC datetime."""
    if not ms:
        return None
    return datetime.fromtimestamp(int(float(ms)) / 1000, tz=UTC)


def final_status(session: dict[str, str]) -> str:
    """How the call ended, in the desk's words."""
    if session.get("answered_by"):
        return "answered"
    if session.get("recording_url"):
        return "voicemail"
    if session.get("abandoned"):
        return "abandoned"
    if session.get("tried"):
        return "unanswered"
    if session.get("refused"):
        return "refused"
    return "ended-in-menu"


def log_call(call_sid: str) -> str:
    """Write the call's log on its case, exactly once."""
    desk = current_desk()
    if desk.session_factory is None:
        raise RuntimeError("no database configured")
    session = get_session(desk.r, call_sid)
    if not session:
        log.error("call %s ended with no session left in Redis; nothing to log", call_sid)
        return "no-session"
    with desk.session_factory() as db:
        if db.scalar(select(CallLog.id).where(CallLog.call_sid == call_sid)) is not None:
            return "exists"
        case_number = session.get("case") or None
        started = _time(session.get("started_at")) or datetime.now(UTC)
        queue_wait = session.get("queue_wait_ms")
        db.add(CallLog(
            call_sid=call_sid,
            case_number=case_number,
            caller=session.get("caller", ""),
            contact_id=session.get("contact") or None,
            district_id=session.get("district") or None,
            menu_path=session.get("menu", ""),
            product=session.get("product") or None,
            outage=bool(session.get("outage")),
            advisors_tried=[a for a in (session.get("tried") or "").split(",") if a],
            answered_by=session.get("answered_by") or None,
            queue_wait_seconds=round(int(queue_wait) / 1000, 3) if queue_wait else None,
            talk_seconds=int(session["talk_seconds"]) if session.get("talk_seconds") else None,
            status=final_status(session),
            started_at=started,
            ended_at=_time(session.get("ended_at")),
            recording_url=session.get("recording_url") or None,
            team=session.get("team") or None,
            priority=session.get("priority") or None,
            details={"call_status": session.get("call_status", "")},
        ))
        try:
            db.commit()
        except IntegrityError:
            # Another run of this job got there first: that row is the log.
            db.rollback()
            return "exists"
    return "written"
