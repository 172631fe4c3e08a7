"""The ACD: who a caller rings next, what happens when a ring ends, when a call
ends, and the reconciler that frees holds nobody released.

Each function runs one presence script, records the outcome on the call's
hash, and only then talks to the outside world. Time is a parameter (`now_ms`).
What happens when an advisor frees up is `routing.availability`; the waiting side
is `routing.waiting`.
"""

from __future__ import annotations

from dataclasses import dataclass

from directory import keys
from directory.catalog import GENERAL
from directory.scripts import script
from routing import presence
from routing.availability import finish_with_advisor, free_advisor
from routing.call_state import (
    call_and_end,
    get_call,
    is_ended,
    mark_ended,
    note_ringing,
    start_call,
    update_call,
)
from routing.changes import announce_change
from routing.desk import Desk

ANSWERED_DIAL_STATUSES = {"completed", "answered"}
# Twilio's final call statuses: the call is over (any other status is progress).
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


def is_final(call_status: str) -> bool:
    """Whether a posted `CallStatus` says the caller's call is over (Twilio's vocabulary)."""
    return call_status in FINAL_CALL_STATUSES


@dataclass(frozen=True)
class DialAdvisor:
    """Ring this advisor for the caller, for `ring_seconds` (the desk's ring timeout)."""

    advisor_id: str
    phone: str
    name: str
    ring_seconds: int


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


@dataclass(frozen=True)
class Nothing:
    """Nothing to say: the call goes on as it was (an empty TwiML document)."""


Decision = DialAdvisor | WaitInQueue | CallFinished | DialNumber


def route_caller(desk: Desk, call_sid: str, now_ms: int) -> Decision:
    """Claim the next advisor for a caller (owner first), or queue them."""
    call, ended = call_and_end(desk.r, call_sid)
    if ended:
        return CallFinished(call.get("answered_by") or None)
    team = call.get("team") or GENERAL
    claim = presence.claim_for_caller(
        desk.r,
        call_sid,
        team=team,
        owner_id=call.get("owner") or None,
        now_ms=now_ms,
        lease_ms=desk.lease_ms,
        priority=call.get("priority") or "medium",
    )
    if claim.outcome == "advisor" and claim.advisor_id:
        return ring(desk, call_sid, claim.advisor_id, now_ms)
    return WaitInQueue(team=team, position=claim.position or 1)


def ring(desk: Desk, call_sid: str, advisor_id: str, now_ms: int) -> DialAdvisor:
    """Note the try on the call and describe the advisor claimed for it, to dial.

    However the advisor was claimed (by the caller's own claim, or handed the
    caller when they freed up), they count as tried: if they do not answer, the
    caller is not rung to them again at once (hold cycles re-offer later)."""
    facts = note_ringing(desk.r, call_sid, advisor_id, now_ms)
    return DialAdvisor(advisor_id, facts.get("phone", ""), facts.get("name", advisor_id),
                       desk.settings.ring_timeout_seconds)


def connect_claimed(desk: Desk, call_sid: str, now_ms: int,
                    call_status: str = "in-progress") -> Decision:
    """A waiting caller was redirected to us: dial the advisor claimed for them."""
    call, ended = call_and_end(desk.r, call_sid)
    if ended or is_final(call_status) or not call:
        return CallFinished(None)  # nothing to connect: the end frees the advisor
    advisor_id = call.get("advisor") or ""
    if advisor_id and presence.on_call(desk.r, advisor_id, call_sid):
        return ring(desk, call_sid, advisor_id, now_ms)
    # The claim expired before Twilio came back: route afresh.
    return route_caller(desk, call_sid, now_ms)


