"""The on-call engineer's line (`CASELINE_ONCALL_NUMBER`): one person, so one
outage caller at a time, in the hosting queue's order, and answered only when
they take the call.

- The line is taken for one call before their phone rings, in the same step as
  the call is marked for it (`take_line`, `offer_to_head`), and freed when that
  ring or talk ends (`free_line`: the `<Dial>` action, or the call's end when the
  action never comes). Held at most the talk lease, as an advisor's talk.
- A new caller takes it only while nobody waiting for hosting may have the
  engineer; otherwise they wait too, and the first caller in the queue who may
  have them is offered the engineer once the line is free: at once, by a REST
  redirect (`take_for_first_waiting`, `outage.serve_oncall_line`; a hold cycle
  comes only once the hold music has played out), or on their hold cycle
  (`offer_to_head`) if that comes first: the queue's order (priority, then arrival) holds for the
  engineer as for the advisors; a repeat of the hold cycle that took the line
  (Twilio's retry without its token) tells the caller to leave again
  (`left_for_engineer`). Who may have them is the night's rule
  (`may_have_engineer`): a contact who asked for a callback has left the line
  (their place waits for the advisors), and a caller the night's rules do not
  route (an outage accepted before the close for a district not hosted) waits
  for hosting's advisors; neither holds the engineer from the callers behind.
- Like an advisor, the engineer hears a whisper and takes the call with a key
  (`play_whisper`, `take_call`): a voicemail that picks up presses no key, so it
  never "answers" a Critical outage (the caller goes back to wait for hosting).
- Whether someone ahead may have the engineer is read from at most `AHEAD_READ`
  callers, the nearest ahead (for a new caller, the last of the Critical band they
  join, where every caller who may have the engineer waits), in the same script as
  the take: never the whole queue, which may hold thousands of callbacks kept for
  the morning. Those kept callbacks and the evening's reports are older, at the
  head; tonight's outage callers queue behind them, together, so the nearest ahead
  are the ones who may come first. When more than `AHEAD_READ` callers the engineer
  does not serve separate two who may have them, the one behind may reach the
  engineer first (the one ahead waits for the next free line): a rare unfairness,
  accepted over a take that blocks Redis for the whole queue on every hold cycle.
"""

from __future__ import annotations

from directory import keys
from directory.scripts import script
from routing import auth
from routing.call_state import get_call, update_call
from routing.desk import Desk
from routing.presence import BAND_WIDTH
from routing.whisper import Whisper, call_facts

# Who answers for the on-call engineer in the call's hash and its log.
ONCALL = "on-call"
# A caller the engineer missed is offered them again no sooner than this (ms).
REOFFER_AFTER_MS = 60_000
# How many callers just ahead of one who may have the engineer `_TAKE` reads at most:
# a hundred call hashes block Redis a few hundred microseconds (0.4-0.5 ms measured
# under load, 200 up to 1.3 ms), as the queue scans elsewhere (`acd.GONE_SCAN_CHUNK`).
AHEAD_READ = 100

