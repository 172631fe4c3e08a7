"""The ACD's decisions: who a caller rings next, what happens when a ring
fails, when a call ends, and when an advisor frees up.

Each function runs one presence script, records the outcome on the call's
session, and only then talks to the outside world (a REST redirect of a
waiting caller). Time is a parameter (`now_ms`).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from jobs.queues import schedule_end_of_wrapup
from routing import callbacks, keys, presence
from routing.call_session import (
    get_session,
    is_ended,
    mark_ended,
    note_ringing,
    record_try,
    session_and_end,
    start_session,
    update_session,
)
from routing.desk import Desk
from routing.queue import estimate
from telephony import Outcome

log = logging.getLogger(__name__)

ANSWERED_DIAL_STATUSES = {"completed", "answered"}
# Twilio's final call statuses: the call is over (any other status is progress).
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


def is_final(call_status: str) -> bool:
    """Whether a posted `CallStatus` says the caller's call is over (Twilio's vocabulary)."""
    return call_status in FINAL_CALL_STATUSES
# An advisor who did not answer a caller is offered that caller again from the
# queue only after this long (they may have stepped away).
REOFFER_AFTER_MS = 60_000
# How many waiting callers one freed advisor may try before giving up on
# redirects (each failure means that caller had already hung up).
_MAX_REDIRECT_ATTEMPTS = 20


@dataclass(frozen=True)
class DialAdvisor:
    """Ring this advisor for the caller."""

    advisor_id: str
    phone: str
    name: str


@dataclass(frozen=True)
class WaitInQueue:
    """The caller waits in this team's queue."""

    team: str
    position: int


@dataclass(frozen=True)
class CallFinished:
    """Nothing left to route: the call was answered or is over."""

    answered_by: str | None = None


@dataclass(frozen=True)
class DialNumber:
    """Ring an outside number: the on-call engineer for a hosted outage at night."""

    number: str


Decision = DialAdvisor | WaitInQueue | CallFinished | DialNumber


def route_caller(desk: Desk, call_sid: str, now_ms: int) -> Decision:
    """Claim the next advisor for a caller (owner first), or queue them."""
    session, ended = session_and_end(desk.r, call_sid)
    if ended:
        return CallFinished(session.get("answered_by") or None)
    team = session.get("team") or "general"
    claim = presence.claim_for_caller(
        desk.r,
        call_sid,
        team=team,
        owner_id=session.get("owner") or None,
        now_ms=now_ms,
        lease_ms=desk.lease_ms,
        priority=session.get("priority") or "medium",
    )
    if claim.outcome == "advisor" and claim.advisor_id:
        return _ring(desk, call_sid, claim.advisor_id, now_ms)
    return WaitInQueue(team=team, position=claim.position or 1)


def route_outage_after_hours(desk: Desk, call_sid: str, now_ms: int) -> Decision:
    """A hosted outage at night: a hosting advisor if one is free, else on-call, else queue."""
    session = get_session(desk.r, call_sid)
    if is_ended(desk.r, call_sid):
        return CallFinished(None)
    claim = presence.claim_for_caller(
        desk.r, call_sid, team=session.get("team") or "hosting", owner_id=None, now_ms=now_ms,
        lease_ms=desk.lease_ms, priority="critical", queue_if_none=False,
    )
    if claim.outcome == "advisor" and claim.advisor_id:
        return _ring(desk, call_sid, claim.advisor_id, now_ms)
    oncall = desk.settings.oncall_number
    if oncall and not session.get("oncall_tried"):
        update_session(desk.r, call_sid, oncall_tried=1, state="oncall")
        return DialNumber(oncall)
    return route_caller(desk, call_sid, now_ms)


def after_oncall(
    desk: Desk, call_sid: str, dial_status: str, talk_seconds: int, now_ms: int,
    call_status: str = "in-progress",
) -> Decision:
    """The on-call engineer's ring ended: done if answered, else wait for hosting.

    A caller who hung up meanwhile (`call_status` final: Twilio may post this
    before the status callback) is not routed again.
    """
    if dial_status in ANSWERED_DIAL_STATUSES:
        update_session(desk.r, call_sid, answered_by="on-call", talk_seconds=talk_seconds,
                       state="answered")
        return CallFinished("on-call")
    if is_final(call_status):
        return CallFinished(None)
    return route_caller(desk, call_sid, now_ms)


