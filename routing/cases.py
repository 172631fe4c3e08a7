"""Cases on the phone line: the case number a caller types (theirs, or "not
found"), which case a call is logged on, opening new ones (numbered after the
highest, by `directory.case_numbers`), and merging outage reports onto one case a day.

The call-log job (`workers.call_log`) asks `cases_for_calls` (a batch) or
`case_for_call` (one call); the rules live here. Callers never change case
data on the phone: a call only ever opens a case or adds itself (and, for an
unverified outage report, the hand-over flag) to one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

import directory
from config.hours import CENTRAL, central_date
from directory.case_numbers import allocate_case_number
from directory.catalog import GENERAL
from directory.models import Advisor, CallLog, Case
from routing.call_state import append_menu, get_call
from routing.desk import Desk
from routing.outage import CASE_PRIORITY

# Three misses on the case number: a person still helps (the general team), or
# after hours the message opens a new case, rather than a hang-up.
CASE_TRIES = 3


def outage_day(moment: datetime) -> tuple[datetime, datetime]:
    """The desk's day of the aware `moment`, from midnight to midnight Central, as aware
    UTC datetimes: outage calls from one district (or one unknown number) on one Central
    date go onto one case, the desk's "one outage case per calling number per day"
    (PRODUCT.md), dates counted in Central time like every date rule of the desk."""
    day = central_date(moment)
    start = datetime.combine(day, time(0), tzinfo=CENTRAL)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=CENTRAL)
    return start.astimezone(UTC), end.astimezone(UTC)


def reported_at(call: Mapping[str, str], now: datetime) -> datetime:
    """When the call began (its `started_at`, ms since the epoch), as an aware UTC
    datetime; `now` when it is unknown. An outage report belongs to the day the caller
    called, however late its log is written (a backlog, a database outage, a log set
    aside and written later)."""
    started = call.get("started_at") or ""
    return datetime.fromtimestamp(int(started) / 1000, tz=UTC) if started.isdigit() else now


@dataclass(frozen=True)
class CaseLookup:
    """Whether a case number the caller typed is theirs to discuss."""

    found: bool
    closed: bool = False
    tries: int = 0
    owner: str = ""
    # False: the caller keyed and said nothing (silence, or `#` alone): a try, but no
    # number to call "not found".
    entered: bool = True


@dataclass(frozen=True)
class AskCase:
    """Ask for the case number (again after a miss); after hours, before the voicemail.
    `attempt`: which try this asks for (its answer names it: a try Twilio posts again
    is not counted again). `nothing_entered`: the last try was silence (say so, never
    "not found")."""

    after_hours: bool = False
    not_found: bool = False
    attempt: int = 1
    nothing_entered: bool = False


@dataclass(frozen=True)
class Voicemail:
    """Record a message that the call-log job puts on the call's case (or a new case)."""

    closed: bool = False  # tell the desk's hours first
    case_not_found: bool = False
    case_not_entered: bool = False  # the last try of the case number was silence


# Words a caller may say for a digit ("two oh two four one one seven"), and the few
# words around a number that change nothing ("case number 2024117").
_DIGIT_WORDS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "to": "2", "too": "2",
    "three": "3", "four": "4", "for": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9",
}
_FILLER_WORDS = {"case", "number", "is", "it's", "its", "my", "the", "um", "uh"}
# Hints for Twilio's speech recognition on the case-number question.
CASE_SPEECH_HINTS = "case number, $OOV_CLASS_DIGIT_SEQUENCE"


def spoken_case_number(speech: str) -> str:
    """The digits a caller said ("two oh two four one one seven", "2024117",
    "case number 2024 117"), or "" when what they said is not a number (a miss,
    as a bad key is). `speech` is Twilio's `SpeechResult`."""
    digits = []
    for word in speech.lower().replace("-", " ").replace(",", " ").replace(".", " ").split():
        if word.isdigit():
            digits.append(word)
        elif word in _DIGIT_WORDS:
            digits.append(_DIGIT_WORDS[word])
        elif word not in _FILLER_WORDS:
            return ""
    return "".join(digits)


