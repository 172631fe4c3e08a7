"""The ACD: who a caller rings next, what happens when a ring ends, when a call
ends, and the reconciler that frees holds nobody released.

Each function runs one presence script, records the outcome on the call's
hash, and only then talks to the outside world. Time is a parameter (`now_ms`).
What happens when an advisor frees up is `routing.availability`; the waiting side
is `routing.waiting`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from directory import keys
from directory.catalog import GENERAL
from directory.scripts import as_hash, script
from jobs.queues import CALLS_TO_LOG, enqueue_call_log
from routing import presence
from routing.availability import finish_with_advisor, free_advisor
from routing.call_state import (
    CALL_TTL_SECONDS,
    call_and_end,
    get_call,
    is_ended,
    note_ringing,
    update_call,
    update_logged_call,
)
from routing.changes import announce_change
from routing.desk import Desk

log = logging.getLogger(__name__)

ANSWERED_DIAL_STATUSES = {"completed", "answered"}
# Twilio's final call statuses: the call is over (any other status is progress).
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
# The `<Dial>`'s DialCallStatus of a ring the advisor let go by (`completed` unanswered:
# their voicemail picked up and pressed no key at the whisper); `canceled` is the
# caller's hang-up, never the advisor's miss.
MISSED_RING_STATUSES = frozenset({"no-answer", "busy", "failed", "completed"})


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
class AlreadyWaiting:
    """Not queued: another call from the caller's number holds its one waiting place
    (an unverified outage report already waits). The caller may leave a message,
    which goes where their call's log goes (the number's outage case)."""

    call_sid: str


@dataclass(frozen=True)
class Nothing:
    """Nothing to say: the call goes on as it was (an empty TwiML document)."""


Decision = DialAdvisor | WaitInQueue | CallFinished | DialNumber | AlreadyWaiting


def route_caller(desk: Desk, call_sid: str, now_ms: int) -> Decision:
    """Claim the next advisor for a caller (owner first), or queue them (unless their
    number's one waiting place is another call's: `AlreadyWaiting`)."""
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
    if claim.outcome == "taken" and claim.place_holder:
        update_call(desk.r, call_sid, state="already-waiting", place_holder=claim.place_holder)
        return AlreadyWaiting(claim.place_holder)
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
    """A waiting caller was redirected to us: dial the advisor claimed for them.

    An advisor who chose busy or offline after they were claimed (the redirect takes
    a moment, seconds while Twilio's API is failing) is not rung: the caller goes
    back to their place and is routed afresh, and the advisor keeps their choice
    (PRODUCT: busy or offline set by the advisor is their own choice)."""
    call, ended = call_and_end(desk.r, call_sid)
    if ended or is_final(call_status) or not call:
        return CallFinished(None)  # nothing to connect: the end frees the advisor
    advisor_id = call.get("advisor") or ""
    if advisor_id:
        # The ring starts now, maybe seconds after the claim (the redirect's retries): its
        # hold is renewed for a whole ring (the claim's lease, from now), in the step
        # that checks the advisor did not go away meanwhile.
        held = presence.renew_ring(desk.r, advisor_id, call_sid, now_ms + desk.lease_ms,
                                   unless_away=True)
        if held == 1:
            return ring(desk, call_sid, advisor_id, now_ms)
        if held == -1:
            free_advisor(desk, advisor_id, now_ms, expected_call=call_sid,
                         skip_call=call_sid, settle_held_call=True)
    # The claim expired before Twilio came back, or its advisor went away: route afresh.
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


def dial_answered(call: dict[str, str], advisor_id: str, dial_status: str,
                  bridged: bool) -> bool:
    """Whether the advisor took the call their `<Dial>` rang them for: they accepted at
    the whisper (`accept_call` wrote it on the call), or Twilio says it bridged the two
    legs (`DialBridged=true`), which only the accept's reply does (a Redis restored
    from before the accept lost the first). Never `DialCallStatus=completed` alone
    (PRODUCT: no key counts as no answer): caseline's own reply that hangs up the
    advisor's leg (no key, a whisper that failed or found the call gone) ends that
    leg `completed` too."""
    return call.get("answered_by") == advisor_id or (
        bridged and dial_status in ANSWERED_DIAL_STATUSES)


def after_dial(
    desk: Desk, call_sid: str, advisor_id: str, dial_status: str, talk_seconds: int, now_ms: int,
    call_status: str = "in-progress", call: dict[str, str] | None = None,
    bridged: bool = False,
) -> Decision:
    """The ring of an advisor ended: finish an answered call (`dial_answered`), else try
    the next advisor.

    Twilio may post this `<Dial>` action after the caller hung up, before the
    status callback (`call_status` is then final): the advisor is released and
    nobody else is rung for a caller who is gone. `call`: the call's hash when the
    caller has just read it; `bridged`: Twilio's `DialBridged`.
    """
    call = call if call is not None else get_call(desk.r, call_sid)
    answered = dial_answered(call, advisor_id, dial_status, bridged)
    if answered:
        # Twilio may post this after the status callback: the log then gets the talk late.
        update_logged_call(desk, call_sid, answered_by=advisor_id, talk_seconds=talk_seconds,
                           state="answered")
        finish_with_advisor(desk, call_sid, advisor_id, now_ms)
        return CallFinished(advisor_id)
    if presence.on_call(desk.r, advisor_id, call_sid):
        update_call(desk.r, call_sid, advisor="", ringing="")
        # A ring that ended while the caller was there, the advisor's doing (a caller
        # hanging up ends it "canceled", with a final CallStatus): one more missed.
        missed = dial_status in MISSED_RING_STATUSES and not is_final(call_status)
        free_advisor(desk, advisor_id, now_ms, expected_call=call_sid, skip_call=call_sid,
                     missed_ring=missed)
    if is_final(call_status) or is_ended(desk.r, call_sid):
        return CallFinished(None)
    return route_caller(desk, call_sid, now_ms)


# A call's end, in one round trip: marked once (KEYS[2]: the first final status wins),
# its hash kept a day more (a pending callback's, and its mark, until the callback is
# over and logged), off the open calls (KEYS[3]: the reconciler no longer asks
# Twilio about it), and for that first status: a waiting caller taken out of
# their queue (an abandonment: the wait so far counted, the desk's pages told), or one
# who waited and was claimed for an advisor they never reached (an abandonment too), a call
# never seen to begin (or whose state was lost) given its start and marked untracked,
# the end's fields written, the call put among the calls to log (KEYS[4]), and whether
# its advisor still rings or talks on it (not in wrap-up). A contact keeping their place
# for a callback only has the end's fields written, those not set yet (a callback
# over before this end came keeps its `ended_at`).
# ARGV: [1] the hash's TTL (s), [2] when it ended (ms), [3] CallStatus, [4] CallDuration (s),
# [5] the caller's number, [6] the team queues' key (with {}), [7] the advisors' key
# (with {}), [8] the desk's change channel, [9] the CallSid, [10] now (Unix s: the
# score of the calls to log).
# Returns {0, the hash now (flat), 1 when the advisor is still on it} for a repeat
# ({0} for a callback's contact's); {2} for a callback's contact; else {1, the hash
# before the end (flat), the fields written (flat), 1 when the advisor is still on it}.
_END_CALL = """
local first = redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1])
local flat = redis.call('HGETALL', KEYS[1])
local call = {}
for i = 1, #flat, 2 do call[flat[i]] = flat[i + 1] end
-- A pending callback is one the desk will still place: its contact waits in their
-- team's queue, or an advisor has it (claimed, ringing, dialing the contact). One
-- marked so that waits nowhere (a request the previous release wrote as the call
-- ended) will never be placed, over or logged: it is kept no longer than any call.
local team = call['waiting_team']
local pending = call['callback'] == '1' and call['callback_state'] ~= 'done' and
  ((call['advisor'] or '') ~= '' or call['callback_state'] == 'ringing-advisor' or
   call['callback_state'] == 'dialing-contact' or call['callback_state'] == 'answered' or
   (team and team ~= '' and
    redis.call('ZSCORE', (string.gsub(ARGV[6], '{}', function() return team end, 1)), ARGV[9])))