def accept_call(desk: Desk, call_sid: str, advisor_id: str, now_ms: int,
                leg_sid: str = "") -> bool:
    """The advisor pressed the accept key: the call is theirs until it ends.

    `leg_sid` is the advisor's own leg (the `<Dial>`'s child call), kept so the
    call can be moved into a conference later."""
    held = presence.hold_for(
        desk.r, advisor_id, call_sid=call_sid, hold="talking",
        lease_until_ms=now_ms + desk.settings.talk_lease_seconds * 1000,
    )
    if held:
        update_call(
            desk.r, call_sid, whisper="accepted", answered_by=advisor_id, answered_at=now_ms,
            state="bridged", advisor_leg=leg_sid,
        )
    return held


def after_dial(
    desk: Desk, call_sid: str, advisor_id: str, dial_status: str, talk_seconds: int, now_ms: int,
    call_status: str = "in-progress", call: dict[str, str] | None = None,
) -> Decision:
    """The ring of an advisor ended: finish an answered call, else try the next advisor.

    Twilio may post this `<Dial>` action after the caller hung up, before the
    status callback (`call_status` is then final): the advisor is released and
    nobody else is rung for a caller who is gone. `call`: the call's hash when the
    caller has just read it.
    """
    call = call if call is not None else get_call(desk.r, call_sid)
    answered = call.get("answered_by") == advisor_id or (
        dial_status in ANSWERED_DIAL_STATUSES and call.get("whisper") != "played"
    )
    if answered:
        update_call(
            desk.r, call_sid, answered_by=advisor_id, talk_seconds=talk_seconds, state="answered"
        )
        finish_with_advisor(desk, call_sid, advisor_id, now_ms)
        return CallFinished(advisor_id)
    if presence.on_call(desk.r, advisor_id, call_sid):
        update_call(desk.r, call_sid, advisor="", ringing="")
        free_advisor(desk, advisor_id, now_ms, expected_call=call_sid, skip_call=call_sid)
    if is_final(call_status) or is_ended(desk.r, call_sid):
        return CallFinished(None)
    return route_caller(desk, call_sid, now_ms)


def end_call(
    desk: Desk, call_sid: str, call_status: str, duration: int, now_ms: int, caller: str = ""
) -> dict[str, str] | None:
    """The call is over: free what it held. Returns the call's hash as it ended (with
    `ended_at`, `call_status`, `duration` and the rest of what this wrote) when its log
    should be written now, else None.

    None for a repeated callback, for a status that is not final (Twilio's
    `ringing`, `in-progress`: the caller is still on the line; nothing
    changes), and for a caller who keeps their place for a callback (their
    log is written when the callback is over).
    """
    if not is_final(call_status):
        return None
    first, call = mark_ended(desk.r, call_sid)
    if not first:
        return None
    fields: dict[str, str | int] = {"ended_at": now_ms, "call_status": call_status,
                                     "duration": duration}
    team = call.get("waiting_team")
    if call.get("callback") == "1":
        update_call(desk.r, call_sid, **fields)
        return None
    if team and desk.r.zrem(keys.team_waiting(team), call_sid):
        announce_change(desk.r, "queue")
        enqueued = int(call.get("enqueued_at") or now_ms)
        fields["queue_wait_ms"] = int(call.get("queue_wait_ms") or 0) + now_ms - enqueued
        fields["abandoned"] = 1
    if "started_at" not in call:
        # A call we never saw begin (its first webhook failed): log what Twilio told us.
        fields["started_at"] = now_ms - duration * 1000
        fields["caller"] = caller[:40]
        start_call(desk.r, call_sid, {})
    update_call(desk.r, call_sid, **fields)
    advisor_id = call.get("advisor") or ""
    if advisor_id and presence.on_call(desk.r, advisor_id, call_sid):
        if call.get("answered_by") == advisor_id:
            finish_with_advisor(desk, call_sid, advisor_id, now_ms)
        else:
            free_advisor(desk, advisor_id, now_ms, expected_call=call_sid, skip_call=call_sid)
    return call | {name: str(value) for name, value in fields.items()}


def note_recording(desk: Desk, call_sid: str, url: str, seconds: str) -> bool:
    """Keep a voicemail's recording on the call; True when the call had already ended
    (its log may be written: the recording must be added to it)."""
    call, ended = call_and_end(desk.r, call_sid)
    if not call:
        return False  # a call we never saw: nothing to attach it to
    update_call(desk.r, call_sid, recording_url=url, recording_seconds=seconds)
    return ended


