"""A call's end: as its status callback tells it, or as the reconciler finds it by
asking Twilio about a call still open long after it began.

Twilio posts a call's final status once and does not retry it: a callback lost
(the service restarting, a load balancer dropping it) would leave the call
open, never logged, until its hash expired a day later. So every call opened is
put among the open calls (`keys.open_calls`, by the script that opens its hash,
`call_state.OPEN_CALL_FIRST_CHECK_MS` ahead), its end takes it off (`acd.end_call`'s
script), and the reconciler asks Twilio about those still there when due
(`check_open_calls`). Either way the call ends through `close_call`, once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from directory import keys
from directory.scripts import script
from jobs.queues import enqueue_call_log
from routing import acd, conference
from routing.desk import Desk
from telephony import Outcome

log = logging.getLogger(__name__)

# Calls asked about per pass (the reconciler runs every 10 s): one REST request each,
# sequential, within the pass's time (`OPEN_CALLS_PASS_SECONDS`): a backlog (after an
# outage of the status callbacks) drains at up to ~300 a minute.
OPEN_CALLS_PER_PASS = 50
# A pass asks no more once this long (s) has gone by, whatever is left; and each
# question is one try that gives up after `OPEN_CALL_FETCH_TIMEOUT_SECONDS` per connect
# and per read. So a pass against a Twilio that never answers ends within
# OPEN_CALLS_PASS_SECONDS + 2 * OPEN_CALL_FETCH_TIMEOUT_SECONDS = 8 s, inside the
# reconciler's interval (`caseline.work.RECONCILE_EVERY_SECONDS`, 10 s): RQ's cron
# queues the job every interval without waiting for the last one, on the `presence`
# queue the worker drains before the call logs, so a longer pass would pile jobs up
# and starve the call logs.
OPEN_CALLS_PASS_SECONDS = 4.0
OPEN_CALL_FETCH_TIMEOUT_SECONDS = 2.0
# A call Twilio says is still live (queued, ringing, in-progress) is asked about again
# this much later (ms): a talk lasts minutes to hours, and its own status callback
# will most likely end it first.
OPEN_CALL_RECHECK_MS = 10 * 60 * 1000
# A call taken for a pass is due again this much later (ms) unless the pass settles it:
# after Twilio failed (429, 5xx, no answer: it is not hammered) or the pass ran out of
# time, or its worker died mid-pass.
OPEN_CALL_RETRY_MS = 60 * 1000
# What a call Twilio does not know (404) is ended with: no live call has that CallSid,
# so none can post its status now. Twilio's neutral word for a call over; the others
# name a cause (busy, no answer) nobody knows here.
UNKNOWN_TO_TWILIO_STATUS = "completed"

# KEYS[1]: the open calls. ARGV: [1] now (ms), [2] how many at most, [3] when those
# taken are due again (ms), then the call hash's key and its ended mark's key, each as
# prefix and suffix around the CallSid. Takes the calls due by now: one whose hash is
# gone (expired: nothing left to end or log) or whose end is recorded comes off; the
# others are due again at ARGV[3] (another pass does not take them meanwhile) and
# returned. Returns {how many came off, {CallSids taken}}.
_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local taken, dropped = {}, 0
for _, sid in ipairs(due) do
  if redis.call('EXISTS', ARGV[4] .. sid .. ARGV[5]) == 0 or
     redis.call('EXISTS', ARGV[6] .. sid .. ARGV[7]) == 1 then
    redis.call('ZREM', KEYS[1], sid)
    dropped = dropped + 1
  else
    redis.call('ZADD', KEYS[1], ARGV[3], sid)
    taken[#taken + 1] = sid
  end
end
return {dropped, taken}
"""


def close_call(desk: Desk, call_sid: str, call_status: str, duration: int, now_ms: int,
               caller: str = "", ended_ms: int | None = None) -> dict[str, str] | None:
    """The call is over, as Twilio says (`call_status`, `duration` in s): end it
    (`acd.end_call`: frees what it held, first end wins), queue its call log, and hang
    up the conference legs it left behind (on the desk's REST client, in the
    background where it has one). Returns the call's hash as it ended when this ended
    it and its log was queued, else None (a repeat, a status that is not final, a
    contact keeping their place for a callback). `now_ms`, `ended_ms`: ms since the
    epoch (see `acd.end_call`)."""
    call = acd.end_call(desk, call_sid, call_status, duration, now_ms, caller=caller,
                        ended_ms=ended_ms)
    if not call:
        return None
    enqueue_call_log(desk.job_redis, call_sid)
    legs = conference.legs_left_behind(call)
    if legs:
        # After Twilio has its answer: the REST requests may take a while.
        desk.telephony.later(lambda: conference.hang_up_legs(desk, legs))
    return call