if pending then
  -- The call and its end are kept until the callback is over and logged
  -- (`call_state.KEEP_UNLESS_PENDING_CALLBACK`), over a weekend if need be.
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
else
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
redis.call('ZREM', KEYS[3], ARGV[9])
local function advisor_on_call()
  -- Whether the call's advisor still rings or talks on it (not in wrap-up after it).
  local advisor = call['advisor']
  if not advisor or advisor == '' then return 0 end
  local held = redis.call('HMGET', (string.gsub(ARGV[7], '{}',
      function() return advisor end, 1)), 'call', 'hold')
  if held[1] == ARGV[9] and held[2] ~= 'wrapup' then return 1 end
  return 0
end
if not first then
  -- A repeat (Twilio's, the web's kept end, the reconciler's): the first end's
  -- releases, which run after this script, may have met a Redis failure. Its hash as
  -- it is now and whether its advisor still rings or talks on it, for the releases
  -- to run again; a callback's contact releases nothing, as at its first end.
  if call['callback'] == '1' then return {0} end
  return {0, flat, advisor_on_call()}
end
local now = tonumber(ARGV[2])
-- Twilio's end time is whole seconds: a call over within the second it began must
-- not end before it began.
local started = tonumber(call['started_at'] or '')
if started and now < started then now = started end
local fields = {'ended_at', string.format('%d', now), 'call_status', ARGV[3],
                'duration', ARGV[4]}
if call['callback'] == '1' then
  -- Only the fields not set yet: a callback already over keeps its own end (its
  -- talk came after this call's end, which the reconciler or a late status brings).
  for i = 1, #fields, 2 do redis.call('HSETNX', KEYS[1], fields[i], fields[i + 1]) end
  return {2}
end
local waited_before = tonumber(call['queue_wait_ms'] or '') or 0
local enqueued = tonumber(call['enqueued_at'] or '') or now
if team and team ~= '' and
    redis.call('ZREM', (string.gsub(ARGV[6], '{}',
        function() return team end, 1)), ARGV[9]) == 1 then
  redis.call('PUBLISH', ARGV[8], 'queue')
  -- Twilio's end time is whole seconds: it may read before this wait began.
  local waited = waited_before + math.max(0, now - enqueued)
  table.insert(fields, 'queue_wait_ms')
  table.insert(fields, string.format('%d', waited))
  table.insert(fields, 'abandoned')
  table.insert(fields, '1')
elseif team and team ~= '' and (call['answered_by'] or '') == '' and
    (call['state'] == 'queued' or call['state'] == 'connecting' or
     call['state'] == 'ringing') then
  -- A caller who waited in a queue and hung up before reaching an advisor: claimed
  -- for a freed advisor (out of the queue, not yet brought over, or the redirect
  -- found them gone), or ringing one. Their wait ended at the claim, which noted it
  -- (`note_dequeued`), but for a claim made just before this end and not noted yet.
  if call['state'] == 'queued' then
    local claimed = tonumber(call['claimed_at'] or '') or now
    table.insert(fields, 'queue_wait_ms')
    table.insert(fields, string.format('%d', waited_before + math.max(0, claimed - enqueued)))
  end
  table.insert(fields, 'abandoned')
  table.insert(fields, '1')
end
if not call['started_at'] then
  -- A call we never saw begin (its first webhook failed, or never came) or whose state
  -- Redis lost: log what Twilio told us, and that the line kept nothing of its course.
  -- Whether the caller was given the fallback reply is its own mark (`fallback`, set
  -- where that reply is given: `call_state.note_fallback`), never guessed from this.
  table.insert(fields, 'untracked')
  table.insert(fields, '1')
  table.insert(fields, 'started_at')
  table.insert(fields, string.format('%d', now - tonumber(ARGV[4]) * 1000))
  table.insert(fields, 'caller')
  table.insert(fields, ARGV[5])
  if #flat == 0 then
    redis.call('HSET', KEYS[1], 'call_sid', ARGV[9])
    redis.call('EXPIRE', KEYS[1], ARGV[1])
  end
end
redis.call('HSET', KEYS[1], unpack(fields))
-- Among the calls to log in the same step as its end: a Redis error after this
-- script (before the log's job is queued) cannot lose the log, which the
-- reconciler resumes (`jobs.queues.resume_call_logs`); a retry finds the end
-- recorded and logs nothing (it only runs the releases again).
redis.call('ZADD', KEYS[4], 'NX', ARGV[10], ARGV[9])
return {1, flat, fields, advisor_on_call()}
"""


@dataclass(frozen=True)
class CallEnd:
    """A final status applied to a call (`record_end`). `first`: this status recorded
    the end (its log is to be written now); else a repeat, whose releases ran again.
    `call`: the call's hash as it ended (first: with the fields the end wrote), or as
    it is now (a repeat). `released`: its advisor still rang or talked on it, and this
    end released them (a repeat that did found the first end applied halfway)."""

    call: dict[str, str]
    first: bool
    released: bool = False


def record_end(
    desk: Desk, call_sid: str, call_status: str, duration: int, now_ms: int, caller: str = "",
    ended_ms: int | None = None,
) -> CallEnd | None:
    """The call is over: record its end (first end wins) and free its advisor. None for
    a status that is not final (Twilio's `ringing`, `in-progress`: the caller is still
    on the line; nothing changes) and for a callback's contact, who keeps their place
    (at their first end or a repeat: their log is written when the callback is over).

    The end is recorded in one round trip (`_END_CALL`: the end's mark, the call off
    the open calls and among the calls to log, exactly once); the advisor's release
    runs after it, in Python (a wrap-up schedules a job on the jobs' Redis; a freed
    advisor may be handed a waiting caller through Twilio's API). Redis failing
    between the two (a blip, a failover) must not leave the advisor held for a
    talk's lease (hours): so a repeat of the final status (the web's kept end retrying
    it, Twilio's repeat, the reconciler) runs the release again when the script finds
    the advisor still ringing or talking on this call. It is idempotent: a wrap-up
    starts once (`presence.hold_for` moves only a hold on the call that is not
    already wrap-up, and only that move schedules its end), a release names the call
    (`expected_call`), so a repeat days later leaves an advisor now on another call,
    or in wrap-up after this one, as they are. The log, the end's fields and the
    calls to log are written by the first end only. `duration`: Twilio's CallDuration
    (s); `now_ms`, `ended_ms`: ms since the epoch, `ended_ms` when the call ended if
    earlier than now (Twilio's end time, for a call the reconciler found over:
    `ended_at` and a wait in the queue count to it).
    """
    if not is_final(call_status):
        return None
    ended = script(desk.r, _END_CALL)(
        keys=[keys.call(call_sid), keys.call_ended(call_sid), keys.open_calls(),
              CALLS_TO_LOG],
        args=[CALL_TTL_SECONDS, min(now_ms, ended_ms or now_ms), call_status, max(0, duration),
              caller[:40], keys.team_waiting("{}"), keys.advisor("{}"), keys.desk_changes(),
              call_sid, f"{time.time():.6f}"],
        client=desk.r)
    outcome = int(ended[0])
    if outcome == 0 and len(ended) == 3:
        call, first, on_call = as_hash(ended[1]), False, int(ended[2])
    elif outcome == 1:
        call, first, on_call = as_hash(ended[1]) | as_hash(ended[2]), True, int(ended[3])
    else:
        return None
    if on_call:
        _release_advisor(desk, call_sid, call, now_ms)
    return CallEnd(call, first, bool(on_call))


def _release_advisor(desk: Desk, call_sid: str, call: dict[str, str], now_ms: int) -> None:
    """The call is over and its advisor still rings or talks on it: wrap-up after a
    call they answered, else available at once (`now_ms`: ms since the epoch)."""
    advisor_id = call.get("advisor") or ""
    if call.get("answered_by") == advisor_id:
        finish_with_advisor(desk, call_sid, advisor_id, now_ms)
    else:
        free_advisor(desk, advisor_id, now_ms, expected_call=call_sid, skip_call=call_sid)


def end_call(
    desk: Desk, call_sid: str, call_status: str, duration: int, now_ms: int, caller: str = "",
    ended_ms: int | None = None,
) -> dict[str, str] | None:
    """The call is over: free what it held (`record_end`). Returns the call's hash as it
    ended (with `ended_at`, `call_status`, `duration` and the rest of what this wrote)
    when its log should be written now, else None (a repeat, whose releases ran
    again, a status that is not final, a callback's contact keeping their place)."""
    end = record_end(desk, call_sid, call_status, duration, now_ms, caller=caller,
                     ended_ms=ended_ms)
    return end.call if end is not None and end.first else None


def note_recording(desk: Desk, call_sid: str, url: str, seconds: str) -> bool:
    """Keep a voicemail's recording on the call; True when the call had already ended
    (its log may be written: the recording must be added to it)."""
    call, ended = call_and_end(desk.r, call_sid)
    if not call:
        return False  # a call we never saw: nothing to attach it to
    update_call(desk.r, call_sid, recording_url=url, recording_seconds=seconds)
    return ended


def note_transcribed_recording(desk: Desk, call_sid: str, url: str) -> bool:
    """Keep on the call the recording Twilio names with a voicemail's transcription
    callback (its `RecordingUrl`), when the call has none: the `<Record>` action that
    brings it first (`note_recording`) was lost (Redis unreachable past what the web
    process kept, or a bug). True when it was kept and the call had already ended (its
    log may be written: the recording must be added to it). Its duration is not posted
    with the transcription: none is kept."""
    call, ended = call_and_end(desk.r, call_sid)
    if not call or call.get("recording_url"):
        return False  # never seen, or the `<Record>` action came: nothing to add
    update_call(desk.r, call_sid, recording_url=url)
    return ended


def note_transcription(desk: Desk, call_sid: str, text: str) -> bool:
    """Keep a voicemail's transcription (Twilio's `TranscriptionText`) on the call;
    True when there is a call to keep it on (its log then needs the text)."""
    if not text or not get_call(desk.r, call_sid):
        return False
    update_call(desk.r, call_sid, transcription=text)
    return True


def _is_unheard_callback_ring(desk: Desk, call_sid: str, advisor_id: str) -> bool:
    """Whether `call_sid` is a callback whose leg to this advisor still rings, to the
    desk: when their hold expired, the leg's end never reached the desk (Twilio's
    status callback was lost, or it came before the desk had recorded the leg it
    had just placed, and was not recognised)."""
    call = get_call(desk.r, call_sid)
    return (call.get("callback") == "1" and call.get("callback_state") == "ringing-advisor"
            and call.get("ringing") == advisor_id)


def _release_expired_hold(desk: Desk, advisor_id: str, state: dict[str, str],
                          now_ms: int) -> bool:
    """Free an advisor whose hold's lease ran out by `now_ms` (ms since the epoch), and
    settle the call it held; `state` is their presence as read when the hold was found
    expired. True when they were freed.

    The call is settled in the release's own step (`presence.make_available` with
    `settle_held_call`): a waiting caller claimed for the advisor and never brought
    over goes back to their place; a callback whose leg's end never reached the desk
    counts as not taken (the contact back in their place, or after the third offer
    the callback done and logged), or, taken, is over and logged. A webhook may move
    the hold on at the same moment (the advisor takes the call as the lease runs
    out): then it wins, the release is refused, and nothing is done here; after the
    release, its own step is refused."""
    lease = int(state.get("lease") or 0)
    if lease and lease > now_ms:
        return False
    call_sid, wrapup = state.get("call") or "", state.get("hold") == "wrapup"
    settle = bool(call_sid) and not wrapup
    unheard = settle and _is_unheard_callback_ring(desk, call_sid, advisor_id)
    release = free_advisor(desk, advisor_id, now_ms, expected_call=call_sid,
                           skip_call="" if wrapup else call_sid, ending_wrapup=wrapup,
                           expired_by_ms=now_ms, settle_held_call=settle)
    if release.outcome in ("stale", "unknown"):
        return False
    if unheard:
        log.warning("callback %s: the end of %s's leg never reached the desk; ended as "
                    "unanswered when the hold expired", call_sid, advisor_id)
    if settle:
        call = get_call(desk.r, call_sid)
        if (call.get("callback") == "1" and call.get("callback_state") == "done"
                and call.get("ended_at") == str(now_ms)):
            # A callback the release ended (an unheard ring's third offer, or one taken
            # whose leg's end never came): logged now. The release put it among the
            # calls to log, so the reconciler resumes its log should this process die.
            enqueue_call_log(desk.job_redis, call_sid)
    return True


def reconcile(desk: Desk, now_ms: int) -> dict[str, int]:
    """Free expired holds and drop waiting callers whose call is over. Returns counts:
    {"freed": advisors, "dropped": waiting callers}."""
    freed = dropped = 0
    for advisor_id in presence.expired_leases(desk.r, now_ms):
        state = presence.advisor_state(desk.r, advisor_id)
        if _release_expired_hold(desk, advisor_id, state, now_ms):
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
