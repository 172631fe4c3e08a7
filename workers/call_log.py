"""The call-log job: one row per CallSid, written from the call's session.

The job is idempotent: it re-reads the session, and the row is keyed by a
unique CallSid, so a re-run (duplicate callback, killed worker, retry after a
database outage) changes nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.hours import CENTRAL
from directory import cache_case, record_contact_activity
from directory.models import Advisor, CallLog, Case
from routing.auth import how_verified
from routing.call_session import get_session
from workers.context import current_desk

log = logging.getLogger(__name__)

# Outage calls from one district (or one unknown number) within a day go onto one case.
OUTAGE_CASE_SPAN = timedelta(hours=24)


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
    if session.get("callback") == "1":
        return "callback-unanswered"
    if session.get("tried"):
        return "unanswered"
    if session.get("refused"):
        return "refused"
    return "ended-in-menu"


def log_call(call_sid: str) -> str:
    """Write the call's log on its case (opening a new or outage case), exactly once."""
    desk = current_desk()
    if desk.session_factory is None:
        raise RuntimeError("no database configured")
    session = get_session(desk.r, call_sid)
    if not session:
        log.error("call %s ended with no session left in Redis; nothing to log", call_sid)
        return "no-session"
    now = datetime.now(UTC)
    with desk.session_factory() as db:
        if db.scalar(select(CallLog.id).where(CallLog.call_sid == call_sid)) is not None:
            return "exists"
        case = _case_for(db, session, now)
        db.add(_call_log(call_sid, session, case.number if case else None))
        try:
            db.commit()
        except IntegrityError:
            db.rollback()
            if db.scalar(select(CallLog.id).where(CallLog.call_sid == call_sid)) is not None:
                return "exists"  # another run of this job got there first
            raise  # a case-number collision: the job retries with a fresh number
        if case is not None:
            cache_case(desk.r, case)
        log.info("call %s logged on case %s", call_sid, case.number if case else "(none)")
    if session.get("verified") == "1" and session.get("contact"):
        # A verified call is activity for the 180-day rule.
        record_contact_activity(desk.session_factory, desk.r, session["contact"],
                                now.astimezone(CENTRAL).date())
    return "written"


class CallLogNotWritten(Exception):
    """The call's log is not in the database yet (its job has not run): retry later."""


def attach_recording(call_sid: str) -> str:
    """Add a voicemail to the call's log when Twilio posted it after the call ended.

    Twilio may post the `<Record>` action after the status callback, so the log
    job may already have written the row without it. Idempotent; raises
    `CallLogNotWritten` (the job retries) while the row does not exist yet.
    """
    desk = current_desk()
    if desk.session_factory is None:
        raise RuntimeError("no database configured")
    session = get_session(desk.r, call_sid)
    recording = session.get("recording_url")
    if not recording:
        return "no-recording"
    with desk.session_factory() as db:
        row = db.scalars(select(CallLog).where(CallLog.call_sid == call_sid)).first()
        if row is None:
            raise CallLogNotWritten(call_sid)
        if row.recording_url == recording:
            return "exists"
        row.recording_url = recording
        if not row.answered_by:
            row.status = "voicemail"
        db.commit()
    log.info("voicemail of call %s added to its log", call_sid)
    return "written"


def _call_log(call_sid: str, session: dict[str, str], case_number: str | None) -> CallLog:
    """The call-log row for a session."""
    queue_wait = session.get("queue_wait_ms")
    return CallLog(
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
        started_at=_time(session.get("started_at")) or datetime.now(UTC),
        ended_at=_time(session.get("ended_at")),
        recording_url=session.get("recording_url") or None,
        team=session.get("team") or None,
        priority=session.get("priority") or None,
        details={
            "call_status": session.get("call_status", ""),
            "verified": session.get("verified") == "1",
            "verified_by_pin": session.get("verified_by_pin") == "1",
            "verified_by": how_verified(session),
            "stir_verstat": session.get("stir_verstat", ""),
            "after_hours": session.get("after_hours") == "1",
            "handover": session.get("handover") == "1",
            "abandoned": session.get("abandoned") == "1",
            "queue_failed": session.get("queue_failed") == "1",
        },
    )


def _case_for(db: Session, session: dict[str, str], now: datetime) -> Case | None:
    """The case this call belongs on: existing, the district's outage case, or a new one."""
    if session.get("outage"):
        return _outage_case(db, session, now)
    if session.get("case"):
        return db.get(Case, session["case"])
    if session.get("new_case") and session.get("district") and not session.get("refused"):
        return _new_case(db, session, priority="medium")
    return None


def _owner(db: Session, session: dict[str, str]) -> str | None:
    """The advisor who answered, as the new case's owner."""
    answered = session.get("answered_by") or None
    return answered if answered and db.get(Advisor, answered) is not None else None


def _new_case(db: Session, session: dict[str, str], *, priority: str, outage: bool = False) -> Case:
    """Open a new case for the caller's district (status new)."""
    highest = db.scalar(select(func.max(cast(Case.number, Integer))))
    case = Case(
        number=str((highest or 2_000_000) + 1),
        district_id=session.get("district") or None,
        owner_id=_owner(db, session),
        status="new",
        priority=priority,
        product=session.get("product") or "campus",
        outage=outage,
        needs_handover=session.get("handover") == "1",
    )
    db.add(case)
    db.flush()
    return case


def _outage_case(db: Session, session: dict[str, str], now: datetime) -> Case:
    """The open outage case of the last day for the caller's district (for an unknown
    number, the one that number reported), else a new Critical one."""
    recent = (
        select(Case)
        .where(Case.outage.is_(True), Case.status.not_in(("resolved", "closed")),
               Case.created_at >= now - OUTAGE_CASE_SPAN)
        .order_by(Case.created_at.desc())
    )
    district = session.get("district") or None
    caller = session.get("caller") or None
    if district:
        existing = db.scalars(recent.where(Case.district_id == district)).first()
    elif caller:
        # One outage case per calling number per day (the exception basis).
        reported = select(CallLog.case_number).where(CallLog.caller == caller)
        existing = db.scalars(
            recent.where(Case.district_id.is_(None), Case.number.in_(reported))
        ).first()
    else:
        existing = None
    if existing is not None:
        if session.get("handover") == "1":
            existing.needs_handover = True
        return existing
    return _new_case(db, session, priority="critical", outage=True)