def note_transcription(desk: Desk, call_sid: str, text: str) -> bool:
    """Keep a voicemail's transcription (Twilio's `TranscriptionText`) on the call;
    True when there is a call to keep it on (its log then needs the text)."""
    if not text or not get_call(desk.r, call_sid):
        return False
    update_call(desk.r, call_sid, transcription=text)
    return True


def _return_unconnected_caller(desk: Desk, call_sid: str, advisor_id: str) -> None:
    """A waiting caller claimed for an advisor whose hold expired before they were
    brought over (the process that was to redirect them died): back to their place."""
    call, ended = call_and_end(desk.r, call_sid)
    if not ended and call.get("state") == "connecting" and call.get("callback") != "1":
        presence.return_to_queue(desk.r, call_sid, advisor_id)


def reconcile(desk: Desk, now_ms: int) -> dict[str, int]:
    """Free expired holds and drop waiting callers whose call is over."""
    freed = dropped = 0
    for advisor_id in presence.expired_leases(desk.r, now_ms):
        state = presence.advisor_state(desk.r, advisor_id)
        lease = int(state.get("lease") or 0)
        if lease and lease > now_ms:
            continue
        call_sid, wrapup = state.get("call") or "", state.get("hold") == "wrapup"
        if call_sid and not wrapup:
            _return_unconnected_caller(desk, call_sid, advisor_id)
        free_advisor(desk, advisor_id, now_ms, expected_call=call_sid,
                     skip_call="" if wrapup else call_sid, ending_wrapup=wrapup)
        freed += 1
    for team in desk.r.smembers(keys.teams()):
        dropped += _drop_gone_callers(desk, team)
    return {"freed": freed, "dropped": dropped}


# Callers checked per script run: a run blocks Redis (every webhook on the line) for
# well under a millisecond, and 5,000 waiting take ten runs, not 15,000 commands.
GONE_SCAN_CHUNK = 500

# KEYS[1]: a team's waiting set. ARGV: first rank, how many, then the call hash's key
# and the call's ended mark's key, each as prefix and suffix around the CallSid.
# Drops from the set the callers in that slice whose call ended or is unknown (never
# one waiting for a callback) and returns them; checked and dropped in one step.
_DROP_GONE = """
local first, count = tonumber(ARGV[1]), tonumber(ARGV[2])
local gone = {}
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], first, first + count - 1)) do
  local call = ARGV[3] .. sid .. ARGV[4]
  if redis.call('HGET', call, 'callback') ~= '1' and
     (redis.call('EXISTS', ARGV[5] .. sid .. ARGV[6]) == 1 or
      redis.call('EXISTS', call) == 0) then
    gone[#gone + 1] = sid
  end
end
if #gone > 0 then redis.call('ZREM', KEYS[1], unpack(gone)) end
return gone
"""


def _drop_gone_callers(desk: Desk, team: str) -> int:
    """Drop the team's waiting callers whose call is over or unknown, `GONE_SCAN_CHUNK`
    at a time, announcing each drop; how many were dropped. A caller joining or leaving
    meanwhile may shift a slice: one skipped now is dropped at the next pass."""
    call_key = keys.call("{}").split("{}")
    ended_key = keys.call_ended("{}").split("{}")
    drop = script(desk.r, _DROP_GONE)
    first = dropped = 0
    while True:
        gone = drop(keys=[keys.team_waiting(team)],
                    args=[first, GONE_SCAN_CHUNK, *call_key, *ended_key], client=desk.r)
        for _ in gone:
            announce_change(desk.r, "queue")
        dropped += len(gone)
        # The slice's survivors stay ahead of the next slice; the dropped left it.
        first += GONE_SCAN_CHUNK - len(gone)
        if first >= desk.r.zcard(keys.team_waiting(team)):
            return dropped