def _ring(desk: Desk, call_sid: str, advisor_id: str, now_ms: int) -> DialAdvisor:
    """Note the try on the session and describe the advisor to dial."""
    facts = note_ringing(desk.r, call_sid, advisor_id)
    return DialAdvisor(advisor_id, facts.get("phone", ""), facts.get("name", advisor_id))


def connect_claimed(desk: Desk, call_sid: str, now_ms: int,
                    call_status: str = "in-progress") -> Decision:
    """A waiting caller was redirected to us: dial the advisor claimed for them."""
    session, ended = session_and_end(desk.r, call_sid)
    if ended or is_final(call_status) or not session:
        return CallFinished(None)  # nothing to connect: the end frees the advisor
    advisor_id = session.get("advisor") or ""
    if advisor_id and desk.r.hget(keys.advisor(advisor_id), "call") == call_sid:
        return _ring(desk, call_sid, advisor_id, now_ms)
    # The claim expired before Twilio came back: route afresh.
    return route_caller(desk, call_sid, now_ms)


def accept_call(desk: Desk, call_sid: str, advisor_id: str, now_ms: int) -> bool:
    """The advisor pressed the accept key: the call is theirs until it ends."""
    held = presence.hold_for(
        desk.r,
        advisor_id,
        expected_call=call_sid,
        new_call=call_sid,
        lease_until_ms=now_ms + desk.settings.talk_lease_seconds * 1000,
    )
    if held:
        update_session(
            desk.r, call_sid, whisper="accepted", answered_by=advisor_id, answered_at=now_ms,
            state="bridged",
        )
    return held


def after_dial(
    desk: Desk, call_sid: str, advisor_id: str, dial_status: str, talk_seconds: int, now_ms: int,
    call_status: str = "in-progress",
) -> Decision:
    """The ring of an advisor ended: finish an answered call, else try the next advisor.

    Twilio may post this `<Dial>` action after the caller hung up, before the
    status callback (`call_status` is then final): the advisor is released and
    nobody else is rung for a caller who is gone.
    """
    session = get_session(desk.r, call_sid)
    answered = session.get("answered_by") == advisor_id or (
        dial_status in ANSWERED_DIAL_STATUSES and session.get("whisper") != "played"
    )
    if answered:
        update_session(
            desk.r, call_sid, answered_by=advisor_id, talk_seconds=talk_seconds, state="answered"
        )
        finish_with_advisor(desk, call_sid, advisor_id, now_ms)
        return CallFinished(advisor_id)
    if desk.r.hget(keys.advisor(advisor_id), "call") == call_sid:
        update_session(desk.r, call_sid, advisor="", ringing="")
        free_advisor(desk, advisor_id, now_ms, expected_call=call_sid, skip_call=call_sid)
    if is_final(call_status) or is_ended(desk.r, call_sid):
        return CallFinished(None)
    return route_caller(desk, call_sid, now_ms)


def finish_with_advisor(desk: Desk, call_sid: str, advisor_id: str, now_ms: int) -> None:
    """The advisor's part of a call is over: wrap-up, then available again."""
    wrapup = desk.settings.wrapup_seconds
    if wrapup <= 0:
        free_advisor(desk, advisor_id, now_ms, expected_call=call_sid)
        return
    hold = f"wrapup-{call_sid}"
    if presence.hold_for(
        desk.r, advisor_id, expected_call=call_sid, new_call=hold,
        lease_until_ms=now_ms + wrapup * 1000,
    ):
        schedule_end_of_wrapup(desk.job_redis, advisor_id, hold, now_ms + wrapup * 1000)


def free_advisor(
    desk: Desk,
    advisor_id: str,
    now_ms: int,
    *,
    expected_call: str = "",
    skip_call: str = "",
    explicit: bool = False,
) -> presence.Release:
    """Make an advisor available, handing them the best waiting caller first.

    A claimed waiting caller is redirected through Twilio's REST API to TwiML
    that dials the advisor; if the redirect fails (the caller hung up), the
    advisor is released again for the next caller.
    """
    overflow_ms = desk.settings.overflow_seconds * 1000
    release = presence.make_available(
        desk.r, advisor_id, now_ms=now_ms, lease_ms=desk.lease_ms,
        expected_call=expected_call, skip_call=skip_call, explicit=explicit,
        overflow_ms=overflow_ms,
    )
    return _serve(desk, advisor_id, release, now_ms)


