"""A call's state in Redis (the call hash, `keys.call`): everything the call
log will say, gathered as the call goes. Here and everywhere, `call` is that
hash as a dict; a database session is `db`.

Webhooks append to the call; they never write SQL. The worker reads it
when the call is over and writes the call log. Each helper here is one round
trip (a small script where a read and a write must go together).
"""

from __future__ import annotations

import redis

from directory import keys
from directory.scripts import as_hash, script
from jobs.queues import CALLS_TO_LOG, requeue_call_log
from routing.desk import Desk

CALL_TTL_SECONDS = 24 * 3600

# The `refused` of a call refused at the front door because its number placed too many
# calls lately (`routing.menu.calls_per_number`); a call refused at verification has
# "1". Its log's status is `refused` either way, and `details.too_many_calls` tells them
# apart.
TOO_MANY_CALLS = "too-many-calls"

# A call opened is put among the open calls (`keys.open_calls`), due for the
# reconciler's first question to Twilio ("is it over?") this long after it opened.
# Its status callback normally ends it within seconds of the caller hanging up and
# takes it off; only a call whose final status callback was lost (Twilio does not
# retry it) is still there then. Most calls are over well within 10 minutes, so
# few calls still live are asked about (each question is one REST request on the
# account's rate limit), and a lost callback's log is written ~10 minutes late
# rather than never.
OPEN_CALL_FIRST_CHECK_MS = 10 * 60 * 1000

# Open the call's hash unless it exists, and put it among the open calls (KEYS[2]),
# due at ARGV[2] (ms): one round trip, and a repeated first webhook (Twilio
# retrying) never overwrites what the call already did. ARGV: [1] the hash's TTL
# (s), [2] the first check's due time (ms), [3] the CallSid, [4..] the fields.
_START = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

# A callback keeps the call it was asked on until the callback is over: the contact
# has hung up and waits (over a weekend, a holiday) for an advisor to call them back,
# and the call is logged only then. So the hash (and its end's mark) of a pending
# callback has no expiry (`acd.end_call` takes it off when the contact hangs up), and
# no later write gives it one back; its log, written once the callback is over, gives
# both the day every call's state keeps (`keep_a_day_more`).
# `keep(key, ttl)`: the hash `key` expires in `ttl` s, unless it is a pending callback's.
KEEP_UNLESS_PENDING_CALLBACK = """
local function keep(key, ttl)
  local callback = redis.call('HMGET', key, 'callback', 'callback_state')
  if callback[1] == '1' and callback[2] ~= 'done' then return end
  redis.call('EXPIRE', key, ttl)
end
"""

# Append `value` to a "sep"-joined field (menu path, advisors tried).
_APPEND = KEEP_UNLESS_PENDING_CALLBACK + """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and current ~= '' then current = current .. ARGV[2] .. ARGV[3]
else current = ARGV[3] end
redis.call('HSET', KEYS[1], ARGV[1], current)
keep(KEYS[1], ARGV[4])
return current
"""

# A step on the menu path, then `fields` (ARGV[5..], name/value pairs); the call after.
_MENU_STEP = _APPEND.replace("return current", """
if #ARGV > 4 then redis.call('HSET', KEYS[1], unpack(ARGV, 5)) end
return redis.call('HGETALL', KEYS[1])
""")

# A menu's key (ARGV[1]) at that menu's try ARGV[2] (its `?attempt=N`) on the menu
# path, once: a try noted already (the hash's field ARGV[4], `menu_try` for the main
# menu, at or past it) is Twilio posting that key again (a retry without its token),
# left as it is. ARGV[3]: the hash's TTL (s). The call after, either way.
_MENU_KEY = """
local noted = tonumber(redis.call('HGET', KEYS[1], ARGV[4]) or '') or 0
if noted < tonumber(ARGV[2]) then
  local path = redis.call('HGET', KEYS[1], 'menu')
  if path and path ~= '' then path = path .. '>' .. ARGV[1] else path = ARGV[1] end
  redis.call('HSET', KEYS[1], 'menu', path, ARGV[4], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return redis.call('HGETALL', KEYS[1])
"""

