"""State the previous release left in Redis, brought to this release's shape when
a service or worker starts (`caseline serve` and `caseline worker` run it before
taking calls or jobs).

The previous release held an advisor in wrap-up with the token `wrapup-<CallSid>`
in their `call` field, and scheduled the wrap-up's end as the job
`workers.presence.end_wrapup` (a path this release renamed). Left alone, such an
advisor could not end their own wrap-up and was freed only by the reconciler,
its job failing on the way. Now their hold becomes `call=<CallSid>`,
`hold=wrapup` and the wrap-up's end is scheduled again, at the same time, under
this release's job.

The previous release kept no index of the calls opened (`keys.open_calls`): a call it
opened whose final status callback is lost (a restart, such as this release's
deployment, is when one most likely is) would never be asked about, nor logged. Every
call hash without an end is put among the open calls, due at its start plus the first
check's delay (`call_state.OPEN_CALL_FIRST_CHECK_MS`), or at once when its start is
unknown (`index_open_calls`).

The previous release gave a pending callback's call (the contact hung up and waits
to be called back) a day's expiry from the contact's hang-up: a callback asked before a
weekend was lost, never placed nor logged. This release keeps it until the callback
is over (`call_state.KEEP_UNLESS_PENDING_CALLBACK`); those the previous release left
are kept so too (`keep_pending_callbacks`).

Running it twice changes nothing.
"""

from __future__ import annotations

import redis

from directory import keys
from directory.scripts import script
from jobs.queues import drop_job, end_of_wrapup_job_id, schedule_end_of_wrapup
from routing.call_state import OPEN_CALL_FIRST_CHECK_MS

# One atomic pass over every advisor: (advisor id, CallSid, lease until ms) for
# each hold moved from the old token to the `hold` field.
_WRAPUP_TOKENS = r"""
local moved = {}
for _, id in ipairs(redis.call("SMEMBERS", KEYS[1])) do
  local key = ARGV[1] .. id .. ARGV[2]
  local call = redis.call("HGET", key, "call") or ""
  if string.sub(call, 1, 7) == "wrapup-" then
    local sid = string.sub(call, 8)
    redis.call("HSET", key, "call", sid, "hold", "wrapup")
    table.insert(moved, id)
    table.insert(moved, sid)
    table.insert(moved, redis.call("HGET", key, "lease") or "0")
  end
end
return moved
"""


def upgrade_wrapups(r: redis.Redis, job_redis: redis.Redis, now_ms: int) -> list[str]:
    """Move the previous release's wrap-up holds to this release's shape and reschedule
    their end (never earlier than `now_ms`, ms since the epoch); the advisor ids moved.

    `r` decodes responses (the desk's client); `job_redis` is RQ's (bytes).
    """
    prefix, _, suffix = keys.advisor("\0").partition("\0")
    found = script(r, _WRAPUP_TOKENS)(keys=[keys.advisors()], args=[prefix, suffix], client=r)
    moved = []
    for i in range(0, len(found), 3):
        advisor_id, call_sid, lease = found[i], found[i + 1], int(float(found[i + 2] or 0))
        drop_job(job_redis, end_of_wrapup_job_id(advisor_id, f"wrapup-{call_sid}"))
        schedule_end_of_wrapup(job_redis, advisor_id, call_sid, max(lease, now_ms))
        moved.append(advisor_id)
    return moved


# Keys looked at per SCAN step, and CallSids put in the index per script run.
OPEN_CALLS_SCAN_COUNT = 1000

# KEYS[1]: the open calls. ARGV: [1] now (ms), [2] the first check's delay (ms), the
# call hash's key and its ended mark's key (prefix and suffix around the CallSid),
# then the CallSids. Each call whose hash exists and has no ended mark, and which is
# not among the open calls, is put there, due at its `started_at` + the delay (now
# when unknown); checked and added in one step, so an end meanwhile is not undone.
# Returns how many were added.
_INDEX_OPEN_CALLS = """
local now, delay, added = tonumber(ARGV[1]), tonumber(ARGV[2]), 0
for i = 7, #ARGV do
  local sid = ARGV[i]
  local call = ARGV[3] .. sid .. ARGV[4]
  if redis.call('TYPE', call)['ok'] == 'hash' and
     redis.call('EXISTS', ARGV[5] .. sid .. ARGV[6]) == 0 and
     not redis.call('ZSCORE', KEYS[1], sid) then
    local started = tonumber(redis.call('HGET', call, 'started_at') or '')
    redis.call('ZADD', KEYS[1], 'NX', started and started + delay or now, sid)
    added = added + 1
  end
end
return added
"""