def _serve(
    desk: Desk, advisor_id: str, release: presence.Release, now_ms: int
) -> presence.Release:
    """Bring the waiting caller the advisor was just claimed for to them (if any)."""
    for _ in range(_MAX_REDIRECT_ATTEMPTS):
        if release.outcome != "claimed" or not release.call_sid:
            return release
        caller = release.call_sid
        session, ended = session_and_end(desk.r, caller)
        base = session.get("base", "").rstrip("/")
        if not ended and base and session.get("callback") != "1":
            _note_dequeued(desk, caller, session, now_ms)
            desk.telephony.later(functools.partial(
                _redirect_or_move_on, desk, caller, advisor_id, f"{base}/voice/connect", now_ms))
            return release
        # A callback caller hung up long ago, on purpose: ring the advisor first.
        if session.get("callback") == "1" and base:
            if _place_callback(desk, caller, advisor_id, session, base):
                _note_dequeued(desk, caller, session, now_ms)
                return release
            # Twilio would not place the call: the contact keeps their place.
            release = _caller_kept(desk, caller, advisor_id, now_ms)
            continue
        release = _caller_gone(desk, caller, advisor_id, now_ms)
    return release


def _caller_gone(desk: Desk, caller: str, advisor_id: str, now_ms: int) -> presence.Release:
    """The claimed waiting caller could not be reached: the advisor takes the next one."""
    log.info("waiting caller %s is gone; advisor %s goes on", caller, advisor_id)
    update_session(desk.r, caller, advisor="")
    return presence.make_available(
        desk.r, advisor_id, now_ms=now_ms, lease_ms=desk.lease_ms, expected_call=caller,
        skip_call=caller, overflow_ms=desk.settings.overflow_seconds * 1000,
    )


def _caller_kept(desk: Desk, caller: str, advisor_id: str, now_ms: int) -> presence.Release:
    """Twilio could not be asked to bring the caller over (it kept failing): the caller
    goes back to their place in the queue and the advisor takes the next one.

    The caller's own hold cycle (`hold_cycle`) then claims a free advisor and
    leaves the queue without any REST request.
    """
    kept = presence.return_to_queue(desk.r, caller, advisor_id)
    log.warning("could not bring waiting caller %s to advisor %s; caller %s their place",
                caller, advisor_id, "keeps" if kept else "had no")
    return presence.make_available(
        desk.r, advisor_id, now_ms=now_ms, lease_ms=desk.lease_ms, expected_call=caller,
        skip_call=caller, overflow_ms=desk.settings.overflow_seconds * 1000,
    )


def _redirect_or_move_on(
    desk: Desk, caller: str, advisor_id: str, url: str, now_ms: int
) -> None:
    """Redirect a claimed waiting caller to their advisor.

    Only Twilio saying the call is over (404, "not in-progress") means the
    caller hung up: the advisor takes the next caller. Any other failure, once
    retries are spent, says nothing about the caller: they keep their place.
    """
    outcome = desk.telephony.redirect_call(caller, url)
    if outcome is Outcome.DONE:
        return
    if outcome is Outcome.GONE:
        release = _caller_gone(desk, caller, advisor_id, now_ms)
    else:
        release = _caller_kept(desk, caller, advisor_id, now_ms)
    _serve(desk, advisor_id, release, now_ms)


def _place_callback(
    desk: Desk, caller: str, advisor_id: str, session: dict[str, str], base: str
) -> bool:
    """Ring the advisor for a callback; the advisor's leg then dials the contact."""
    phone = presence.advisor_state(desk.r, advisor_id).get("phone", "")
    query = f"call={caller}&advisor={advisor_id}"
    leg = desk.telephony.place_call(
        to=phone,
        from_=session.get("to") or session.get("caller", ""),
        url=f"{base}/voice/callback/advisor?{query}",
        status_callback=f"{base}/voice/callback/status?{query}",
    )
    if leg is None:
        return False
    record_try(desk.r, caller, advisor_id)
    update_session(desk.r, caller, callback_state="ringing-advisor", callback_leg=leg,
                   ringing=advisor_id)
    return True