# The call now rings an advisor: note the try once, however often asked, and when
# (ARGV[3], ms: the claim script skips an advisor rung lately, KEYS[3]); returns the
# advisor's hash (KEYS[2]).
_RINGING = KEEP_UNLESS_PENDING_CALLBACK + """
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[2])
if redis.call('HGET', KEYS[1], 'ringing') ~= ARGV[1] then
  local tried = redis.call('HGET', KEYS[1], 'tried')
  if tried and tried ~= '' then tried = tried .. ',' .. ARGV[1] else tried = ARGV[1] end
  redis.call('HSET', KEYS[1], 'tried', tried)
end
redis.call('HSET', KEYS[1], 'state', 'ringing', 'ringing', ARGV[1], 'whisper', '')
keep(KEYS[1], ARGV[2])
return redis.call('HGETALL', KEYS[2])
"""


# Set fields only on a call we know: a late or stray webhook for a call whose
# hash is gone (or never was) must not leave a hash without an expiry.
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# Count one more on the hash's field ARGV[1] and set fields ARGV[2..]; the count
# after (0: no hash, left alone).
_COUNT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
"""

# The same, only while the hash's field ARGV[1] reads ARGV[2]: fields ARGV[3..].
_UPDATE_WHILE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
return 1
"""


# Set fields (ARGV, name/value pairs) on a call we know, as _UPDATE, and tell in the same
# step whether its log is due already (2) or not (1): its end is recorded (KEYS[2]) and it
# is not a callback still under way (the contact's end comes first; the log waits for
# the callback's). 0 for a call unknown (never seen, or its hash gone).
_UPDATE_LOGGED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
if redis.call('EXISTS', KEYS[2]) == 0 then return 1 end
local callback = redis.call('HMGET', KEYS[1], 'callback', 'callback_state')
if callback[1] == '1' and callback[2] ~= 'done' then return 1 end
return 2
"""


# A waiting caller leaves their queue for something other than an advisor, their wait so
# far noted on the call for its log: `leave_waiting(call, template, sid, now)` takes the
# call `sid` (its hash's key `call`) out of its team's waiting set (`template`, the set's
# key with {} for the team) only if still in it, and adds the time since they joined it
# (`now`, ms) to `queue_wait_ms`. True when they left it now; false (nothing written)
# when they were not waiting (claimed for an advisor meanwhile: that claim noted the
# wait; or a repeat). The call's end (`acd.end_call`) counts an abandoned wait the same
# way, so no wait is counted twice. Shared by `routing.waiting`'s leaving and the
# fallback's mark (`_NOTE_FALLBACK`).
LEAVE_WAITING = """
local function leave_waiting(call, template, sid, now)
  local c = redis.call('HMGET', call, 'waiting_team', 'enqueued_at', 'queue_wait_ms')
  local team = c[1]
  if not team or team == '' then return false end
  if redis.call('ZREM', (string.gsub(template, '{}',
      function() return team end, 1)), sid) == 0 then return false end
  local enqueued = tonumber(c[2] or '') or now
  local waited = (tonumber(c[3] or '') or 0) + math.max(0, now - enqueued)
  redis.call('HSET', call, 'queue_wait_ms', string.format('%d', waited))
  return true
