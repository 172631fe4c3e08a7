"""The call-log job: one row per CallSid, written from the call's hash in Redis.

A call that ends joins the calls waiting for their log, and one job writes all
of those that ended meanwhile, a batch per database transaction (a storm's
calls cost one RQ job and one commit per batch, not each). The job is
idempotent: it re-reads the calls, skips those already logged (the row is
keyed by a unique CallSid) and takes a batch off the waiting calls only once
it is committed, so a re-run (duplicate callback, killed worker, retry after a
database outage) writes nothing twice and drops nothing.

A call whose log cannot be written for a reason of its own (a case it would open
cannot be numbered, data the database refuses) holds no other call back: the
batch is written again in halves, down to that one call, which is set aside
(`jobs.queues.CALL_LOGS_SET_ASIDE`) and tried again every ten minutes until its
log is written (`workers.set_aside`). Any other failure (the database down,
read-only, missing a table) is no call's fault: the job fails and RQ retries it,
every call still waiting.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.hours import central_date
from directory import cache_case, keys
from directory.activity import touch_contacts
from directory.cache import cache_contact
from directory.models import CallLog, Case
from directory.pending_callbacks import drop_logged_callbacks
from directory.scripts import script
from jobs.queues import (
    CALL_LOGS_QUEUED,
    CALL_LOGS_QUEUED_SECONDS,
    CALL_LOGS_SET_ASIDE,
    CALL_LOGS_SPLIT,
    CALL_LOGS_SPLIT_SECONDS,
    CALLS_CHANGED,
    CALLS_TO_LOG,
    queue_log_calls,
)
from routing import conference, survey
from routing.auth import how_verified
from routing.call_state import (
    TOO_MANY_CALLS,
    final_status,
    forget_refused_calls,
    get_call,
    keep_a_day_more,
)
from routing.cases import cases_for_calls, reported_at
from routing.desk import Desk
from workers.context import current_desk
from workers.set_aside import one_calls_fault, set_aside_call_log

log = logging.getLogger(__name__)


def _time(ms: str | None) -> datetime | None:
    """A call timestamp (ms since the epoch) as an aware UTC datetime."""
    if not ms:
        return None
    return datetime.fromtimestamp(int(float(ms)) / 1000, tz=UTC)


# Logs written per database transaction, and how long one job goes on writing while
# calls keep ending, or splitting a failing batch (then it hands over to the next job,
# well inside RQ's timeout of 180 s and the mark's minute).
LOG_BATCH = 200
LOG_CALLS_SECONDS = 20.0
# Two jobs writing the same calls at once (two workers): the second's commit fails on
# the unique CallSid; it reads again which are written and writes the rest. Only then:
# a constraint one of the calls breaks by itself fails the same way every time.
CONFLICT_TRIES = 3


# Take the next batch of calls waiting for their log (KEYS[1]), up to ARGV[1], or as
# many as a split under way says (KEYS[3]): those set aside meanwhile (KEYS[2]; queued
# again by a repeated end) come off the waiting calls instead, left for their next try.
# One step, so a call the reconciler puts back at that moment is in exactly one of the
# two sets. Returns the size it took the batch at, and the batch. With no call set
# aside (the usual case) that is three commands a batch, none a call; ZMSCORE would
# make it one a batch otherwise, but needs Redis 6.2 (the bundled server is 6.2.14;
# a deployment's may be older).
_TAKE_BATCH = """
local size = tonumber(redis.call('GET', KEYS[3]) or '')
if not size or size < 1 then size = tonumber(ARGV[1]) end
local sids = redis.call('ZRANGE', KEYS[1], 0, size - 1)
if #sids == 0 or redis.call('ZCARD', KEYS[2]) == 0 then return {size, sids} end
local batch = {}
for _, sid in ipairs(sids) do
  if redis.call('ZSCORE', KEYS[2], sid) then redis.call('ZREM', KEYS[1], sid)
  else table.insert(batch, sid) end