# Take the line (KEYS[1]) for a call (ARGV[1]) and mark the call (KEYS[2]) in one
# step, never for a call that is over (KEYS[3]). ARGV[3] "new": only while nobody in
# the team's queue (KEYS[4]) just ahead of where the caller joins may have the
# engineer; "head": only for a caller still queued with nobody just ahead of them who
# may, taken out of the queue (the desk's pages told, ARGV[5]). ARGV[2]: the lease (s);
# ARGV[4]: now (ms); ARGV[6], [7] and [8], [9]: a call's hash's key and its ended mark's
# key, before and after the CallSid; ARGV[10]: how many callers ahead are read at most
# (`AHEAD_READ`); ARGV[11]: the width of a priority band (the Critical band is below
# it). 1 when the line is this call's (again, for a repeat of the step that took it).
# Who may have the engineer, as `may_have_engineer` says (keep the two alike): a
# caller still on the line (not over, not a callback's contact) reporting an outage
# as a verified contact of a hosted district. Such a caller is Critical, so everyone
# who may come first is in the Critical band, ahead: only the ARGV[10] nearest ahead
# are read (never the whole queue: see the module's docstring).
_TAKE = """
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return 1 end
if holder then return 0 end
local function may_have(sid)
  local f = redis.call('HMGET', ARGV[6] .. sid .. ARGV[7], 'callback', 'outage',
                       'verified', 'hosted')
  return f[1] ~= '1' and f[2] == '1' and f[3] == '1' and f[4] == '1' and
         redis.call('EXISTS', ARGV[8] .. sid .. ARGV[9]) == 0
end
local n = tonumber(ARGV[10])
local ahead
if ARGV[3] == 'new' then
  ahead = redis.call('ZREVRANGEBYSCORE', KEYS[4], '(' .. ARGV[11], '-inf', 'LIMIT', 0, n)
else
  local rank = redis.call('ZRANK', KEYS[4], ARGV[1])
  if not rank or not may_have(ARGV[1]) then return 0 end
  ahead = {}
  if rank > 0 then
    ahead = redis.call('ZRANGE', KEYS[4], math.max(0, rank - n), rank - 1)
  end
end
for _, sid in ipairs(ahead) do
  if may_have(sid) then return 0 end
end
if ARGV[3] ~= 'new' then
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('PUBLISH', ARGV[5], 'queue')
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', KEYS[2], 'oncall_tried', '1', 'oncall_tried_at', ARGV[4],
           'state', 'oncall', 'oncall_whisper', '')
return 1
"""

# The engineer pressed the key: the call is theirs only while the line is still
# this call's (not after its ring ended) and the call is not over; the lease runs
# from the answer.
_TAKE_CALL = """
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], 'oncall_whisper', 'accepted', 'answered_by', ARGV[4],
           'answered_at', ARGV[3])
return 1
"""

# Free the line only for the call holding it (a late action of an earlier call
# must not free it for the next one).
_FREE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# The line just freed (KEYS[1], free), take it for the first caller in the team's queue
# (KEYS[2]) who may have the engineer, and mark their call, in one step, as `_TAKE`
# "head" does on their hold cycle: read among the ARGV[5] callers at the end of the
# Critical band (below ARGV[6]), where every caller who may have the engineer waits
# (see the module's docstring), the earliest who may. ARGV[1], [2] and [3], [4]: a
# call's hash's key and its ended mark's key, before and after the CallSid; ARGV[7]:
# the lease (s); ARGV[8]: now (ms); ARGV[9]: how long (ms) after the engineer missed a
# caller they are not rung for them again; ARGV[10]: the desk's pages' channel. The
# CallSid taken, or false: the line is held, nobody waiting may have the engineer, or
# the first who may was missed by them in the last ARGV[9] ms (they wait, as on their
# hold cycle, and the callers behind them too).
_TAKE_FIRST = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local tail = redis.call('ZREVRANGEBYSCORE', KEYS[2], '(' .. ARGV[6], '-inf', 'LIMIT', 0,
                        tonumber(ARGV[5]))
for i = #tail, 1, -1 do
  local sid = tail[i]
  local call = ARGV[1] .. sid .. ARGV[2]
  local f = redis.call('HMGET', call, 'callback', 'outage', 'verified', 'hosted',
                       'oncall_tried', 'oncall_tried_at')
  if f[1] ~= '1' and f[2] == '1' and f[3] == '1' and f[4] == '1' and
     redis.call('EXISTS', ARGV[3] .. sid .. ARGV[4]) == 0 then
    if f[5] and f[5] ~= '' and
       tonumber(ARGV[8]) - (tonumber(f[6] or '') or 0) < tonumber(ARGV[9]) then
      return false
    end
    redis.call('ZREM', KEYS[2], sid)
    redis.call('PUBLISH', ARGV[10], 'queue')
    redis.call('SET', KEYS[1], sid, 'EX', ARGV[7])
    redis.call('HSET', call, 'oncall_tried', '1', 'oncall_tried_at', ARGV[8],
               'state', 'oncall', 'oncall_whisper', '', 'oncall_dialed', '')
    return sid
  end