end
"""

# The caller was given the fallback reply (ARGV[1]: "number" or "apology"), in one step:
# kept on the call's hash, opened (with its CallSid, for a day: KEYS[1] ARGV[2] ARGV[3])
# when the line never opened it (the call's first webhook failed), and then put among
# the open calls (KEYS[3], due at ARGV[4], ms) unless its end is recorded already, so a
# lost status callback still has the reconciler end and log it.
# The caller is with the fallback number (or hung up after the apology) and no longer
# waits for the desk: out of their team's waiting set (ARGV[5], with {}), their wait
# noted as `leave_waiting` does (ARGV[7], ms: when the fallback was given), unless the
# call is a callback (its contact is called back, a new call that cuts nothing); an
# advisor claimed for them, never brought over (the call `connecting`: its
# `/voice/connect` failed) and still held ringing for them (ARGV[6], the advisor's key
# with {}) is named in the result, for the caller to release
# (`routing.availability.fallback_given`). When it was given is kept (`fallback_at`):
# the reconciler putting a claimed caller back in their place (`presence.
# return_caller`) leaves out one given the fallback since the claim. Without this a
# freed advisor's claim, or that putting back, would redirect the live call and cut
# the conversation at the fallback number. A call that comes back to the desk after
# the mark (a reply Twilio did not act on) is routed as any other.
# Returns {due, advisor}: due 2 when the call's end is recorded already (KEYS[2]: the
# fallback number's `<Dial>` action came after the status callback): its log is written
# again (a callback still pending is logged later, as `_UPDATE_LOGGED` says), else 1;
# advisor "" when none is to be released. Idempotent: a repeat finds nothing to move.
_NOTE_FALLBACK = LEAVE_WAITING + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'call_sid', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[2])
  end
end
redis.call('HSET', KEYS[1], 'fallback', ARGV[1], 'fallback_at', ARGV[7])
local held = ''
local mine = redis.call('HMGET', KEYS[1], 'callback', 'callback_state', 'advisor', 'state')
if mine[1] ~= '1' then
  leave_waiting(KEYS[1], ARGV[5], ARGV[2], tonumber(ARGV[7]))
  local id = mine[3]
  -- Only a claim never brought over (`connecting`: its `/voice/connect` failed): once
  -- the call rings the advisor, the mark is for a reply Twilio did not act on.
  if id and id ~= '' and mine[4] == 'connecting' then
    local akey = (string.gsub(ARGV[6], '{}', function() return id end, 1))
    local adv = redis.call('HMGET', akey, 'call', 'hold')
    if adv[1] == ARGV[2] and adv[2] == 'ringing' then held = id end
  end
end
if redis.call('EXISTS', KEYS[2]) == 0 then return {1, held} end
if mine[1] == '1' and mine[2] ~= 'done' then return {1, held} end
return {2, held}
"""

# A callback taken by its advisor is over (their leg ended): done, ended at ARGV[1] (ms),
# and among the calls to log (KEYS[2], scored in Unix s, as `jobs.queues.
# enqueue_call_log` scores them), in one step, as the presence scripts end a callback
# nobody took. Its contact hung up long ago (off the open calls), so should the
# process die before it queues the log's job, the reconciler (`jobs.queues.
# resume_call_logs`) still finds the call there, and logs it. 0 for a call unknown.
_END_TAKEN_CALLBACK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'callback_state', 'done', 'ended_at', ARGV[1])
redis.call('ZADD', KEYS[2], 'NX', tonumber(ARGV[1]) / 1000, ARGV[2])
return 1
"""


def end_taken_callback(r: redis.Redis, call_sid: str, now_ms: int) -> bool:
    """The callback `call_sid`, which its advisor took, is over at `now_ms` (ms since
    the epoch): done, and among the calls to log, in one step (`_END_TAKEN_CALLBACK`);
    the caller then queues the log's job. False, nothing written, for a call unknown."""
    return bool(script(r, _END_TAKEN_CALLBACK)(
        keys=[keys.call(call_sid), CALLS_TO_LOG], args=[now_ms, call_sid], client=r))