def _note_dequeued(desk: Desk, call_sid: str, session: dict[str, str], now_ms: int) -> None:
    """Record how long the caller waited in the queue."""
    enqueued = int(session.get("enqueued_at") or now_ms)
    waited = float(session.get("queue_wait_ms") or 0) + max(0, now_ms - enqueued)
    team = session.get("waiting_team") or session.get("team") or "general"
    pipe = desk.r.pipeline(transaction=False)
    pipe.hset(keys.call(call_sid), mapping={"queue_wait_ms": int(waited), "state": "connecting"})
    pipe.lpush(keys.team_waits(team), round(waited / 1000, 3))
    pipe.ltrim(keys.team_waits(team), 0, 49)
    pipe.execute()


def end_call(
    desk: Desk, call_sid: str, call_status: str, duration: int, now_ms: int, caller: str = ""
) -> bool:
    """The call is over: free what it held; True when its log should be written now.

    False for a repeated callback, for a status that is not final (Twilio's
    `ringing`, `in-progress`: the caller is still on the line; nothing
    changes), and for a caller who keeps their place for a callback (their
    log is written when the callback is over).
    """
    if not is_final(call_status):
        return False
    first, session = mark_ended(desk.r, call_sid)
    if not first:
        return False
    fields: dict[str, str | int] = {"ended_at": now_ms, "call_status": call_status,
                                     "duration": duration}
    team = session.get("waiting_team")
    if session.get("callback") == "1":
        update_session(desk.r, call_sid, **fields)
        return False
    if team and desk.r.zrem(keys.team_waiting(team), call_sid):
        enqueued = int(session.get("enqueued_at") or now_ms)
        fields["queue_wait_ms"] = int(session.get("queue_wait_ms") or 0) + now_ms - enqueued
        fields["abandoned"] = 1
    if "started_at" not in session:
        # A call we never saw begin (its first webhook failed): log what Twilio told us.
        fields["started_at"] = now_ms - duration * 1000
        fields["caller"] = caller[:40]
        start_session(desk.r, call_sid, {})
    update_session(desk.r, call_sid, **fields)
    advisor_id = session.get("advisor") or ""
    if advisor_id and desk.r.hget(keys.advisor(advisor_id), "call") == call_sid:
        if session.get("answered_by") == advisor_id:
            finish_with_advisor(desk, call_sid, advisor_id, now_ms)
        else:
            free_advisor(desk, advisor_id, now_ms, expected_call=call_sid, skip_call=call_sid)
    return True


def note_recording(desk: Desk, call_sid: str, url: str, seconds: str) -> bool:
    """Keep a voicemail's recording on the call; True when the call had already ended
    (its log may be written: the recording must be added to it)."""
    session, ended = session_and_end(desk.r, call_sid)
    if not session:
        return False  # a call we never saw: nothing to attach it to
    update_session(desk.r, call_sid, recording_url=url, recording_seconds=seconds)
    return ended


def end_wrapup(desk: Desk, advisor_id: str, hold: str, now_ms: int) -> presence.Release:
    """Wrap-up time is over: the advisor is available (or takes the next caller)."""
    return free_advisor(desk, advisor_id, now_ms, expected_call=hold)


def _return_unconnected_caller(desk: Desk, hold: str, advisor_id: str) -> None:
    """A waiting caller claimed for an advisor whose hold expired before they were
    brought over (the process that was to redirect them died): back to their place."""
    if not hold or hold.startswith("wrapup-"):
        return
    session, ended = session_and_end(desk.r, hold)
    if not ended and session.get("state") == "connecting" and session.get("callback") != "1":
        presence.return_to_queue(desk.r, hold, advisor_id)