end
return false
"""

# Twilio could not be asked to bring the caller `_TAKE_FIRST` took the line for (ARGV[1]):
# while the line (KEYS[1]) is still theirs and their call (KEYS[2]) is not over (KEYS[3])
# nor dialing the engineer already, they go back to their place in their team's queue
# (ARGV[2], with {}: their score kept in `wait_score`), not counted as missed by the
# engineer, and the line is free. 1 when they did.
_GIVE_BACK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local f = redis.call('HMGET', KEYS[2], 'waiting_team', 'wait_score', 'oncall_dialed')
if f[3] == '1' or not f[1] or f[1] == '' or not tonumber(f[2] or '') then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZADD', (string.gsub(ARGV[2], '{}', function() return f[1] end, 1)), f[2],
           ARGV[1])
redis.call('HSET', KEYS[2], 'state', 'waiting', 'oncall_tried', '', 'oncall_tried_at', '')
redis.call('PUBLISH', ARGV[3], 'queue')
return 1
"""


def may_have_engineer(call: dict[str, str]) -> bool:
    """Whether a caller waiting at night may have the on-call engineer, as far as their
    call says: still on the line (not a contact who asked for a callback) and reporting
    an outage as a verified contact of a hosted district (`outage.routed_at_night`).
    `_TAKE` reads the same fields in the queue."""
    return (call.get("callback") != "1" and call.get("outage") == "1"
            and auth.is_authorized(call) and call.get("hosted") == "1")


def _take(desk: Desk, call_sid: str, team: str, mode: str, now_ms: int) -> bool:
    """`_TAKE` for `mode` "new" or "head"."""
    call_key = keys.call("{}").split("{}")
    ended_key = keys.call_ended("{}").split("{}")
    return bool(script(desk.r, _TAKE)(
        keys=[keys.oncall_line(), keys.call(call_sid), keys.call_ended(call_sid),
              keys.team_waiting(team)],
        args=[call_sid, desk.settings.talk_lease_seconds, mode, now_ms, keys.desk_changes(),
              *call_key, *ended_key, AHEAD_READ, BAND_WIDTH],
        client=desk.r))


def take_line(desk: Desk, call_sid: str, now_ms: int, team: str) -> bool:
    """Take the on-call line for a new outage caller (`now_ms`: ms since the epoch,
    UTC), marking the call `state=oncall`; False while the line is busy, while anyone
    in `team`'s queue may have the engineer (they come first: `may_have_engineer`),
    or when the call is over."""
    return _take(desk, call_sid, team, "new", now_ms)


def offer_to_head(desk: Desk, call_sid: str, call: dict[str, str], now_ms: int) -> bool:
    """On a hold cycle at night: take the on-call line for this caller if they are the
    first in their queue who may have the engineer (`may_have_engineer`: callbacks
    and callers the night does not route, ahead of them, wait for the advisors), the
    line is free, and the engineer did not miss them in the last `REOFFER_AFTER_MS`;
    they are taken out of the queue (True: they leave it, and `waiting.after_queue`
    dials the engineer)."""
    tried_at = int(call.get("oncall_tried_at") or 0)
    if call.get("oncall_tried") and now_ms - tried_at < REOFFER_AFTER_MS:
        return False
    return _take(desk, call_sid, call.get("waiting_team") or "", "head", now_ms)


def left_for_engineer(desk: Desk, call_sid: str, call: dict[str, str]) -> bool:
    """Whether this caller left the queue for the engineer (`offer_to_head`) and the line
    is still theirs: a hold cycle then repeated (Twilio's retry without its token, whose
    reply Twilio acts on) must tell them to leave again, or they stay in Twilio's queue
    out of the desk's, and the line stays held for them for the talk lease."""
    return call.get("state") == "oncall" and desk.r.get(keys.oncall_line()) == call_sid