def choose_case(desk: Desk, call_sid: str, digits: str, speech: str = "",
                attempt: int = 0) -> CaseLookup:
    """Look a case number up within the caller's district, keyed (`digits`) or said
    (`speech`, Twilio's SpeechResult, when no key came); route to its owner.

    `attempt` is the try the answer names (`AskCase.attempt`; 0 when it names none):
    a try already counted is Twilio posting it again (without its token, after a
    timeout), looked up again but neither counted nor noted twice. Nothing keyed nor
    said (the `<Gather>` timed out) is a try too (PRODUCT.md: three failures), but
    not a number "not found" (`CaseLookup.entered`)."""
    call = get_call(desk.r, call_sid)
    counted = int(call.get("case_tries") or 0)
    repeat = 0 < attempt <= counted
    tries = attempt if repeat else counted + 1
    entered = bool(digits or speech.strip())
    if not digits and speech:
        digits = spoken_case_number(speech)
    number = "".join(ch for ch in digits if ch.isdigit())[:20]
    case = directory.find_case(desk.r, desk.session_factory, number) if number else None
    if not case or not case.get("district") or case.get("district") != call.get("district"):
        # Another district's case is "not found": never reveal it exists.
        if not repeat:
            append_menu(desk.r, call_sid, number or "-", case_tries=tries)
        return CaseLookup(found=False, tries=tries, entered=entered)
    if repeat:
        return CaseLookup(found=True, closed=case.get("status") == "closed", tries=tries,
                          owner=case.get("owner", ""))
    append_menu(
        desk.r, call_sid, number,
        case=number, team=case.get("team") or GENERAL, owner=case.get("owner", ""),
        priority=case.get("priority") or "medium", product=case.get("product", ""),
        case_status=case.get("status", ""), case_tries=tries,
    )
    return CaseLookup(found=True, closed=case.get("status") == "closed", tries=tries,
                      owner=case.get("owner", ""))


def case_for_call(db: Session, call: dict[str, str], now: datetime) -> Case | None:
    """The case a call is logged on: its case, the district's outage case of the day, or a
    new case (options 2 and 6, and their voicemails); None for a call with no case."""
    if call.get("outage"):
        return _outage_case(db, call, now)
    if call.get("case"):
        return db.get(Case, call["case"])
    if call.get("new_case") and call.get("district") and not call.get("refused"):
        return _new_case(db, call, priority="medium")
    return None


def cases_for_calls(db: Session, calls: Mapping[str, dict[str, str]],
                    now: datetime) -> dict[str, Case | None]:
    """`case_for_call` for a batch of calls (CallSid -> the call's hash) in one
    transaction, by CallSid: the cases the calls name are read in one query, and each
    district's (or unknown number's) outage case is looked up once, the batch's later
    outage calls from there going onto the same case, as they would one by one."""
    named = {call["case"] for call in calls.values() if call.get("case") and not call.get("outage")}
    known = {case.number: case for case in db.scalars(
        select(Case).where(Case.number.in_(named)))} if named else {}
    outages: dict[str, Case] = {}
    found: dict[str, Case | None] = {}
    for sid, call in calls.items():
        if not call.get("outage"):
            found[sid] = (known.get(call["case"]) if call.get("case")
                          else case_for_call(db, call, now))
            continue
        # The lookup's key: the district, else the calling number (see `_outage_case`),
        # and the report's Central date (a batch may span midnight).
        reporter = (f"district:{call['district']}" if call.get("district")
                    else f"caller:{call['caller']}" if call.get("caller") else "")
        key = f"{reporter}@{central_date(reported_at(call, now))}" if reporter else ""
        case = outages.get(key) if key else None
        if case is None:
            case = _outage_case(db, call, now)
            if key:
                outages[key] = case
        elif call.get("handover") == "1":
            case.needs_handover = True
        found[sid] = case
    return found


def _owner(db: Session, call: dict[str, str]) -> str | None:
    """The advisor who answered, as the new case's owner."""
    answered = call.get("answered_by") or None
    return answered if answered and db.get(Advisor, answered) is not None else None


def _new_case(db: Session, call: dict[str, str], *, priority: str, outage: bool = False,
              created_at: datetime | None = None) -> Case:
    """Open a new case for the caller's district (status new), created `created_at`
    (aware; default: as it is written)."""
    case = Case(
        number=allocate_case_number(db),
        district_id=call.get("district") or None,
        owner_id=_owner(db, call),
        status="new",
        priority=priority,
        product=call.get("product") or "campus",
        outage=outage,
        needs_handover=call.get("handover") == "1",
        **({"created_at": created_at} if created_at is not None else {}),
    )
    db.add(case)
    db.flush()
    return case


def _outage_case(db: Session, call: dict[str, str], now: datetime) -> Case:
    """The outage case of the Central date the call began on (`reported_at`) for the
    caller's district (for an unknown number, the one that number reported), else a new
    Critical one, dated when the call began. A report of today joins an open case only
    (an outage back after its case was resolved is a new outage); one of an earlier day,
    written late (a backlog, a log set aside and written days later), joins that day's
    case whatever its status since: that day's outage already has its case."""
    moment = reported_at(call, now)
    start, end = outage_day(moment)
    recent = (
        select(Case)
        .where(Case.outage.is_(True), Case.created_at >= start, Case.created_at < end)
        .order_by(Case.created_at.desc())
    )
    if central_date(moment) >= central_date(now):
        recent = recent.where(Case.status.not_in(("resolved", "closed")))
    district = call.get("district") or None
    caller = call.get("caller") or None
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
        if call.get("handover") == "1":
            existing.needs_handover = True
        return existing
    return _new_case(db, call, priority=CASE_PRIORITY, outage=True, created_at=moment)
