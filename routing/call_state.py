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
from jobs.queues import requeue_call_log
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

# Append `value` to a "sep"-joined field (menu path, advisors tried).
_APPEND = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and current ~= '' then current = current .. ARGV[2] .. ARGV[3]
else current = ARGV[3] end
redis.call('HSET', KEYS[1], ARGV[1], current)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return current
"""

# A step on the menu path, then `fields` (ARGV[5..], name/value pairs); the call after.
_MENU_STEP = _APPEND.replace("return current", """
if #ARGV > 4 then redis.call('HSET', KEYS[1], unpack(ARGV, 5)) end
return redis.call('HGETALL', KEYS[1])
""")

# The call now rings an advisor: note the try once, however often asked, and when
# (ARGV[3], ms: the claim script skips an advisor rung lately, KEYS[3]); returns the
# advisor's hash (KEYS[2]).
_RINGING = """
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[2])
if redis.call('HGET', KEYS[1], 'ringing') ~= ARGV[1] then
  local tried = redis.call('HGET', KEYS[1], 'tried')
  if tried and tried ~= '' then tried = tried .. ',' .. ARGV[1] else tried = ARGV[1] end
  redis.call('HSET', KEYS[1], 'tried', tried)
end
redis.call('HSET', KEYS[1], 'state', 'ringing', 'ringing', ARGV[1], 'whisper', '')
redis.call('EXPIRE', KEYS[1], ARGV[2])
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


def is_ended(r: redis.Redis, call_sid: str) -> bool:
    """Whether the call's end has already been recorded."""
    return bool(r.exists(keys.call_ended(call_sid)))


def record_try(r: redis.Redis, call_sid: str, advisor_id: str) -> None:
    """Note that an advisor was rung on this call (for the call log)."""
    script(r, _APPEND)(keys=[keys.call(call_sid)],
                        args=["tried", ",", advisor_id, CALL_TTL_SECONDS], client=r)


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
    if call.get("abandoned"):
        return "abandoned"
    if call.get("callback") == "1":
        return "callback-unanswered"
    if call.get("tried"):
        return "unanswered"
    if call.get("refused"):
        return "refused"
    return "ended-in-menu"
