"""The call-log job: one row per CallSid, written from the call's hash in Redis.

The job is idempotent: it re-reads the call, and the row is keyed by a
unique CallSid, so a re-run (duplicate callback, killed worker, retry after a
database outage) changes nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from config.hours import central_date
from directory import cache_case, record_contact_activity
from directory.models import CallLog
from routing import conference, survey
from routing.auth import how_verified
from routing.call_state import final_status, get_call
from routing.cases import case_for_call
from workers.context import current_desk

log = logging.getLogger(__name__)


def _time(ms: str | None) -> datetime | None:
    """A call timestamp (ms since the epoch) as an aware UTC datetime."""
    if not ms:
        return None
    return datetime.fromtimestamp(int(float(ms)) / 1000, tz=UTC)


def log_call(call_sid: str) -> str:
    """Write the call's log on its case (opening a new or outage case), exactly once."""
    desk = current_desk()
    if desk.session_factory is None:
        raise RuntimeError("no database configured")
    call = get_call(desk.r, call_sid)
    if not call:
        log.error("call %s ended with no call left in Redis; nothing to log", call_sid)
        return "no-call"
    now = datetime.now(UTC)
    with desk.session_factory() as db:
        if db.scalar(select(CallLog.id).where(CallLog.call_sid == call_sid)) is not None:
            return "exists"
        case = case_for_call(db, call, now)
        db.add(_call_log(call_sid, call, case.number if case else None))
        try:
            db.commit()
        except IntegrityError:
            db.rollback()
            if db.scalar(select(CallLog.id).where(CallLog.call_sid == call_sid)) is not None:
                return "exists"  # another run of this job got there first
            raise  # a number an operator loaded meanwhile: the job retries with the next one
        if case is not None:
            cache_case(desk.r, case)
        log.info("call %s logged on case %s", call_sid, case.number if case else "(none)")
    if call.get("verified") == "1" and call.get("contact"):
        # A verified call is activity for the 180-day rule.
        record_contact_activity(desk.session_factory, desk.r, call["contact"],
                                central_date(now))
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
    call = get_call(desk.r, call_sid)
    recording = call.get("recording_url")
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


def attach_transcription(call_sid: str) -> str:
    """Put a voicemail's transcription on the call's log (`details.transcription`).

    Twilio posts it a minute or more after the call; idempotent (a repeated
    callback writes nothing new); raises `CallLogNotWritten` (the job retries,
    as it does while the database is down) until the row exists.
    """
    desk = current_desk()
    if desk.session_factory is None:
        raise RuntimeError("no database configured")
    text = get_call(desk.r, call_sid).get("transcription")
    if not text:
        return "no-transcription"
    with desk.session_factory() as db:
        row = db.scalars(select(CallLog).where(CallLog.call_sid == call_sid)).first()
        if row is None:
            raise CallLogNotWritten(call_sid)
        details = dict(row.details or {})
        if details.get("transcription") == text:
            return "exists"
        row.details = {**details, "transcription": text}
        db.commit()
    log.info("transcription of the voicemail of call %s added to its log", call_sid)
    return "written"


def _survey_details(call: dict[str, str]) -> dict[str, object]:
    """The survey on the log: offered (counts for the 30-day rule), answers, opt-out."""
    details: dict[str, object] = {}
    if call.get("survey_offered") == "1":
        details["survey_offered"] = True
        details["survey"] = survey.answers(call)
    if call.get("survey_opt_out") == "1":
        details["survey_opt_out"] = True
    return details


def _call_log(call_sid: str, call: dict[str, str], case_number: str | None) -> CallLog:
    """The call-log row for a call."""
    queue_wait = call.get("queue_wait_ms")
    return CallLog(
        call_sid=call_sid,
        case_number=case_number,
        caller=call.get("caller", ""),
        contact_id=call.get("contact") or None,
        district_id=call.get("district") or None,
        menu_path=call.get("menu", ""),
        product=call.get("product") or None,
        outage=bool(call.get("outage")),
        advisors_tried=[a for a in (call.get("tried") or "").split(",") if a],
        answered_by=call.get("answered_by") or None,
        queue_wait_seconds=round(int(queue_wait) / 1000, 3) if queue_wait else None,
        talk_seconds=int(call["talk_seconds"]) if call.get("talk_seconds") else None,
        status=final_status(call),
        started_at=_time(call.get("started_at")) or datetime.now(UTC),
        ended_at=_time(call.get("ended_at")),
        recording_url=call.get("recording_url") or None,
        team=call.get("team") or None,
        priority=call.get("priority") or None,
        details={
            "call_status": call.get("call_status", ""),
            "verified": call.get("verified") == "1",
            "verified_by_pin": call.get("verified_by_pin") == "1",
            "verified_by": how_verified(call),
            "stir_verstat": call.get("stir_verstat", ""),
            "after_hours": call.get("after_hours") == "1",
            "handover": call.get("handover") == "1",
            "abandoned": call.get("abandoned") == "1",
            "queue_failed": call.get("queue_failed") == "1",
            **({"transcription": call["transcription"]} if call.get("transcription") else {}),
            **_survey_details(call),
            **({"colleagues": conference.colleagues(call)}
               if any(k.startswith("colleague:") for k in call) else {}),
        },
    )
