"""The ACD's decisions: who a caller rings next, what happens when a ring
fails, when a call ends, and when an advisor frees up.

Each function runs one presence script, records the outcome on the call's
session, and only then talks to the outside world (a REST redirect of a
waiting caller). Time is a parameter (`now_ms`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from routing import keys, presence
from routing.call_session import (
    get_session,
    is_ended,
    mark_ended,
    record_try,
    update_session,
)
from routing.desk import Desk
from workers.queues import schedule_end_of_wrapup

log = logging.getLogger(__name__)

ANSWERED_DIAL_STATUSES = {"completed", "answered"}
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
    session = get_session(desk.r, call_sid)
    if is_ended(desk.r, call_sid):
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
    update_session(desk.r, call_sid, state="queued")
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
    desk: Desk, call_sid: str, dial_status: str, talk_seconds: int, now_ms: int
) -> Decision:
    """The on-call engineer's ring ended: done if answered, else wait for hosting."""
    if dial_status in ANSWERED_DIAL_STATUSES:
        update_session(desk.r, call_sid, answered_by="on-call", talk_seconds=talk_seconds,
                       state="answered")
        return CallFinished("on-call")
    return route_caller(desk, call_sid, now_ms)


def _ring(desk: Desk, call_sid: str, advisor_id: str, now_ms: int) -> DialAdvisor:
    """Note the try on the session and describe the advisor to dial."""
    facts = presence.advisor_state(desk.r, advisor_id)
    if (desk.r.hget(keys.call(call_sid), "ringing") or "") != advisor_id:
        record_try(desk.r, call_sid, advisor_id)
    update_session(desk.r, call_sid, state="ringing", ringing=advisor_id, whisper="")
    return DialAdvisor(advisor_id, facts.get("phone", ""), facts.get("name", advisor_id))


def connect_claimed(desk: Desk, call_sid: str, now_ms: int) -> Decision:
    """A waiting caller was redirected to us: dial the advisor claimed for them."""
    session = get_session(desk.r, call_sid)
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
    desk: Desk, call_sid: str, advisor_id: str, dial_status: str, talk_seconds: int, now_ms: int
) -> Decision:
    """The ring of an advisor ended: finish an answered call, else try the next advisor."""
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
    if is_ended(desk.r, call_sid):
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
        schedule_end_of_wrapup(desk.job_redis, advisor_id, hold, wrapup)


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
    release = presence.make_available(
        desk.r, advisor_id, now_ms=now_ms, lease_ms=desk.lease_ms,
        expected_call=expected_call, skip_call=skip_call, explicit=explicit,
    )
    for _ in range(_MAX_REDIRECT_ATTEMPTS):
        if release.outcome != "claimed" or not release.call_sid:
            return release
        caller = release.call_sid
        session = get_session(desk.r, caller)
        url = f"{session.get('base', '').rstrip('/')}/voice/connect"
        if not is_ended(desk.r, caller) and session.get("base") and desk.telephony.redirect_call(
            caller, url
        ):
            _note_dequeued(desk, caller, session, now_ms)
            return release
        log.info("waiting caller %s is gone; advisor %s goes on", caller, advisor_id)
        update_session(desk.r, caller, advisor="")
        release = presence.make_available(
            desk.r, advisor_id, now_ms=now_ms, lease_ms=desk.lease_ms,
            expected_call=caller, skip_call=caller,
        )
    return release


def _note_dequeued(desk: Desk, call_sid: str, session: dict[str, str], now_ms: int) -> None:
    """Record how long the caller waited in the queue."""
    enqueued = int(session.get("enqueued_at") or now_ms)
    waited = float(session.get("queue_wait_ms") or 0) + max(0, now_ms - enqueued)
    update_session(desk.r, call_sid, queue_wait_ms=int(waited), state="connecting")
    team = session.get("waiting_team") or session.get("team") or "general"
    pipe = desk.r.pipeline()
    pipe.lpush(keys.team_waits(team), round(waited / 1000, 3))
    pipe.ltrim(keys.team_waits(team), 0, 49)
    pipe.execute()


def end_call(desk: Desk, call_sid: str, call_status: str, duration: int, now_ms: int) -> bool:
    """The call is over: free what it held; True only the first time (log it then)."""
    if not mark_ended(desk.r, call_sid):
        return False
    session = get_session(desk.r, call_sid)
    fields: dict[str, str | int] = {"ended_at": now_ms, "call_status": call_status,
                                     "duration": duration}
    team = session.get("waiting_team")
    if team and desk.r.zrem(keys.team_waiting(team), call_sid):
        enqueued = int(session.get("enqueued_at") or now_ms)
        fields["queue_wait_ms"] = int(session.get("queue_wait_ms") or 0) + now_ms - enqueued
        fields["abandoned"] = 1
    if "started_at" not in session:
        fields["started_at"] = now_ms - duration * 1000
    update_session(desk.r, call_sid, **fields)
    advisor_id = session.get("advisor") or ""
    if advisor_id and desk.r.hget(keys.advisor(advisor_id), "call") == call_sid:
        if session.get("answered_by") == advisor_id:
            finish_with_advisor(desk, call_sid, advisor_id, now_ms)
        else:
            free_advisor(desk, advisor_id, now_ms, expected_call=call_sid, skip_call=call_sid)
    return True


def end_wrapup(desk: Desk, advisor_id: str, hold: str, now_ms: int) -> presence.Release:
    """Wrap-up time is over: the advisor is available (or takes the next caller)."""
    return free_advisor(desk, advisor_id, now_ms, expected_call=hold)


def reconcile(desk: Desk, now_ms: int) -> dict[str, int]:
    """Free expired holds and drop waiting callers whose call is over."""
    freed = dropped = 0
    for advisor_id in presence.expired_leases(desk.r, now_ms):
        state = presence.advisor_state(desk.r, advisor_id)
        lease = int(state.get("lease") or 0)
        if lease and lease > now_ms:
            continue
        hold = state.get("call") or ""
        free_advisor(desk, advisor_id, now_ms, expected_call=hold, skip_call=hold)
        freed += 1
    for team in desk.r.smembers(keys.teams()):
        for call_sid in desk.r.zrange(keys.team_waiting(team), 0, -1):
            if is_ended(desk.r, call_sid) or not desk.r.exists(keys.call(call_sid)):
                desk.r.zrem(keys.team_waiting(team), call_sid)
                dropped += 1
    return {"freed": freed, "dropped": dropped}