end
return {size, batch}
"""


# The job ends only when no call waits: the mark that a job is queued comes off in the
# same atomic step that finds the waiting calls empty, so a call ending just then
# either is seen here or queues the next job.
_DONE_IF_EMPTY = """
if redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
redis.call('DEL', KEYS[2])
return 1
"""


def log_calls() -> str:
    """Write the log of every call waiting for one (`jobs.queues.CALLS_TO_LOG`), a batch
    per transaction, each call exactly once: a batch is taken off the waiting calls only
    once committed, and a call already logged is skipped. Calls that end while the job
    is queued or running ride on it (the mark stays on until it finds none waiting).
    A call whose own log fails is set aside (`write_or_set_aside`); any other failure
    (the database down, read-only, missing a table) fails the job: RQ retries it; the
    calls still wait. After `LOG_CALLS_SECONDS` (between batches, or within a split) it
    hands over to the next job. Returns how many logs it wrote, as text."""
    desk = current_desk()
    r = desk.r
    written = set_aside = 0
    deadline = time.monotonic() + LOG_CALLS_SECONDS
    while True:
        size, sids = script(r, _TAKE_BATCH)(
            keys=[CALLS_TO_LOG, CALL_LOGS_SET_ASIDE, CALL_LOGS_SPLIT], args=[LOG_BATCH],
            client=r)
        if not sids:
            # None waits, or every call taken had been set aside (off the waiting calls
            # now, so the next look gets further).
            if script(r, _DONE_IF_EMPTY)(keys=[CALLS_TO_LOG, CALL_LOGS_QUEUED], client=r):
                done = f"{written} written"
                return f"{done}, {set_aside} set aside" if set_aside else done
            continue
        r.expire(CALL_LOGS_QUEUED, CALL_LOGS_QUEUED_SECONDS)  # still at work
        outcomes = write_or_set_aside(desk, sids, deadline, taken_at=int(size))
        written += sum(1 for o in outcomes.values() if o == "written")
        set_aside += sum(1 for o in outcomes.values() if o == "set-aside")
        if "waiting" in outcomes.values() or time.monotonic() > deadline:
            # Calls keep ending, or a split goes on: the next job takes over (the mark
            # stays on for it). Named for the moment too: a split may leave at the head
            # the call whose end named the job running now.
            queue_log_calls(desk.job_redis, f"{sids[-1]}-{time.time_ns() // 1_000_000}")
            return f"{written} written, {set_aside} set aside, more to come"


def log_call(call_sid: str) -> str:
    """Write one call's log on its case (opening a new or outage case), exactly once
    (the job a previous release queued per call; `log_calls` writes them in batches);
    one that cannot be written is set aside as in a batch."""
    return write_or_set_aside(current_desk(), [call_sid])[call_sid]


def write_or_set_aside(desk: Desk, sids: list[str], deadline: float = math.inf,
                       taken_at: int = LOG_BATCH) -> dict[str, str]:
    """Write these calls' logs, in one transaction when none fails, and take each off the
    calls waiting for their log once its transaction is committed; per call the outcome
    of `write_call_logs`, "set-aside" for a call whose log failed on its own
    (`set_aside_call_log`), or "waiting" for a call left to the next job: a split stops
    once past `deadline` (`time.monotonic()`).

    A batch that fails for what can be one call's fault (`workers.set_aside.
    one_calls_fault`: its data, a case it opens) is written again in halves, down to
    single calls, so every call that can be written is: one call whose log fails costs
    at most 2 ceil(log2(batch)) + 1 transactions, not one per call (among 200: 15 to 17,
    8 or 9 of them failing, the batch and each part holding it). Raises any other
    failure (the database down, read-only, missing a table: true of every call): the
    job fails, RQ retries it, and the calls not committed still wait.

    The split goes in order, the first half first, so every call before the part it
    tries next is written or set aside: that part heads the waiting calls. Before each
    try it renews the mark that a job is at work and keeps the part's size
    (`jobs.queues.CALL_LOGS_SPLIT`), the size the next batch is taken at, so a job that
    stops at `deadline` (or dies) leaves the next one to go on from there; every job
    takes the split one try further, and none starts it over. `taken_at`: the size
    this batch was taken at (smaller while a split is under way; written whole, the
    next batch may be twice as large).
    """
    outcomes: dict[str, str] = {}
    parts = [sids]  # a stack: the next part to try last
    split = False
    while parts:
        part = parts.pop()
        if split:
            _split_at(desk, len(part))
            if time.monotonic() > deadline:
                outcomes.update(dict.fromkeys([s for p in (part, *parts) for s in p],
                                              "waiting"))
                return outcomes
        try:
            written = write_call_logs(desk, part)
        except Exception as exc:
            if not one_calls_fault(exc):
                raise
            split = True
            if len(part) == 1:
                set_aside_call_log(desk.r, part[0], exc)
                outcomes[part[0]] = "set-aside"
                continue
            half = len(part) // 2
            parts += [part[half:], part[:half]]
            continue
        for sid in (sid for sid, outcome in written.items() if outcome == "no-call"):
            # Named once, when its part is written (a split reads it at every level).
            log.error("call %s ended with no call left in Redis; nothing to log", sid)
        outcomes.update(written)
    if split:
        desk.r.delete(CALL_LOGS_SPLIT)  # over: whole batches again
    elif taken_at < LOG_BATCH:
        _split_at(desk, taken_at * 2)
    return outcomes


def _split_at(desk: Desk, size: int) -> None:
    """Keep the size the next batch is taken at while a split is under way (none from
    `LOG_BATCH` on), and renew the mark that a job is at work."""
    pipe = desk.r.pipeline(transaction=False)
    if size < LOG_BATCH:
        pipe.set(CALL_LOGS_SPLIT, size, ex=CALL_LOGS_SPLIT_SECONDS)
    else:
        pipe.delete(CALL_LOGS_SPLIT)
    pipe.expire(CALL_LOGS_QUEUED, CALL_LOGS_QUEUED_SECONDS)
    pipe.execute()


def write_call_logs(desk: Desk, sids: list[str]) -> dict[str, str]:
    """Write the logs of these calls in one transaction, and take them off the calls
    waiting for their log once it is committed (a call refused at the front door leaves
    its hash then: `routing.call_state.forget_refused_calls`); per call "written",
    "amended" (logged before, and its call changed since: a webhook Twilio posted after
    the call's end, `_amend_call_logs`), "exists" (logged before, nothing new: a
    repeated callback, a re-run job) or "no-call" (nothing in Redis). Any failure rolls the whole
    transaction back and is raised: an `IntegrityError` too, unless a fresh read finds
    that another writer logged some of these calls meanwhile (then it writes the rest,
    up to `CONFLICT_TRIES` times); `write_or_set_aside` tells the calls apart.

    Their marks of a change (`jobs.queues.CALLS_CHANGED`) come off before their state
    is read, and a call marked again by the commit (`jobs.queues.requeue_call_log`: its
    state changed after the read) stays among the calls to log (`_TAKE_OFF_UNCHANGED`),
    for the next batch to bring its log up to date."""
    if desk.session_factory is None:
        raise RuntimeError("no database configured")
    if not sids:
        return {}
    pipe = desk.r.pipeline(transaction=False)
    pipe.srem(CALLS_CHANGED, *sids)
    for sid in sids:
        pipe.hgetall(keys.call(sid))
    calls = dict(zip(sids, pipe.execute()[1:], strict=True))
    outcomes = {sid: "no-call" for sid, call in calls.items() if not call}
    now = datetime.now(UTC)
    for attempt in range(CONFLICT_TRIES):
        with desk.session_factory() as db:
            logged = _logged(db, calls)
            try:
                todo, cases, contacts = _add_call_logs(db, calls, logged, now)
                amended = _amend_call_logs(db, calls, logged)
                # A callback's row goes with the writing of its log, in one commit: there
                # is never a moment with neither (an empty Redis would lose the callback)
                # nor both for long (it would be put back after its log).
                drop_logged_callbacks(db, [sid for sid, call in calls.items()
                                           if call.get("callback") == "1"])
                db.commit()
            except IntegrityError:
                # Another job wrote some of them first (a conflict: the next try skips
                # them), or a call breaks a constraint itself (say a new case in a
                # district not in the directory): that fails the same every time, and
                # is raised at once, for `write_or_set_aside` to find the call.
                db.rollback()
                if attempt + 1 == CONFLICT_TRIES or not _logged(db, calls) - logged:
                    raise
                continue
            for case in cases:
                cache_case(desk.r, case)
        script(desk.r, _TAKE_OFF_UNCHANGED)(keys=[CALLS_TO_LOG, CALLS_CHANGED], args=sids,
                                            client=desk.r)
        # Off the calls to log first: a worker dying in between leaves a hash, not a log
        # to write with no call left to write it from.
        forget_refused_calls(desk.r, {sid: calls[sid] for sid in (*todo, *logged)})
        # A callback's call, kept while the callback was pending, goes in a day now.
        keep_a_day_more(desk.r, [sid for sid, call in calls.items()
                                 if call.get("callback") == "1"])
        for facts in contacts:
            cache_contact(desk.r, facts)
        outcomes.update(dict.fromkeys(logged, "exists"))
        outcomes.update(dict.fromkeys(amended, "amended"))
        outcomes.update(dict.fromkeys(todo, "written"))
        if todo:
            log.info("%d call(s) logged: %s", len(todo), ", ".join(todo))
        if amended:
            log.info("%d call log(s) brought up to date: %s", len(amended), ", ".join(amended))
        return outcomes
    raise AssertionError("unreachable")  # pragma: no cover


# Take calls (ARGV) whose logs were just committed off the calls to log (KEYS[1]), but
# those marked changed (KEYS[2]) since their state was read. With none marked (the usual
# case) two commands, whatever the batch.
_TAKE_OFF_UNCHANGED = """
if redis.call('SCARD', KEYS[2]) == 0 then return redis.call('ZREM', KEYS[1], unpack(ARGV)) end
for _, sid in ipairs(ARGV) do
  if redis.call('SISMEMBER', KEYS[2], sid) == 0 then redis.call('ZREM', KEYS[1], sid) end
end
return 0
"""


def _logged(db: Session, calls: dict[str, dict[str, str]]) -> set[str]:
    """The calls (those with a state) whose log is in the database already."""
    return set(db.scalars(select(CallLog.call_sid).where(
        CallLog.call_sid.in_([sid for sid, call in calls.items() if call]))))


def _add_call_logs(
    db: Session, calls: dict[str, dict[str, str]], logged: set[str], now: datetime
) -> tuple[list[str], list[Case], list[dict[str, str]]]:
    """Add the logs of the calls not `logged` yet to the transaction: those added, the
    cases they went on, the contacts whose activity moved."""
    todo = [sid for sid, call in calls.items() if call and sid not in logged]
    on_case = cases_for_calls(db, {sid: calls[sid] for sid in todo}, now)
    if todo:
        # One INSERT of every row (executemany) through SQLAlchemy Core, after the cases
        # it refers to: no ORM object and unit of work per row (half the worker's CPU).
        db.execute(insert(CallLog.__table__), [
            _call_log_row(sid, calls[sid], case.number if (case := on_case[sid]) else None)
            for sid in todo])
    cases = {case.number: case for case in on_case.values() if case is not None}
    # A verified call is activity for the 180-day rule, in the same transaction, on the
    # Central date it was made (a log written late, after a set-aside, keeps its day).
    latest: dict[str, date] = {}
    for sid in todo:
        call = calls[sid]
        if call.get("verified") == "1" and call.get("contact"):
            day = central_date(reported_at(call, now))
            latest[call["contact"]] = max(day, latest.get(call["contact"], day))
    by_day: dict[date, set[str]] = {}
    for contact, day in latest.items():
        by_day.setdefault(day, set()).add(contact)
    facts = [fact for day, contacts in sorted(by_day.items())
             for fact in touch_contacts(db, contacts, day)]
    return todo, list(cases.values()), facts


# What a log written already takes from its call's state when that changed after the
# call's end: all it records, but the row's identity and the case it went on (decided
# once, opening a case maybe) and when the call started (the log's day; the mark that
# the state is the one the log was written from).
_KEPT_ON_AMEND = frozenset({"call_sid", "case_number", "started_at"})


def _amend_call_logs(db: Session, calls: dict[str, dict[str, str]],
                     logged: set[str]) -> list[str]:
    """Bring the logs of these `logged` calls up to date with their calls' state, in the
    transaction: each row as `_call_log_row` makes it from the state now (the very
    code of the first write), keeping its CallSid, case and start, and what its
    `details` held that the state no longer says. The calls whose row changed.

    Only from the state the row was written from: a hash made anew for the call (Redis
    lost it, then a repeated status callback opened one with what Twilio posted) starts
    at another moment and would erase what the log knows; such a row is left as it is
    (and named)."""
    if not logged:
        return []
    table = CallLog.__table__
    rows = db.execute(select(table).where(table.c.call_sid.in_(sorted(logged)))).mappings()
    amended = []
    for row in rows:
        sid = row["call_sid"]
        fresh = _call_log_row(sid, calls[sid], row["case_number"])
        if fresh["started_at"] != row["started_at"]:
            log.warning("call %s changed after its log was written, but its state in Redis "
                        "is not the one the log was written from (it starts at %s, the log "
                        "at %s): the log is left as it is", sid,
                        fresh["started_at"].isoformat(), row["started_at"].isoformat())
            continue
        fresh["details"] = {**(row["details"] or {}), **fresh["details"]}
        changes = {name: value for name, value in fresh.items()
                   if name not in _KEPT_ON_AMEND and value != row[name]}
        if changes:
            db.execute(update(table).where(table.c.call_sid == sid).values(**changes))
            amended.append(sid)
    return amended


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
    text = get_call(desk.r, call_sid).get("transcription")
    if not text:
        return "no-transcription"
    return _set_detail(desk, call_sid, "transcription", text)


def attach_colleagues(call_sid: str) -> str:
    """Bring `details.colleagues` on the call's log up to date with the call's state
    (a colleague's leg that ended after the contact's: Twilio posts the two in no
    promised order). Idempotent; raises `CallLogNotWritten` (the job retries) until
    the row exists."""
    desk = current_desk()
    colleagues = conference.colleagues(get_call(desk.r, call_sid))
    if not colleagues:
        return "no-colleagues"
    return _set_detail(desk, call_sid, "colleagues", colleagues)


def _set_detail(desk: Desk, call_sid: str, name: str, value: object) -> str:
    """Set `details[name]` on the call's log: "written", or "exists" when it already
    says so; `CallLogNotWritten` while there is no row (the job retries)."""
    if desk.session_factory is None:
        raise RuntimeError("no database configured")
    with desk.session_factory() as db:
        row = db.scalars(select(CallLog).where(CallLog.call_sid == call_sid)).first()
        if row is None:
            raise CallLogNotWritten(call_sid)
        details = dict(row.details or {})
        if details.get(name) == value:
            return "exists"
        row.details = {**details, name: value}
        db.commit()
    log.info("%s of call %s put on its log", name, call_sid)
    return "written"


def _survey_details(call: dict[str, str]) -> dict[str, object]:
    """The survey on the log: offered (counts for the 30-day rule) and when (Unix ms),
    answers, opt-out."""
    details: dict[str, object] = {}
    if call.get("survey_offered") == "1":
        details["survey_offered"] = True
        if call.get("survey_offered_at", "").isdigit():
            details["survey_offered_at"] = int(call["survey_offered_at"])  # Unix ms
        details["survey"] = survey.answers(call)
    if call.get("survey_opt_out") == "1":
        details["survey_opt_out"] = True
    return details


def _call_log_row(call_sid: str, call: dict[str, str],
                  case_number: str | None) -> dict[str, Any]:
    """The call-log row for a call, as `call_logs` column values (for a Core insert)."""
    queue_wait = call.get("queue_wait_ms")
    return dict(
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
            "too_many_calls": call.get("refused") == TOO_MANY_CALLS,
            # The fallback reply given: "number" (dialed) or "apology" (none set).
            **({"fallback": call["fallback"]} if call.get("fallback") else {}),
            # A callback, and the contact's time on hold before asking for it (seconds):
            # the wait the service level counts (queue_wait_seconds runs on to the call back).
            **({"callback": True} if call.get("callback") == "1" else {}),
            **({"callback_hold_seconds": round(int(call["callback_hold_ms"]) / 1000, 3)}
               if call.get("callback") == "1" and call.get("callback_hold_ms", "").isdigit()
               else {}),
            **({"callback_not_dialled": call["callback_not_dialled"]}
               if call.get("callback_not_dialled") else {}),
            # Put back in its queue from the database after Redis lost it.
            **({"callback_restored": True} if call.get("callback_restored") else {}),
            **({"transcription": call["transcription"]} if call.get("transcription") else {}),
            **_survey_details(call),
            **({"colleagues": conference.colleagues(call)}
               if any(k.startswith("colleague:") for k in call) else {}),
        },
    )