# Calls whose logs were just written: those kept without expiry while a callback was
# pending, and over now, get the day every call's state keeps, hash and end's mark.
# The mark is looked at whatever the hash's expiry was: a hash may have been given its
# day already (a log set aside, a status callback repeated after the callback's end)
# while its mark, kept since the contact hung up, has none; once the hash goes (or has
# gone), so does the mark.
# ARGV: [1] the TTL (s), [2] how many calls, [3], [4] and [5], [6] a call's hash's key
# and its end's mark's key, before and after the CallSid, then the CallSids.
_KEEP_A_DAY_MORE = KEEP_UNLESS_PENDING_CALLBACK + """
local ttl, n = ARGV[1], tonumber(ARGV[2])
for i = 1, n do
  local sid = ARGV[6 + i]
  local key = ARGV[3] .. sid .. ARGV[4]
  if redis.call('TTL', key) == -1 then keep(key, ttl) end
  local ended = ARGV[5] .. sid .. ARGV[6]
  if redis.call('TTL', key) ~= -1 and redis.call('TTL', ended) == -1 then
    redis.call('EXPIRE', ended, ttl)
  end
end
return 0
"""


def keep_a_day_more(r: redis.Redis, call_sids: list[str]) -> None:
    """The logs of these calls are written: a callback's call kept while the callback
    was pending (`KEEP_UNLESS_PENDING_CALLBACK`) and now over expires in
    `CALL_TTL_SECONDS`, as every call's state does, and its end's mark with it whenever
    the mark has no expiry (the hash may have had its day already); other calls keep
    theirs."""
    if not call_sids:
        return
    call_key = keys.call("{}").split("{}")
    ended_key = keys.call_ended("{}").split("{}")
    script(r, _KEEP_A_DAY_MORE)(
        args=[CALL_TTL_SECONDS, len(call_sids), *call_key, *ended_key, *call_sids], client=r)


def first_check_due(opened_ms: int) -> int:
    """When (ms since the epoch) the reconciler first asks Twilio whether a call opened
    at `opened_ms` (ms since the epoch) is over."""
    return opened_ms + OPEN_CALL_FIRST_CHECK_MS


def start_call(r: redis.Redis, call_sid: str, fields: dict[str, str | int],
               now_ms: int | None = None) -> bool:
    """Open a call's hash and put it among the open calls, in one round trip; False
    (and nothing changed) if it already exists.

    Its first check with Twilio is due `OPEN_CALL_FIRST_CHECK_MS` after `now_ms` (ms
    since the epoch), else after its `started_at` field; a call given neither is due
    at the reconciler's next pass."""
    flat: list[str] = []
    for name, value in fields.items():
        flat += [name, str(value)]
    if not flat:
        flat = ["call_sid", call_sid]
    if now_ms is None:
        started = str(fields.get("started_at", ""))
        now_ms = int(started) if started.isdigit() else 0
    start = script(r, _START)
    return bool(start(keys=[keys.call(call_sid), keys.open_calls()],
                      args=[CALL_TTL_SECONDS, first_check_due(now_ms), call_sid, *flat],
                      client=r))


def forget_refused_calls(r: redis.Redis, calls: dict[str, dict[str, str]]) -> None:
    """Drop the hashes of the calls refused at the front door (`TOO_MANY_CALLS`) among
    `calls` (CallSid -> its hash as read), whose logs are committed.

    Nothing reads such a hash once its log is written: Twilio posts nothing more for a
    call it was told to hang up, but its status callback again, or late, and that finds
    the call's ended mark (`keys.call_ended`, kept the day every call's is) and ends
    nothing, nor opens a hash. So a flood of refused calls (`routing.menu.calls_per_number`)
    leaves no hash of theirs behind it, where each kept its day (`CALL_TTL_SECONDS`)."""
    refused = [sid for sid, call in calls.items() if call.get("refused") == TOO_MANY_CALLS]
    if refused:
        r.delete(*(keys.call(sid) for sid in refused))


def get_call(r: redis.Redis, call_sid: str) -> dict[str, str]:
    """The call's hash as a dict of strings ({} when unknown)."""
    return r.hgetall(keys.call(call_sid))  # type: ignore[return-value]


def call_and_end(r: redis.Redis, call_sid: str) -> tuple[dict[str, str], bool]:
    """The call's hash and whether the call is over, in one round trip."""
    pipe = r.pipeline(transaction=False)
    pipe.hgetall(keys.call(call_sid))
    pipe.exists(keys.call_ended(call_sid))
    call, ended = pipe.execute()
    return call, bool(ended)


