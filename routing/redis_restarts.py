"""Redis restarted under the line: what the reconciler does about the state it lost or
rewound.

Redis restored from a snapshot (or an append-only file, or a replica promoted) may hold
calls that ended, and were logged, after that state was written: their hashes back with
no end, an advisor busy on a call that is over, a caller who hung up at the head of a
queue. The open-calls check (`call_end.check_open_calls`) would close them, but only
`call_state.OPEN_CALL_FIRST_CHECK_MS` after each call began. So the reconciler notices
the restart (`notice_redis_restart`) and makes every open call due for the check at
once: one REST request per open call, once, closing the calls that are over within a
pass or two. Calls still live on Twilio are asked about again later as always.

How a restart is noticed: Redis's `run_id` (INFO server) is new at every start, and the
last one seen is kept in Redis itself (`keys.redis_run_id`). Kept there, a restart
either loses it (an empty Redis) or brings back an older one (a snapshot, a replica),
and both differ from the server's own; kept in a worker's memory instead, a worker
starting after the restart would see nothing, and every worker's start would look like
one.

A Redis with none kept is seen for the first time: emptied (nothing came back) or new.
`caseline serve` and `caseline worker` keep its `run_id` as they start
(`remember_redis`), so a snapshot written after the service's start, even before the
reconciler's first pass, carries one. The one gap: a snapshot written before the first
start of the first release that keeps it, restored, is not noticed; its calls over are
closed by the check as they come due.
"""

from __future__ import annotations

import logging

import redis

from directory import keys
from directory.scripts import script
from routing.upgrade import index_open_calls

log = logging.getLogger(__name__)

# Open calls made due per script run (a restart with thousands of calls open does not
# stall Redis in one script).
DUE_NOW_BATCH = 1000

# KEYS[1]: the open calls. ARGV: [1] now (ms), [2] how many at most. Up to ARGV[2] of
# the calls due after now become due now; how many did.
_DUE_NOW = """
local later = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'LIMIT', 0,
                         tonumber(ARGV[2]))
for _, sid in ipairs(later) do redis.call('ZADD', KEYS[1], 'XX', ARGV[1], sid) end
return #later
"""


def remember_redis(r: redis.Redis) -> bool:
    """Keep the `run_id` of the Redis behind `r` as the one last seen, unless one is kept
    already (an older one, restored, is the reconciler's to notice); whether it was kept
    now."""
    return bool(r.set(keys.redis_run_id(), str(r.info("server")["run_id"]), nx=True))


def redis_restarted(r: redis.Redis) -> bool:
    """Whether the Redis server behind `r` is not the one last seen here (its `run_id`
    differs from the one kept in `keys.redis_run_id`); it is the one seen from now on.
    Swapped in one step (SET ... GET), so of two reconcilers noticing the same restart,
    one says so. None kept is a first sight, not a restart: a new or emptied Redis
    brought back no call that is over."""
    run_id = str(r.info("server")["run_id"])
    last = r.set(keys.redis_run_id(), run_id, get=True)
    return last is not None and last != run_id


def make_open_calls_due(r: redis.Redis, now_ms: int) -> int:
    """Every open call (after re-indexing the call hashes with no end, as the start-up
    upgrade does) is due for the open-calls check at `now_ms` (ms since the epoch); how
    many were due later and are now."""
    index_open_calls(r, now_ms)
    made = 0
    due_now = script(r, _DUE_NOW)
    while True:
        count = int(due_now(keys=[keys.open_calls()], args=[now_ms, DUE_NOW_BATCH], client=r))
        made += count
        if count < DUE_NOW_BATCH:
            return made


def notice_redis_restart(r: redis.Redis, now_ms: int) -> int:
    """If Redis restarted since the last look (`redis_restarted`), make every open call
    due for the check at once (`make_open_calls_due`), so those over (ended and logged
    before the restart rewound them) are closed at the next check rather than 10
    minutes on; how many were made due (0 when Redis did not restart)."""
    if not redis_restarted(r):
        return 0
    made = make_open_calls_due(r, now_ms)
    log.warning("Redis restarted (a new run_id): its %d open call(s) due later are asked "
                "about now, so those already over are closed", made)
    return made