def take_due_calls(desk: Desk, now_ms: int, limit: int = OPEN_CALLS_PER_PASS
                   ) -> tuple[list[str], int]:
    """Take up to `limit` open calls due for a check by `now_ms` (ms since the epoch),
    oldest due first, each due again `OPEN_CALL_RETRY_MS` later unless settled: (their
    CallSids, how many came off the open calls instead: hash expired, or end recorded)."""
    call_key = keys.call("{}").split("{}")
    ended_key = keys.call_ended("{}").split("{}")
    dropped, taken = script(desk.r, _TAKE_DUE)(
        keys=[keys.open_calls()],
        args=[now_ms, limit, now_ms + OPEN_CALL_RETRY_MS, *call_key, *ended_key],
        client=desk.r)
    return [str(sid) for sid in taken], int(dropped)


def check_open_calls(desk: Desk, now_ms: int, *, limit: int = OPEN_CALLS_PER_PASS,
                     budget_s: float = OPEN_CALLS_PASS_SECONDS,
                     clock: Callable[[], float] = time.monotonic) -> dict[str, int]:
    """The reconciler's check of calls open long after they began (their final status
    callback may be lost): ask Twilio about each call due by `now_ms` (ms since the
    epoch), at most `limit` and for at most `budget_s` seconds of `clock`.

    Twilio says it is over: it is closed as its status callback would have
    (`close_call`, with Twilio's status, duration and end time). Still live: asked
    again `OPEN_CALL_RECHECK_MS` later. Unknown to Twilio (404): closed as
    `UNKNOWN_TO_TWILIO_STATUS`. Twilio failing (429, 5xx, network: one try, no
    retry) or refusing (another 4xx): the pass stops there, and that call
    and those not asked yet are due again `OPEN_CALL_RETRY_MS` later.

    Returns counts: {"open_calls_checked": asked about, "open_calls_ended": closed
    now, "open_calls_logged": of those, logs queued, "open_calls_live": still live,
    "open_calls_deferred": left for a later pass, "open_calls_dropped": off the open
    calls without a question (hash expired, or ended meanwhile)}. Raises only what
    Redis raises."""
    taken, dropped = take_due_calls(desk, now_ms, limit)
    counts = {"open_calls_checked": 0, "open_calls_ended": 0, "open_calls_logged": 0,
              "open_calls_live": 0, "open_calls_deferred": 0, "open_calls_dropped": dropped}
    deadline = clock() + budget_s
    for index, call_sid in enumerate(taken):
        if clock() > deadline:
            counts["open_calls_deferred"] += len(taken) - index
            break
        # One try, briefly: a call not answered for now is asked about again later.
        found = desk.telephony.fetch_call_status(
            call_sid, retry=False, timeout=OPEN_CALL_FETCH_TIMEOUT_SECONDS)
        counts["open_calls_checked"] += 1
        if found is Outcome.GONE:
            log.warning("call %s is open here and unknown to Twilio (404): ended as %s",
                        call_sid, UNKNOWN_TO_TWILIO_STATUS)
            status, duration, ended_ms = UNKNOWN_TO_TWILIO_STATUS, 0, None
        elif isinstance(found, Outcome):
            # Twilio is failing or refusing us: asking about the rest now would fail too.
            counts["open_calls_deferred"] += len(taken) - index
            break
        elif not acd.is_final(found.status):
            desk.r.zadd(keys.open_calls(), {call_sid: now_ms + OPEN_CALL_RECHECK_MS}, xx=True)
            counts["open_calls_live"] += 1
            continue
        else:
            status, duration, ended_ms = found.status, found.duration, found.ended_ms
            log.warning("call %s was over at Twilio (%s) and its status callback never "
                        "reached the line: ended by the reconciler", call_sid, status)
        counts["open_calls_ended"] += 1
        if close_call(desk, call_sid, status, duration, now_ms, ended_ms=ended_ms):
            counts["open_calls_logged"] += 1
        # A callback's contact keeping their place (or a status callback that won the
        # race) is off the open calls all the same: `acd.end_call` took it off.
    return counts