def update_call(r: redis.Redis, call_sid: str, **fields: str | int | float) -> bool:
    """Set fields of a call's hash (its day-long expiry was set when it opened).

    A call with no hash (never seen, or expired) is left alone: False.
    """
    flat: list[str] = []
    for name, value in fields.items():
        flat += [name, str(value)]
    if not flat:
        return bool(r.exists(keys.call(call_sid)))
    return bool(script(r, _UPDATE)(keys=[keys.call(call_sid)], args=flat, client=r))


def count_on_call(r: redis.Redis, call_sid: str, counter: str, **fields: str | int) -> int:
    """Count one more on a field of a call's hash and set `fields`, in one step; the
    count after (0 for a call with no hash, left alone)."""
    flat = [str(part) for name, value in fields.items() for part in (name, value)]
    return int(script(r, _COUNT)(keys=[keys.call(call_sid)], args=[counter, *flat], client=r))


def update_logged_call(desk: Desk, call_sid: str, **fields: str | int) -> bool:
    """Set fields the call log records, from a webhook Twilio may post after the call's
    end (a `<Dial>` action, a survey key): as `update_call`, and when the call's log is
    due already (written, queued or being written), put the call among the calls to log
    again (`jobs.queues.requeue_call_log`): its log is brought up to date from the hash.

    The fields and the look at the call's end are one step: either the end came first
    and the log is written again, or the end comes after and its log reads these
    fields. A call with no hash (never seen, or its hash gone after a day or a Redis
    lost) is left alone: False, nothing written, its log as it stands."""
    flat = [str(part) for name, value in fields.items() for part in (name, value)]
    due = int(script(desk.r, _UPDATE_LOGGED)(
        keys=[keys.call(call_sid), keys.call_ended(call_sid)], args=flat, client=desk.r))
    if due == 2:
        requeue_call_log(desk.job_redis, call_sid)
    return due > 0


def note_fallback(desk: Desk, call_sid: str, how: str, given_ms: int) -> str:
    """Record on the call that the caller was given the fallback reply (`how`: "number",
    dialed `CASELINE_FALLBACK_NUMBER`; "apology", none set: the apology and the desk's
    hours): the call log's status `fallback` says exactly this, whatever else the call
    holds. In the same step the caller leaves their queue (their wait so far on the log)
    unless the call is a callback's: no advisor freed later may claim them and redirect
    the call away from the fallback number (`_NOTE_FALLBACK`). Idempotent; a call the
    line never opened is opened for it, among the open calls as if it opened at
    `given_ms` (ms since the epoch, when the fallback was given), so the reconciler ends
    and logs it should its status callback be lost; a call already logged is logged
    again (`jobs.queues.requeue_call_log`).

    Returns the advisor claimed for the caller and still ringing for them ("" for
    none), whom the caller of this function releases
    (`routing.availability.fallback_given`). The wait noted on the log ends at
    `given_ms`."""
    due, held = script(desk.r, _NOTE_FALLBACK)(
        keys=[keys.call(call_sid), keys.call_ended(call_sid), keys.open_calls()],
        args=[how, call_sid, CALL_TTL_SECONDS, first_check_due(given_ms),
              keys.team_waiting("{}"), keys.advisor("{}"), given_ms], client=desk.r)
    if int(due) == 2:
        requeue_call_log(desk.job_redis, call_sid)
    return str(held or "")


def update_call_while(r: redis.Redis, call_sid: str, field: str, value: str,
                      **fields: str | int) -> bool:
    """Set `fields` of a call's hash only while its `field` reads `value`, in one step
    (a webhook handled meanwhile never sees half of it, nor is overwritten by it);
    False, with nothing changed, otherwise."""
    flat = [str(part) for name, given in fields.items() for part in (name, given)]
    return bool(script(r, _UPDATE_WHILE)(keys=[keys.call(call_sid)],
                                         args=[field, value, *flat], client=r))


