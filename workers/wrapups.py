"""The wrap-up clock: ends advisors' wrap-ups on time, inside `caseline worker`.

A wrap-up's end is put among the wrap-up ends (`jobs.queues.WRAPUP_ENDS`, scored in
ms) when the wrap-up starts. Each `caseline worker` runs one clock (`run_clock`, a
thread): it sleeps until the earliest end, at most `LOOK_EVERY_SECONDS` at a time (an
end scheduled sooner than the earliest it knew of, after an upgrade or with another
`CASELINE_WRAPUP_SECONDS`, is seen that late at most), takes the ends due, and ends
each wrap-up (`routing.availability.end_wrapup`) on a small pool, so that a waiting
caller's redirect failing for seconds while Twilio fails holds up no other advisor.

PRODUCT.md: an advisor stays busy `CASELINE_WRAPUP_SECONDS` after a routed call ends,
and once available the waiting caller is connected within a second. RQ's schedule,
used before, has whole seconds and a scheduler that looks once a second: the end
came 0-2 s late.

Exactly once, whatever the number of workers: an end due is taken in one script that
moves its score `TAKEN_MS` on (another clock does not take it meanwhile), and is taken
off once ended. The end itself is `make_available` naming the advisor, the call and
the wrap-up hold: a second run (the end taken again after a worker died mid-way, or an
RQ job of an earlier release) finds the hold gone and changes nothing ("stale"), so
no caller is redirected twice. An end not done (the worker stopped or died after
taking it, Redis lost meanwhile) is due again `TAKEN_MS` later, for whichever clock
runs then; one that failed (Redis blipped under it) is tried again `RETRY_MS` later,
`ATTEMPTS` times in all. Behind all of it, the reconciler frees an advisor whose
wrap-up lease ran out.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import redis

from directory.scripts import script
from jobs.queues import WRAPUP_ENDS
from routing import availability
from routing.desk import Desk
from workers.context import current_desk

log = logging.getLogger(__name__)

# The longest the clock sleeps between two looks at the wrap-up ends (seconds): one
# round trip each, four a second per worker when nobody wraps up.
LOOK_EVERY_SECONDS = 0.25
# How long an end taken is kept from the other clocks (ms): it is done in well under
# a second, a failing redirect aside (the advisor is released before it, so a second
# run then is stale). An end whose worker died is done this much later.
TAKEN_MS = 5_000
# A failed end (Redis blipped under it, say) is tried again this much later (ms), up
# to `ATTEMPTS` tries in all (the RQ job it replaces was tried four times); then it
# is left to the reconciler, which frees the advisor once their lease runs out.
RETRY_MS = 1_000
ATTEMPTS = 4
# Ends taken per look at most: a look that takes this many looks again at once.
TAKE_AT_ONCE = 100
# Ends done at the same time (threads): a waiting caller's redirect may take seconds.
ENDS_AT_ONCE = 4
# How long the clock waits before looking again after losing Redis (seconds):
# doubling from the first, up to the last.
LOST_REDIS_DELAYS = (0.25, 2.0)

# KEYS[1] the wrap-up ends. ARGV[1] now (ms), [2] taken until (ms), [3] how many at
# most. The ends due by now, each moved on to [2] (taken), then the earliest end left
# ("" when none): {earliest, end, end...}.
_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0,
                       tonumber(ARGV[3]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], member) end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
table.insert(due, 1, first[2] or '')
return due
"""

# KEYS[1] the wrap-up ends. ARGV[1] an end, [2] the score it was taken with, [3] ""
# to take it off, else when to try it again (ms). Nothing when it was scheduled again
# or taken by another clock since (its score moved): that one is theirs. 1 when done.
_SETTLE = """
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '') ~= tonumber(ARGV[2]) then
  return 0
end
if ARGV[3] == '' then redis.call('ZREM', KEYS[1], ARGV[1])
else redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end
return 1
"""

_failures: dict[str, int] = {}
_failures_lock = threading.Lock()


def now_ms() -> int:
    """The clock, in whole ms since the epoch, rounded down: an end is due only once
    its ms has begun, never early."""
    return time.time_ns() // 1_000_000


def end_due_wrapups(desk: Desk, run: Callable[[Callable[[], None]], object]) -> float | None:
    """Take the wrap-up ends due now and hand each to `run` (which calls it, now or on a
    pool); the seconds until the earliest end left, None when there is none."""
    now = now_ms()
    earliest, *due = script(desk.r, _TAKE_DUE)(
        keys=[WRAPUP_ENDS], args=[now, now + TAKEN_MS, TAKE_AT_ONCE], client=desk.r)
    for end in due:
        run(functools.partial(end_wrapup, desk, str(end), now + TAKEN_MS))
    if len(due) >= TAKE_AT_ONCE:
        return 0.0
    if earliest in ("", None):
        return None
    return max(0.0, (float(earliest) - time.time() * 1000) / 1000)