def take_for_first_waiting(desk: Desk, team: str, now_ms: int) -> str | None:
    """The line is free: take it for the first caller waiting in `team`'s queue who may
    have the engineer (`_TAKE_FIRST`), taken out of the queue and marked `state=oncall`
    as their hold cycle would (`offer_to_head`); their CallSid, or None. `now_ms`: ms
    since the epoch. The caller is then brought over by a REST redirect
    (`availability.serve_oncall_line`), not at their next hold cycle, which may be a
    whole hold-music track away."""
    call_key = keys.call("{}").split("{}")
    ended_key = keys.call_ended("{}").split("{}")
    taken = script(desk.r, _TAKE_FIRST)(
        keys=[keys.oncall_line(), keys.team_waiting(team)],
        args=[*call_key, *ended_key, AHEAD_READ, BAND_WIDTH, desk.settings.talk_lease_seconds,
              now_ms, REOFFER_AFTER_MS, keys.desk_changes()],
        client=desk.r)
    return taken or None


def give_back(desk: Desk, call_sid: str) -> bool:
    """Twilio could not be asked to bring the caller the line was taken for
    (`take_for_first_waiting`): they go back to their place in the queue, not counted
    as missed, and the line is free (`_GIVE_BACK`); False, nothing changed, when the
    line is no longer theirs, their call is over, or they are being dialed already."""
    return bool(script(desk.r, _GIVE_BACK)(
        keys=[keys.oncall_line(), keys.call(call_sid), keys.call_ended(call_sid)],
        args=[call_sid, keys.team_waiting("{}"), keys.desk_changes()], client=desk.r))


def brought_over(desk: Desk, call_sid: str) -> bool:
    """Whether Twilio fetched the document that dials the engineer for this caller
    (`oncall_dialed`, written as it answers it)."""
    return desk.r.hget(keys.call(call_sid), "oncall_dialed") == "1"


def note_dialed(desk: Desk, call_sid: str) -> None:
    """The caller's next document dials the engineer: a REST redirect still being
    retried must not be sent again (it would cut that ring: `brought_over`)."""
    update_call(desk.r, call_sid, oncall_dialed=1)


def free_line(desk: Desk, call_sid: str) -> bool:
    """Free the on-call line if this call holds it; whether it did."""
    return bool(script(desk.r, _FREE)(keys=[keys.oncall_line()], args=[call_sid],
                                      client=desk.r))


def play_whisper(desk: Desk, call_sid: str) -> Whisper | None:
    """The on-call engineer picked up: what to tell them (None when the caller is no
    longer waiting for them). Only their key answers (`answered`)."""
    call = get_call(desk.r, call_sid)
    if call.get("state") != "oncall" or desk.r.get(keys.oncall_line()) != call_sid:
        return None
    if call.get("oncall_whisper") != "accepted":
        update_call(desk.r, call_sid, oncall_whisper="played")
    return call_facts(call)


def take_call(desk: Desk, call_sid: str, now_ms: int) -> bool:
    """The on-call engineer pressed the accept key: bridged, if their ring for this
    caller is still on and the caller still there (`now_ms`: ms since the epoch)."""
    return bool(script(desk.r, _TAKE_CALL)(
        keys=[keys.oncall_line(), keys.call(call_sid), keys.call_ended(call_sid)],
        args=[call_sid, desk.settings.talk_lease_seconds, now_ms, ONCALL], client=desk.r))


def answered(call: dict[str, str], dial_bridged: bool) -> bool:
    """Whether the on-call engineer took the call: they pressed the key (`take_call`
    wrote it), or Twilio says it bridged them to the caller (`DialBridged=true`, which
    only the accept's reply does). Never Twilio's `completed` alone: the whisper's own
    hang-up (no key, or a whisper that failed) ends their leg `completed` too."""
    return call.get("oncall_whisper") == "accepted" or dial_bridged