def append_menu(r: redis.Redis, call_sid: str, step: str, **fields: str | int) -> dict[str, str]:
    """Add a step (a key, a case number) to the menu path, set `fields`; the call after."""
    flat = [str(part) for name, value in fields.items() for part in (name, value)]
    return as_hash(script(r, _MENU_STEP)(
        keys=[keys.call(call_sid)], args=["menu", ">", step, CALL_TTL_SECONDS, *flat],
        client=r))


def note_menu_key(r: redis.Redis, call_sid: str, key: str, attempt: int,
                  try_field: str = "menu_try") -> dict[str, str]:
    """Put a menu's key on the menu path, once per key pressed; the call after.

    `attempt` is the try of the menu the key answers (its URL's `?attempt=N`, 1 to 10),
    kept on the call as `try_field` (`menu_try` for the main menu, `product_try` for the
    add-on products): a menu is asked again only after a key that is no option, or
    silence, each a try of its own, and never after an option is chosen, so a try
    already on the call is Twilio posting the key again (without its token, after a
    timeout), not a press: written once, the call log shows it once."""
    return as_hash(script(r, _MENU_KEY)(
        keys=[keys.call(call_sid)], args=[key, attempt, CALL_TTL_SECONDS, try_field],
        client=r))


def is_ended(r: redis.Redis, call_sid: str) -> bool:
    """Whether the call's end has already been recorded."""
    return bool(r.exists(keys.call_ended(call_sid)))


def record_try(r: redis.Redis, call_sid: str, advisor_id: str, now_ms: int) -> None:
    """Note that an advisor was rung on this call at `now_ms` (ms since the epoch): for
    the call log, and for the offers that pass them over for this caller a while
    (`presence.make_available`'s `not_rung_within_ms`)."""
    script(r, _APPEND)(keys=[keys.call(call_sid)],
                        args=["tried", ",", advisor_id, CALL_TTL_SECONDS], client=r)
    pipe = r.pipeline(transaction=False)
    pipe.zadd(keys.call_tried(call_sid), {advisor_id: now_ms})
    pipe.expire(keys.call_tried(call_sid), CALL_TTL_SECONDS)
    pipe.execute()


def note_ringing(r: redis.Redis, call_sid: str, advisor_id: str, now_ms: int) -> dict[str, str]:
    """The call rings `advisor_id` at `now_ms` (ms since the epoch): a try, noted once on
    the call, and the time the claim script reads to skip them for a while (see
    `routing.presence.claim_for_caller`'s `retry_after_ms`); returns the advisor's hash."""
    return as_hash(script(r, _RINGING)(
        keys=[keys.call(call_sid), keys.advisor(advisor_id), keys.call_tried(call_sid)],
        args=[advisor_id, CALL_TTL_SECONDS, now_ms], client=r))


def send_to_team(
    r: redis.Redis, call_sid: str, team: str, *, priority: str = "medium", **extra: str
) -> None:
    """Route the caller to a team (no owner): the next available teammate, or its queue."""
    update_call(r, call_sid, team=team, owner="", priority=priority, **extra)


def final_status(call: dict[str, str]) -> str:
    """How the call ended, in the desk's words (the call log's `status`)."""
    if call.get("answered_by"):
        return "answered"
    if call.get("recording_url"):
        return "voicemail"
    if call.get("fallback"):
        # The caller was given the fallback reply on this call (`note_fallback`): sent
        # to the fallback number (or the apology), whatever the call did before.
        return "fallback"
    if call.get("untracked") == "1":
        # Its end came with nothing the line kept of its course (Redis lost the call's
        # state, or no webhook of it reached the line): how it went is not known.
        return "unknown"
    if call.get("abandoned"):
        return "abandoned"
    if call.get("callback") == "1":
        return "callback-unanswered"
    if call.get("tried"):
        return "unanswered"
    if call.get("refused"):
        return "refused"
    return "ended-in-menu"
