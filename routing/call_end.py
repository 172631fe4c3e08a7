"""A call's end: as its status callback tells it, or as the reconciler finds it by
asking Twilio about a call still open long after it began.

Twilio posts a call's final status once and does not retry it: a callback lost
(the service restarting, a load balancer dropping it) would leave the call
open, never logged, until its hash expired a day later. So every call opened is
put among the open calls (`keys.open_calls`, by the script that opens its hash,
`call_state.OPEN_CALL_FIRST_CHECK_MS` ahead), its end takes it off (`acd.end_call`'s
script), and the reconciler asks Twilio about those still there when due
(`check_open_calls`). Either way the call ends through `close_call`, once; a
repeat only frees again what the first end may have left held when Redis failed
after its script, and the reconciler repeats the end of a call still holding its
advisor or the on-call line a minute after it (`release_ended_holds`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from directory import keys
from directory.scripts import script
from jobs.queues import enqueue_call_log
from routing import acd, conference, oncall, outage
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
# After Twilio failed (429, 5xx, no answer), the reconciler asks it about no call for
# this long (ms), account-wide (`keys.twilio_reads_paused`): the rate limit is the
# account's, shared with the redirects that bring callers to advisors, and a backlog
# of due calls must not hit Twilio again at every pass.
TWILIO_READS_PAUSE_MS = 60 * 1000
# What a call Twilio does not know (404) is ended with: no live call has that CallSid,
# so none can post its status now. Twilio's neutral word for a call over; the others
# name a cause (busy, no answer) nobody knows here. Only a call open longer than any
# call can last (the talk lease, `settings.talk_lease_seconds`) is ended so: a
# misconfigured account or region would answer 404 for every call, and ending them
# all would drop waiting callers and free advisors in mid-talk.
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
               caller: str = "", ended_ms: int | None = None,
               hang_up_legs: Callable[[list[str]], None] | None = None
               ) -> dict[str, str] | None:
    """The call is over, as Twilio says (`call_status`, `duration` in s): end it
    (`acd.record_end`: frees its advisor, first end wins), free the on-call line it
    holds, queue its call log, and hang up the conference legs it left behind (on the
    desk's REST client, in the background where it has one). Returns the call's hash
    as it ended when this ended it and its log was queued, else None (a repeat, a
    status that is not final, a contact keeping their place for a callback).

    A repeat (the web's kept end retrying a status Redis failed halfway, Twilio's
    repeat) queues no log, but frees again what the first end may have left held when
    Redis failed after its script: the advisor still on the call (`acd.record_end`),
    the conference legs left behind when it did release them, and the on-call line
    still held for it. `now_ms`, `ended_ms`:
    ms since the epoch (see `acd.record_end`). `hang_up_legs`: how the legs are hung
    up (default: `conference.hang_up_legs`, retried, through `Telephony.later`)."""
    end = acd.record_end(desk, call_sid, call_status, duration, now_ms, caller=caller,
                         ended_ms=ended_ms)
    if end is None:
        return None
    call = end.call
    # The `<Dial>` action frees the on-call line; this is for an action that never came.
    # A repeat frees it too: the first end's release may have met a Redis failure. The
    # line is freed only while this call holds it (so once, and a repeat days later
    # leaves the line of a later call held), and only that release serves it.
    if call.get("oncall_tried") and oncall.free_line(desk, call_sid):
        outage.serve_oncall_line(desk, now_ms)
    if not end.first and not end.released:
        return None
    if end.first:
        enqueue_call_log(desk.job_redis, call_sid)
    # A repeat that released the advisor found the first end applied halfway: the legs
    # it left behind may be up too (an advisor alone in an empty conference). A leg
    # already over answers "gone": hanging up twice is harmless.
    legs = conference.legs_left_behind(call)
    if legs and hang_up_legs is not None:
        hang_up_legs(legs)
    elif legs:
        # After Twilio has its answer: the REST requests may take a while.
        desk.telephony.later(lambda: conference.hang_up_legs(desk, legs))
    return call if end.first else None


# A call whose end was recorded this long ago (ms) and whose advisor still rings or
# talks on it, or which still holds the on-call line, had its end applied halfway: its
# releases, which follow the end script, met a Redis failure (or its process died)
# and no repeat came. Long enough for the end's own releases (milliseconds) and
# most of the web's kept end's retries (`ivr.voice.kept_ends`, up to 120 s, which
# the repeat releases too, idempotently); far short of a talk's lease (hours).
ENDED_HOLD_GRACE_MS = 60 * 1000
# Advisors' holds read per script run (as `acd.GONE_SCAN_CHUNK`).
ENDED_HOLD_SCAN_CHUNK = 500

# KEYS[1]: the leases (every advisor holding a call), KEYS[2]: the on-call line. ARGV:
# [1] first rank, [2] how many, then an advisor's key, a call hash's key and its ended
# mark's key, each as prefix and suffix around the id, and [9] ended before (ms).
# Returns the CallSids, among the holds in that slice (and the on-call line's at the
# first slice), of calls not a callback whose end was recorded before ARGV[9] and
# that an advisor still rings or talks on (not a wrap-up), or that hold the line.
_ENDED_HOLDS = """
local first, count = tonumber(ARGV[1]), tonumber(ARGV[2])
local found = {}
local function ended_before(sid)
  if not sid or sid == '' then return false end
  if redis.call('EXISTS', ARGV[7] .. sid .. ARGV[8]) == 0 then return false end
  local call = redis.call('HMGET', ARGV[5] .. sid .. ARGV[6], 'callback', 'ended_at')
  local ended = tonumber(call[2] or '')
  return call[1] ~= '1' and ended ~= nil and ended < tonumber(ARGV[9])
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], first, first + count - 1)) do
  local held = redis.call('HMGET', ARGV[3] .. id .. ARGV[4], 'call', 'hold')
  if held[2] ~= 'wrapup' and ended_before(held[1]) then found[#found + 1] = held[1] end
end
if first == 0 then
  local line = redis.call('GET', KEYS[2])
  if ended_before(line) then found[#found + 1] = line end
end
return found
"""


def release_ended_holds(desk: Desk, now_ms: int) -> int:
    """The reconciler's backstop for an end applied halfway: a call whose end was
    recorded more than `ENDED_HOLD_GRACE_MS` before `now_ms` (ms since the epoch) and
    whose advisor still rings or talks on it, or which still holds the on-call line,
    is ended again (`close_call` as a repeat: the releases run again, nothing is
    logged or counted twice). That is a Redis failure between the end script and the
    releases that no repeat followed: the reconciler's own end (the pass raised, and
    the call is off the open calls), a web process stopped with its kept end, a
    retry given up on. Without it the advisor stays busy, the line held, for the talk
    lease (hours). A callback's call is left alone (its advisor's leg ends it).
    Returns how many calls were ended again."""
    advisor_key = keys.advisor("{}").split("{}")
    call_key = keys.call("{}").split("{}")
    ended_key = keys.call_ended("{}").split("{}")
    scan = script(desk.r, _ENDED_HOLDS)
    found: list[str] = []
    first = 0
    while True:
        found += [str(sid) for sid in scan(
            keys=[keys.leases(), keys.oncall_line()],
            args=[first, ENDED_HOLD_SCAN_CHUNK, *advisor_key, *call_key, *ended_key,
                  now_ms - ENDED_HOLD_GRACE_MS], client=desk.r)]
        first += ENDED_HOLD_SCAN_CHUNK
        if first >= desk.r.zcard(keys.leases()):
            break
    for call_sid in dict.fromkeys(found):
        status = desk.r.hget(keys.call(call_sid), "call_status") or ""
        log.warning("call %s ended but still held its advisor or the on-call line: "
                    "released by the reconciler", call_sid)
        close_call(desk, call_sid, status if acd.is_final(status) else
                   UNKNOWN_TO_TWILIO_STATUS, 0, now_ms)
    return len(dict.fromkeys(found))


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


def twilio_reads_paused(desk: Desk, now_ms: int) -> bool:
    """Whether the reconciler lets Twilio be at `now_ms` (ms since the epoch): Twilio
    failed less than `TWILIO_READS_PAUSE_MS` before."""
    until = desk.r.get(keys.twilio_reads_paused())
    return bool(until) and int(until) > now_ms


def pause_twilio_reads(desk: Desk, now_ms: int) -> None:
    """Twilio failed at `now_ms` (ms since the epoch): ask it about no call for
    `TWILIO_READS_PAUSE_MS`. The key holds until when (the passes compare it to their
    own clock) and expires then."""
    desk.r.set(keys.twilio_reads_paused(), now_ms + TWILIO_READS_PAUSE_MS,
               px=TWILIO_READS_PAUSE_MS)


def _ask_again(desk: Desk, call_sid: str, due_ms: int) -> None:
    """The call stays open, next asked about at `due_ms` (unless it ended meanwhile)."""
    desk.r.zadd(keys.open_calls(), {call_sid: due_ms}, xx=True)


def _open_longer_than_any_call(desk: Desk, call_sid: str, now_ms: int) -> bool:
    """Whether the call began (`started_at`) longer before `now_ms` than any call can
    last (the talk lease); False when its start is unknown."""
    started = desk.r.hget(keys.call(call_sid), "started_at") or ""
    return started.isdigit() and (
        now_ms - int(started) > desk.settings.talk_lease_seconds * 1000)


def check_open_calls(desk: Desk, now_ms: int, *, limit: int = OPEN_CALLS_PER_PASS,
                     budget_s: float = OPEN_CALLS_PASS_SECONDS,
                     clock: Callable[[], float] = time.monotonic) -> dict[str, int]:
    """The reconciler's check of calls open long after they began (their final status
    callback may be lost): ask Twilio about each call due by `now_ms` (ms since the
    epoch), at most `limit`, asking no more once `budget_s` seconds of `clock` have
    gone by; one try each (`OPEN_CALL_FETCH_TIMEOUT_SECONDS`).

    Twilio says it is over: it is closed as its status callback would have
    (`close_call`, with Twilio's status, duration and end time). Still live: asked
    again `OPEN_CALL_RECHECK_MS` later. Unknown to Twilio (404): closed as
    `UNKNOWN_TO_TWILIO_STATUS` when open longer than any call can last, else logged
    as an error and asked again `OPEN_CALL_RECHECK_MS` later. Twilio refusing this
    read (another 4xx): logged, asked again `OPEN_CALL_RECHECK_MS` later, and the
    pass goes on. Twilio failing (429, 5xx, network): the pass stops there, that
    call and those not asked yet are due again `OPEN_CALL_RETRY_MS` later, and no
    pass asks Twilio anything for `TWILIO_READS_PAUSE_MS` (`twilio_reads_paused`).

    Returns counts: {"open_calls_checked": asked about, "open_calls_ended": closed
    now, "open_calls_logged": of those, logs queued, "open_calls_live": still live,
    "open_calls_unsettled": asked again later after a 404 or a refusal,
    "open_calls_deferred": left for a later pass, "open_calls_dropped": off the open
    calls without a question (hash expired, or ended meanwhile),
    "open_calls_paused": 1 when the pass asked nothing, Twilio being let be}. Raises
    only what Redis raises."""
    counts = {"open_calls_checked": 0, "open_calls_ended": 0, "open_calls_logged": 0,
              "open_calls_live": 0, "open_calls_unsettled": 0, "open_calls_deferred": 0,
              "open_calls_dropped": 0, "open_calls_paused": 0}
    if twilio_reads_paused(desk, now_ms):
        counts["open_calls_paused"] = 1
        return counts
    taken, counts["open_calls_dropped"] = take_due_calls(desk, now_ms, limit)
    deadline = clock() + budget_s
    for index, call_sid in enumerate(taken):
        if clock() > deadline:
            counts["open_calls_deferred"] += len(taken) - index
            break
        # One try, briefly: a call not answered for now is asked about again later.
        found = desk.telephony.fetch_call_status(
            call_sid, retry=False, timeout=OPEN_CALL_FETCH_TIMEOUT_SECONDS)
        counts["open_calls_checked"] += 1
        if found is Outcome.TRANSIENT:
            # Twilio is struggling (or rate-limiting the account): asking about the rest
            # now would fail too, and would eat into what the redirects need.
            pause_twilio_reads(desk, now_ms)
            counts["open_calls_deferred"] += len(taken) - index
            log.warning("Twilio failed a read of call %s: no call is asked about for "
                        "%d s", call_sid, TWILIO_READS_PAUSE_MS // 1000)
            break
        if isinstance(found, Outcome) and found is not Outcome.GONE:  # REFUSED
            # This read is wrong (a 4xx of its own): the calls behind it are asked all
            # the same, and it again later.
            log.error("call %s: Twilio refused the read of it (a 4xx other than 404 or "
                      "429): asked again in %d min", call_sid, OPEN_CALL_RECHECK_MS // 60_000)
            _ask_again(desk, call_sid, now_ms + OPEN_CALL_RECHECK_MS)
            counts["open_calls_unsettled"] += 1
            continue
        if found is Outcome.GONE:
            if not _open_longer_than_any_call(desk, call_sid, now_ms):
                log.error("call %s is open here and unknown to Twilio (404) before any "
                          "call could be over: is TWILIO_ACCOUNT_SID or TWILIO_API_URL "
                          "wrong? Left open, asked again in %d min", call_sid,
                          OPEN_CALL_RECHECK_MS // 60_000)
                _ask_again(desk, call_sid, now_ms + OPEN_CALL_RECHECK_MS)
                counts["open_calls_unsettled"] += 1
                continue
            log.warning("call %s is open here and unknown to Twilio (404), open longer "
                        "than any call lasts: ended as %s", call_sid,
                        UNKNOWN_TO_TWILIO_STATUS)
            status, duration, ended_ms = UNKNOWN_TO_TWILIO_STATUS, 0, None
        elif not acd.is_final(found.status):
            _ask_again(desk, call_sid, now_ms + OPEN_CALL_RECHECK_MS)
            counts["open_calls_live"] += 1
            continue
        else:
            status, duration, ended_ms = found.status, found.duration, found.ended_ms
            log.warning("call %s was over at Twilio (%s) and its status callback never "
                        "reached the line: ended by the reconciler", call_sid, status)
        counts["open_calls_ended"] += 1
        if close_call(desk, call_sid, status, duration, now_ms, ended_ms=ended_ms,
                      hang_up_legs=lambda legs: _hang_up_within(desk, legs, deadline, clock)):
            counts["open_calls_logged"] += 1
        # A callback's contact keeping their place (or a status callback that won the
        # race) is off the open calls all the same: `acd.end_call` took it off.
    return counts


def _hang_up_within(desk: Desk, legs: list[str], deadline: float,
                    clock: Callable[[], float]) -> None:
    """Hang up the conference legs a call the reconciler closed left behind, one short
    try each and none once `deadline` (of `clock`) has passed, so the pass stays
    inside the reconciler's interval (the worker's client would retry for ~28 s). A
    leg not hung up is logged: its advisor or colleague is alone on it, long after the
    contact left, and hangs up."""
    for leg in legs:
        if clock() > deadline:
            log.warning("leg %s of a call the reconciler closed is left up: the pass is "
                        "out of time", leg)
            continue
        outcome = desk.telephony.hang_up(leg, retry=False,
                                         timeout=OPEN_CALL_FETCH_TIMEOUT_SECONDS)
        if outcome is not Outcome.DONE and outcome is not Outcome.GONE:
            log.warning("leg %s of a call the reconciler closed could not be hung up "
                        "(%s)", leg, outcome.value)