def index_open_calls(r: redis.Redis, now_ms: int) -> int:
    """Put among the open calls every call the previous release opened and nothing
    ended (its hash, no ended mark), due for the reconciler's first question at its
    `started_at` + `OPEN_CALL_FIRST_CHECK_MS` (or `now_ms`, ms since the epoch, when
    unknown); how many were put there. SCAN, not KEYS: Redis keeps serving the line
    meanwhile. A call already there keeps its due time."""
    call_prefix, _, call_suffix = keys.call("\0").partition("\0")
    ended_prefix, _, ended_suffix = keys.call_ended("\0").partition("\0")
    index = script(r, _INDEX_OPEN_CALLS)
    added = 0
    sids: list[str] = []

    def flush() -> None:
        nonlocal added
        if sids:
            added += int(index(keys=[keys.open_calls()],
                               args=[now_ms, OPEN_CALL_FIRST_CHECK_MS, call_prefix,
                                     call_suffix, ended_prefix, ended_suffix, *sids],
                               client=r))
            sids.clear()

    for key in r.scan_iter(match=f"{call_prefix}*{call_suffix}", count=OPEN_CALLS_SCAN_COUNT):
        sid = str(key)[len(call_prefix):len(str(key)) - len(call_suffix)]
        if sid and ":" not in sid:  # not a call's other keys (`:ended`, `:tried`)
            sids.append(sid)
        if len(sids) >= OPEN_CALLS_SCAN_COUNT:
            flush()
    flush()
    return added


# ARGV: the call hash's key and its ended mark's key (prefix and suffix around the
# CallSid). `keep(sid)`: a callback not over whose contact has hung up (its end is
# marked) loses the expiry of its hash and mark; 1 when it had one to lose.
_KEEP_PENDING = """
local function keep(sid)
  local call, ended = ARGV[1] .. sid .. ARGV[2], ARGV[3] .. sid .. ARGV[4]
  local callback = redis.call('HMGET', call, 'callback', 'callback_state')
  if callback[1] == '1' and callback[2] ~= 'done' and
     redis.call('EXISTS', ended) == 1 and
     redis.call('TTL', call) + redis.call('TTL', ended) > -2 then
    redis.call('PERSIST', call)
    redis.call('PERSIST', ended)
    return 1
  end
  return 0
end
"""

# KEYS[1]: a team's waiting set. Each waiting callback is kept (`keep`); how many were.
_KEEP_PENDING_CALLBACKS = _KEEP_PENDING + """
local kept = 0
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do kept = kept + keep(sid) end
return kept
"""

# KEYS[1]: every advisor. ARGV[5], ARGV[6]: an advisor's key, before and after their
# id. Each callback an advisor holds (claimed for them, their leg ringing, or the
# contact being dialled: out of the queue) is kept (`keep`); how many were.
_KEEP_HELD_CALLBACKS = _KEEP_PENDING + """
local kept = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local sid = redis.call('HGET', ARGV[5] .. id .. ARGV[6], 'call')
  if sid and sid ~= '' then kept = kept + keep(sid) end
end
return kept
"""


def keep_pending_callbacks(r: redis.Redis) -> int:
    """Take the expiry off every pending callback's call (and its end's mark) the
    previous release left to expire a day after the contact hung up; how many. Those
    waiting in a team's queue (one script per queue: callbacks are few, three a contact
    a day) and those an advisor holds as it runs (their leg ringing: should they miss
    it, the contact is back in their place, over a weekend maybe), in one script."""
    call_prefix, _, call_suffix = keys.call("\0").partition("\0")
    ended_prefix, _, ended_suffix = keys.call_ended("\0").partition("\0")
    advisor_prefix, _, advisor_suffix = keys.advisor("\0").partition("\0")
    found = [call_prefix, call_suffix, ended_prefix, ended_suffix]
    keep = script(r, _KEEP_PENDING_CALLBACKS)
    waiting = sum(int(keep(keys=[keys.team_waiting(team)], args=found, client=r))
                  for team in r.smembers(keys.teams()))
    held = int(script(r, _KEEP_HELD_CALLBACKS)(
        keys=[keys.advisors()], args=[*found, advisor_prefix, advisor_suffix], client=r))
    return waiting + held