def reconcile(desk: Desk, now_ms: int) -> dict[str, int]:
    """Free expired holds and drop waiting callers whose call is over."""
    freed = dropped = 0
    for advisor_id in presence.expired_leases(desk.r, now_ms):
        state = presence.advisor_state(desk.r, advisor_id)
        lease = int(state.get("lease") or 0)
        if lease and lease > now_ms:
            continue
        hold = state.get("call") or ""
        _return_unconnected_caller(desk, hold, advisor_id)
        free_advisor(desk, advisor_id, now_ms, expected_call=hold, skip_call=hold)
        freed += 1
    for team in desk.r.smembers(keys.teams()):
        for call_sid in desk.r.zrange(keys.team_waiting(team), 0, -1):
            callback = desk.r.hget(keys.call(call_sid), "callback") == "1"
            if not callback and (is_ended(desk.r, call_sid)
                                 or not desk.r.exists(keys.call(call_sid))):
                desk.r.zrem(keys.team_waiting(team), call_sid)
                dropped += 1
    return {"freed": freed, "dropped": dropped}


# --- waiting callers -----------------------------------------------------------


@dataclass(frozen=True)
class HoldCycle:
    """One hold cycle of a waiting caller: leave for an advisor, or hear where they are."""

    leave: bool
    position: int | None = None
    estimate_seconds: float | None = None
    offer_callback: bool = False  # a verified contact with a dialable directory phone
    offer_voicemail: bool = False  # waited past CASELINE_MAX_WAIT_SECONDS


def hold_cycle(desk: Desk, call_sid: str, now_ms: int) -> HoldCycle:
    """On each hold cycle: claim a free advisor for the caller at the head of a queue,
    else tell them their place and estimated wait.

    The claim catches what no release event would: an advisor left available
    after missing this very caller, or a general advisor idle while this caller
    has waited past the overflow time. Only heads are offered, so order holds.
    """
    session, ended = session_and_end(desk.r, call_sid)
    team = session.get("waiting_team")
    if not team or ended:
        return HoldCycle(leave=False)
    pipe = desk.r.pipeline(transaction=False)
    pipe.zrank(keys.team_waiting(team), call_sid)
    pipe.lrange(keys.team_waits(team), 0, 19)
    pipe.get(keys.team_working(team))
    pipe.zcard(keys.team_available(team))
    pipe.zcard(keys.team_available("general"))
    rank, recent, working, free_here, free_general = pipe.execute()
    # Since their first arrival: a caller queued again after a missed ring keeps it.
    arrived = _arrival_ms(session, now_ms)
    if rank == 0 and session.get("callback") != "1":
        candidates = [team] if free_here else []
        overflowed = now_ms - arrived >= desk.settings.overflow_seconds * 1000
        if team != "general" and free_general and overflowed:
            candidates.append("general")
        for serving_team in candidates:
            claim = presence.claim_for_caller(
                desk.r, call_sid, team=serving_team, owner_id=None, now_ms=now_ms,
                lease_ms=desk.lease_ms, priority=session.get("priority"),
                queue_if_none=False, retry_after_ms=REOFFER_AFTER_MS,
            )
            if claim.outcome == "advisor":
                _note_dequeued(desk, call_sid, session, now_ms)
                return HoldCycle(leave=True)
    position, seconds = estimate(desk, team, rank, recent, working)
    if rank is None:  # being connected, or a callback request: nothing to offer
        return HoldCycle(leave=False, position=position, estimate_seconds=seconds)
    waited_ms = now_ms - arrived
    return HoldCycle(
        leave=False, position=position, estimate_seconds=seconds,
        offer_callback=session.get("callback") != "1"
        and callbacks.callback_number(desk, session) is not None,
        offer_voicemail=waited_ms >= desk.settings.max_wait_seconds * 1000,
    )


# Twilio's `<Enqueue>` action results that mean the caller was never queued
# (their `QueueResult`); the caller is still on the line.
QUEUE_FAILURES = frozenset({"queue-full", "error", "system-error"})
# How many times a caller is put in Twilio's queue before another way is taken.
QUEUE_ATTEMPTS = 2


def leave_queue(desk: Desk, call_sid: str) -> None:
    """The caller cannot wait (Twilio could not queue them): out of their waiting set.

    What they get instead (the fallback number, a voicemail on their case) is
    the caller's next step; the call log says so (`queue_failed`).
    """
    session = get_session(desk.r, call_sid)
    team = session.get("waiting_team")
    if team:
        desk.r.zrem(keys.team_waiting(team), call_sid)
    update_session(desk.r, call_sid, queue_failed=1, state="queue-failed")