def end_wrapup(desk: Desk, end: str, taken_ms: int) -> None:
    """End the wrap-up `end` names (taken with the score `taken_ms`), then take it off
    the wrap-up ends; a failed try is due again `RETRY_MS` later, until `ATTEMPTS`."""
    try:
        advisor_id, call_sid = json.loads(end)
    except ValueError:
        log.error("a wrap-up end that names no advisor and call, dropped: %r", end)
        _settle(desk, end, taken_ms, None)
        return
    try:
        release = availability.end_wrapup(desk, advisor_id, call_sid, now_ms())
    except Exception as error:  # noqa: BLE001 - any failure: try again, as RQ's retry did
        with _failures_lock:
            failed = _failures[end] = _failures.get(end, 0) + 1
        if failed >= ATTEMPTS:
            log.error("could not end %s's wrap-up after %s (%d tries: %s): left to the "
                      "reconciler", advisor_id, call_sid, failed, error)
            _forget(end)
            _settle(desk, end, taken_ms, None)
        else:
            log.warning("could not end %s's wrap-up after %s (%s): trying again in %.0f s",
                        advisor_id, call_sid, error, RETRY_MS / 1000)
            _settle(desk, end, taken_ms, now_ms() + RETRY_MS)
        return
    _forget(end)
    log.debug("%s's wrap-up after %s is over: %s", advisor_id, call_sid, release.outcome)
    _settle(desk, end, taken_ms, None)


def _forget(end: str) -> None:
    """No failure of `end` counted any more."""
    with _failures_lock:
        _failures.pop(end, None)


def _settle(desk: Desk, end: str, taken_ms: int, again_ms: int | None) -> None:
    """Take `end` off the wrap-up ends (`again_ms` None) or make it due at `again_ms`,
    unless its score moved since it was taken. Redis lost: it is due again anyway when
    its taking runs out (`TAKEN_MS`)."""
    try:
        script(desk.r, _SETTLE)(keys=[WRAPUP_ENDS],
                                args=[end, taken_ms, "" if again_ms is None else again_ms],
                                client=desk.r)
    except redis.RedisError as error:
        log.warning("could not settle the wrap-up end %s (%s): due again in %.0f s", end,
                    error, TAKEN_MS / 1000)


def run_clock(stopped: threading.Event, desk: Callable[[], Desk] = current_desk) -> None:
    """Look at the wrap-up ends and end each as it falls due, until `stopped` is set;
    Redis lost meanwhile is waited for (`LOST_REDIS_DELAYS`), never raised."""
    pool = ThreadPoolExecutor(max_workers=ENDS_AT_ONCE, thread_name_prefix="wrapup-end")
    first, longest = LOST_REDIS_DELAYS
    try:
        # Twilio's client and its ~90 modules, loaded now rather than by the first
        # wrap-up's end, whose waiting caller's redirect they held up by 0.4-0.8 s.
        desk().telephony.warm()
    except Exception:
        log.exception("the wrap-up clock could not prepare Twilio's client: the first "
                      "redirect does")
    delay = first
    try:
        while not stopped.is_set():
            try:
                wait = end_due_wrapups(desk(), functools.partial(pool.submit, _logged))
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError) as error:
                log.warning("the wrap-up clock lost Redis (%s): looking again in %.2f s",
                            error, delay)
                wait, delay = delay, min(delay * 2, longest)
            except Exception:
                log.exception("the wrap-up clock failed: looking again in %.2f s", longest)
                wait = longest
            else:
                delay = first
                # A ms over the end: Python's sleeps are not early, but the end's own ms
                # must have begun (`now_ms`), or the clock looks twice.
                wait = LOOK_EVERY_SECONDS if wait is None else min(wait + 0.001,
                                                                   LOOK_EVERY_SECONDS)
            stopped.wait(wait)
    finally:
        pool.shutdown(wait=False)


def _logged(task: Callable[[], None]) -> None:
    """Run `task` on the pool, its failure logged (a pool keeps it otherwise)."""
    try:
        task()
    except Exception:
        log.exception("a wrap-up end failed")


def start_clock() -> threading.Event:
    """Run the wrap-up clock on a thread of this process (a daemon: it ends with the
    process; an end it had taken is due again `TAKEN_MS` later); set the event
    returned to stop it."""
    stopped = threading.Event()
    threading.Thread(target=run_clock, args=(stopped,), name="wrapup-clock",
                     daemon=True).start()
    return stopped