def _arrival_ms(session: dict[str, str], now_ms: int) -> int:
    """When the caller first joined a queue (ms): the arrival kept in their score."""
    score = session.get("wait_score")
    if score and score.isdigit():
        return int(score) % presence.BAND_WIDTH
    return int(session.get("enqueued_at") or now_ms)


def request_callback(desk: Desk, call_sid: str, now: datetime | None = None) -> bool:
    """A waiting caller asks to be called back: they keep their place and may hang up.

    Only as `routing.callbacks` allows (a verified contact, their directory
    phone, a few a day); False (the caller keeps waiting) otherwise.
    """
    now = now or datetime.now(UTC)
    session = get_session(desk.r, call_sid)
    team = session.get("waiting_team")
    if not team or desk.r.zscore(keys.team_waiting(team), call_sid) is None:
        return False  # already being connected
    number = callbacks.callback_number(desk, session)
    if number is None or not callbacks.take_callback(desk, session["contact"], now):
        return False
    update_session(desk.r, call_sid, callback="1", callback_state="waiting",
                   callback_number=number)
    return True


def leave_for_voicemail(desk: Desk, call_sid: str) -> bool:
    """A caller who waited past `CASELINE_MAX_WAIT_SECONDS` chose to leave a message
    on their case: out of the queue; False when they are being connected already."""
    session = get_session(desk.r, call_sid)
    team = session.get("waiting_team")
    if not team or not desk.r.zrem(keys.team_waiting(team), call_sid):
        return False
    update_session(desk.r, call_sid, state="voicemail", voicemail_after_wait=1)
    return True


def wants_voicemail(session: dict[str, str]) -> bool:
    """Whether the caller left the queue to leave a message."""
    return session.get("state") == "voicemail"


def accept_callback(desk: Desk, call_sid: str, advisor_id: str, now_ms: int) -> str | None:
    """The advisor took the callback: the number to dial, or None if it is stale."""
    held = presence.hold_for(
        desk.r, advisor_id, expected_call=call_sid, new_call=call_sid,
        lease_until_ms=now_ms + desk.settings.talk_lease_seconds * 1000,
    )
    if not held:
        return None
    update_session(desk.r, call_sid, callback_state="dialing-contact", whisper="accepted")
    return get_session(desk.r, call_sid).get("callback_number") or None


def callback_answered(desk: Desk, call_sid: str, advisor_id: str, talk_seconds: int) -> None:
    """The contact picked up the callback and talked with the advisor."""
    update_session(desk.r, call_sid, answered_by=advisor_id, talk_seconds=talk_seconds,
                   callback_state="answered", state="answered")


def end_callback(
    desk: Desk, call_sid: str, advisor_id: str, leg_status: str, now_ms: int
) -> bool:
    """The advisor's callback leg is over; True when the call's log should be written now.

    An advisor who never took the callback is released and the caller keeps
    their place; otherwise the callback is done, answered or not.
    """
    session = get_session(desk.r, call_sid)
    if session.get("callback") != "1" or session.get("callback_state") == "done":
        return False
    holds = desk.r.hget(keys.advisor(advisor_id), "call") == call_sid
    accepted = session.get("callback_state") in ("dialing-contact", "answered")
    if not accepted:
        offers = int(session.get("callback_offers") or 0) + 1
        if holds:
            score = session.get("wait_score")
            team = session.get("waiting_team") or "general"
            if offers < 3 and score:
                desk.r.zadd(keys.team_waiting(team), {call_sid: int(score)})
                update_session(desk.r, call_sid, callback_offers=offers, advisor="",
                               callback_state="waiting")
            free_advisor(desk, advisor_id, now_ms, expected_call=call_sid, skip_call=call_sid)
            if offers < 3 and score:
                return False
    elif holds:
        if session.get("answered_by") == advisor_id:
            finish_with_advisor(desk, call_sid, advisor_id, now_ms)
        else:
            free_advisor(desk, advisor_id, now_ms, expected_call=call_sid, skip_call=call_sid)
    update_session(desk.r, call_sid, callback_state="done", ended_at=now_ms)
    return True
