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

What Redis alone held and the desk promised is put back from the database: the
callbacks contacts asked for and are waiting for (`restore_pending_callbacks`, from
`directory.pending_callbacks`). A Redis that came back empty (flushed, or restarted
without persistence: the embedded one keeps nothing) or older than them no longer has
them; each whose call is missing (or, from a snapshot, there as it was before the
contact asked) and has no log goes back in its queue at its place, with its call's
state, so an advisor who becomes available is offered it as before, and it ends with
one log. `caseline serve` and `caseline worker` do it at start, after
rebuilding the directory cache; the reconciler does both (`recover_lost_state`) when it
finds a Redis it has not seen (none kept: emptied; another kept: restarted), so an
emptied Redis under a running line is repaired within a pass, without a restart. Web
and worker may do it at the same moment: a callback is put back only where its call
is absent, in one script (`_RESTORE_CALLBACK`), so it is put back once. Then the
reconciler offers every idle available advisor the callers waiting
(`availability.offer_waiting_callers`): a snapshot may bring advisors back available
beside callbacks put back, and nothing else would serve those until an advisor of the
team changed state.

Never double-booked by a snapshot (PRODUCT: one advisor, one caller). An advisor the
snapshot held available and idle may have taken a call since that is still live at
Twilio (a call Redis no longer knows, or knows at an older step). So at a restart
(another `run_id` kept; not an emptied Redis, which brings nobody back available),
before anything offers them a caller, every advisor available and idle is held busy
until Twilio says whether they are on a call (`presence.hold_to_confirm`, one script:
out of every available set, `confirming` on their hash, among
`keys.advisors_to_confirm`). So is every advisor the snapshot holds on a call (not busy
or offline by choice), from its end: that call may be over since, and they on another;
the release of its hold leaves them busy (`presence.make_available`), and they are
asked about once idle. Then, that pass and each pass after while any is held
(`confirm_restored_advisors`), Twilio's REST API is asked for the calls to their phone
ringing or in progress (`Telephony.live_calls_to`: the Call resource's list, filtered
by `To` and `Status`). On one a caller's `<Dial>` spawned, they hold the caller's call
(its `ParentCallSid`) as a claim holds it, ringing or talking and answered by them
(`presence.hold_on_live_call`); the call, unknown to Redis or known at an older step
(say waiting in a queue), becomes theirs and open, so its end (status callback,
`<Dial>` action, or the open-calls check) frees them as any call's. On none, they are
available again, offered the best waiting caller (`presence.confirmed_idle`, then
`availability.free_advisor` with `offer_idle`). Twilio not answering (429, 5xx, a
timeout, its reads let be after a 429), or on a call the desk cannot hold them on (one
placed through the REST API: a callback's leg, a colleague's), they stay held and are
asked again at the next pass: safety before service. What it does not cover: a
caller's webhook in the seconds between the restore and the reconciler's pass (up to
its 10 s interval) may still claim an advisor the snapshot brought back available, or
a call's end then free one it held.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import redis
from sqlalchemy.orm import Session, sessionmaker

from directory import cache_directory, keys
from directory.pending_callbacks import CallbackRequest, pending_callbacks
from directory.scripts import script
from routing import presence
from routing.availability import free_advisor, offer_waiting_callers
from routing.call_end import OPEN_CALL_FETCH_TIMEOUT_SECONDS, twilio_reads_paused
from routing.call_state import CALL_TTL_SECONDS, first_check_due
from routing.changes import announce_change
from routing.desk import Desk
from routing.upgrade import index_open_calls
from telephony import LiveLeg, Outcome

log = logging.getLogger(__name__)

# Open calls made due per script run (a restart with thousands of calls open does not
# stall Redis in one script).
DUE_NOW_BATCH = 1000

# How long (seconds of the clock) a pass goes on asking Twilio about the advisors held
# to confirm (two requests each, `OPEN_CALL_FETCH_TIMEOUT_SECONDS` at most per connect
# and per read; no advisor is asked about past it, nor after a request failed for a
# reason that may pass); those not asked are asked at the next pass, 10 s on, and stay
# held. Beside the pass's other steps (4 s of offers, 4 s of open calls), the pass may
# run past its 10 s interval only when Twilio is slow: the next pass then starts late.
CONFIRM_PASS_SECONDS = 2.0

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


def redis_seen(r: redis.Redis) -> str:
    """Whether the Redis server behind `r` is the one last seen here: "same", "new" (none
    kept: a new or emptied Redis, which brought back no call that is over, but lost
    what it held) or "restarted" (its `run_id` differs from the one kept in
    `keys.redis_run_id`: it may have brought back calls that are over). It is the one
    seen from now on. Swapped in one step (SET ... GET), so of two reconcilers noticing
    the same restart, one says so."""
    run_id = str(r.info("server")["run_id"])
    last = r.set(keys.redis_run_id(), run_id, get=True)
    if last is None:
        return "new"
    return "same" if last == run_id else "restarted"


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


# Put back one pending callback whose call Redis has lost, only while it is absent (a web
# process and a worker restoring at the same moment put it back once; a call Redis has
# is the desk's as it is, but for the two cases below). KEYS: [1] the call's hash, [2]
# its end's mark, [3] its team's waiting set, [4] every team, [5] the open calls. ARGV:
# [1] its score there, [2] the CallSid, [3] the team, [4] the number to call back, [5]
# when it was put back (ms), [6] "1" when Redis was rewound (a snapshot restored), [7]
# the waiting sets' key (with {}), [8..] the hash's fields. The contact hung up after
# asking (the confirmation ends the call): the end is marked, and both are kept without
# expiry, as `acd.end_call` keeps a pending callback's, until its log is written
# (`call_state.keep_a_day_more`). 1 when put back, 0 when the call was left as it is.
#
# Rewound (ARGV[6]), Redis holds state older than the row: a call there with no
# callback, no end and nobody who answered it is the call as it was before the contact
# asked (in the menu, ringing an advisor, waiting): it is replaced by the row's state
# whole, as if absent (out of any other queue it waited in, off the open calls).
# Left so, the open-calls check would end and log it (in the menu, abandoned): a
# callback promised, lost. Not rewound (a service starting, an emptied Redis), a call
# there is current: only a caller waiting in that queue with no callback is taken up,
# marked a callback where they wait, the fields only (their end, the status
# callback's or the open-calls check's, which keeps a pending callback's call). 2 then.
_RESTORE_CALLBACK = """
local function wait_key(team) return (string.gsub(ARGV[7], '{}', function() return team end, 1)) end
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'callback') == '1' or
     redis.call('EXISTS', KEYS[2]) == 1 then
    return 0
  end
  local was = redis.call('HMGET', KEYS[1], 'waiting_team', 'answered_by')
  if ARGV[6] ~= '1' or (was[2] and was[2] ~= '') then
    if was[1] ~= ARGV[3] or not redis.call('ZSCORE', KEYS[3], ARGV[2]) then
      return 0
    end
    redis.call('HSET', KEYS[1], 'callback', '1', 'callback_state', 'waiting',
               'callback_number', ARGV[4], 'callback_restored', ARGV[5])
    return 2
  end
  if was[1] and was[1] ~= '' and was[1] ~= ARGV[3] then
    redis.call('ZREM', wait_key(was[1]), ARGV[2])
  end
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[5], ARGV[2])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
redis.call('SET', KEYS[2], '1')
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[3])
return 1
"""

# What a restored callback's call is, whatever the call was doing when the row was
# written: waiting in its queue for its callback, claimed by nobody, no leg ringing.
_WAITING_AGAIN = {"state": "queued", "advisor": "", "ringing": "", "whisper": "",
                  "callback": "1", "callback_state": "waiting", "callback_leg": ""}


def restore_callback(r: redis.Redis, request: CallbackRequest, now_ms: int,
                     rewound: bool = False) -> bool:
    """Put one pending callback back in its queue at its original place (its score), with
    its call's state as it was asked, its end marked, marked `callback_restored` (at
    `now_ms`, ms since the epoch: its log says so), when Redis does not have its call, or
    (`rewound`: Redis came back from a snapshot, older than the row) has it as it was
    before the request (no callback, no end, not answered); else mark the call a
    callback where it waits, when Redis has it waiting in that queue with none. Whether
    it was put back or marked (`_RESTORE_CALLBACK`)."""
    fields = {**request.call, **_WAITING_AGAIN, "callback_number": request.callback_number,
              "waiting_team": request.team, "wait_score": str(request.wait_score),
              "callback_restored": str(now_ms)}
    flat = [part for field in fields.items() for part in field]
    return bool(script(r, _RESTORE_CALLBACK)(
        keys=[keys.call(request.call_sid), keys.call_ended(request.call_sid),
              keys.team_waiting(request.team), keys.teams(), keys.open_calls()],
        args=[request.wait_score, request.call_sid, request.team, request.callback_number,
              now_ms, "1" if rewound else "0", keys.team_waiting("{}"), *flat], client=r))


def restore_pending_callbacks(r: redis.Redis, session_factory: sessionmaker[Session],
                              now_ms: int, rewound: bool = False) -> int:
    """Put back every callback kept in the database whose call Redis does not have (or,
    `rewound`: has as it was before the request, `restore_callback`) and which has no log
    (`directory.pending_callbacks.pending_callbacks`), in queue order; how many were put
    back. `rewound` only when Redis is known to hold state older than the rows (a
    snapshot restored: another `run_id`). One read of a small table (callbacks are a few a contact a
    day): run when Redis lost its state, never on a call's path. Raises what SQLAlchemy
    raises when the database cannot be read, and `redis.RedisError`."""
    restored = [request.call_sid for request in pending_callbacks(session_factory)
                if restore_callback(r, request, now_ms, rewound)]
    if restored:
        announce_change(r, "queue")
        log.warning("Redis had lost %d pending callback(s); put back in their queues from "
                    "the database: %s", len(restored), ", ".join(restored))
    return len(restored)


def recover_lost_state(r: redis.Redis, session_factory: sessionmaker[Session],
                       now_ms: int, rewound: bool = False) -> int:
    """What an emptied (or, `rewound`, restored from a snapshot) Redis lost and the
    database holds, put back: the directory cache rebuilt (advisors come back `offline`
    where their presence is gone), then the pending callbacks
    (`restore_pending_callbacks`); how many callbacks were put back. Raises as those
    do."""
    cache_directory(session_factory, r, datetime.fromtimestamp(now_ms / 1000, UTC))
    return restore_pending_callbacks(r, session_factory, now_ms, rewound)


def confirm_restored_advisors(desk: Desk, now_ms: int,
                              budget_s: float = CONFIRM_PASS_SECONDS,
                              clock: Callable[[], float] = time.monotonic) -> dict[str, int]:
    """Ask Twilio about each advisor held to confirm (`presence.hold_to_confirm`: a Redis
    restored from a snapshot brought them back available and idle): the calls to their
    phone it lists as ringing or in progress (`Telephony.live_calls_to`). On one that
    a caller's `<Dial>` spawned, they hold the caller's call (`presence
    .hold_on_live_call`: ringing, or talking, answered by them), which the desk then
    knows and ends as any call (its status callback, its `<Dial>` action, the open-calls
    check), freeing them. On none, they are available again and offered the best
    waiting caller (`presence.confirmed_idle`, then `free_advisor` with `offer_idle`).
    Twilio not answering (429, 5xx, a timeout, its reads let be:
    `call_end.twilio_reads_paused`), or on a live call the desk cannot
    hold them on (placed through the REST API: a callback's leg, a colleague's; or one
    the desk marked over), they stay held, and are asked about again at the next pass:
    never offered while Twilio may say they are on a call; a request failing for a
    reason that may pass (429, 5xx, no answer) ends the asking for this pass. Counts:
    `advisors_on_live_calls`, `advisors_confirmed_free`, `advisors_left_to_confirm`.
    `now_ms`: ms since the epoch; no advisor is asked about once `budget_s` seconds of
    `clock` are spent."""
    done = {"advisors_on_live_calls": 0, "advisors_confirmed_free": 0,
            "advisors_left_to_confirm": 0}
    started, failing = clock(), False
    for advisor_id in presence.advisors_to_confirm(desk.r):
        phone, holding = desk.r.hmget(keys.advisor(advisor_id), "phone", "call")
        if (holding or failing or clock() - started >= budget_s
                or twilio_reads_paused(desk, now_ms)):
            # Holding a call (the snapshot's): asked about once its end releases them.
            done["advisors_left_to_confirm"] += 1
            continue
        legs = (desk.telephony.live_calls_to(phone, timeout=OPEN_CALL_FETCH_TIMEOUT_SECONDS)
                if phone else [])  # no phone: never rung, nothing to ask
        if isinstance(legs, Outcome):
            log.warning("advisor %s, restored available from a snapshot, stays held: "
                        "Twilio could not say whether they are on a call (%s)",
                        advisor_id, legs.value)
            done["advisors_left_to_confirm"] += 1
            # Failing (429, 5xx, no answer): the others are asked at the next pass, not
            # now, within this pass's time and the account's rate limit.
            failing = legs is Outcome.TRANSIENT
        elif legs:
            held = _hold_on_live_call(desk, advisor_id, legs, now_ms)
            done["advisors_on_live_calls" if held else "advisors_left_to_confirm"] += 1
        elif presence.confirmed_idle(desk.r, advisor_id, now_ms):
            free_advisor(desk, advisor_id, now_ms, offer_idle=True)
            done["advisors_confirmed_free"] += 1
    return done


def _hold_on_live_call(desk: Desk, advisor_id: str, legs: list[LiveLeg], now_ms: int) -> bool:
    """Hold the advisor on the caller's call behind one of their live legs (answered
    ones first); whether they are held on one now (or are no longer held to confirm)."""
    for leg in sorted(legs, key=lambda leg: leg.status != "in-progress"):
        if not leg.parent_call_sid:
            continue
        talking = leg.status == "in-progress"
        lease_ms = desk.settings.talk_lease_seconds * 1000 if talking else desk.lease_ms
        outcome = presence.hold_on_live_call(
            desk.r, advisor_id, leg.parent_call_sid, now_ms=now_ms,
            lease_until_ms=now_ms + lease_ms, hold="talking" if talking else "ringing",
            first_check_ms=first_check_due(now_ms), call_ttl_s=CALL_TTL_SECONDS)
        if outcome == "held":
            log.warning("advisor %s, restored available from a snapshot, is on call %s at "
                        "Twilio: held on it until it ends", advisor_id, leg.parent_call_sid)
            return True
        if outcome == "stale":
            return True
    log.warning("advisor %s, restored available from a snapshot, is on a call at Twilio "
                "the desk cannot hold them on (%s): held, asked about again next pass",
                advisor_id, ", ".join(leg.sid for leg in legs))
    return False


def promoted_replica(r: redis.Redis) -> bool:
    """Whether the Redis behind `r` is a replica promoted to primary (a Sentinel
    failover), not a server started from a snapshot: Redis keeps the former primary's
    replication offset (`second_repl_offset` in INFO replication) only when a replica
    is promoted; a server started afresh reports -1."""
    info = r.info("replication")
    return info.get("role") == "master" and int(info.get("second_repl_offset", -1)) != -1


def notice_redis_restart(desk: Desk, now_ms: int) -> dict[str, int]:
    """If the Redis behind `desk.r` is not the one seen at the last look (`redis_seen`):
    when it restarted, every open call is due for the check at once
    (`make_open_calls_due`), so those over (ended and logged before the restart rewound
    them) are closed at the next check rather than 10 minutes on; restarted or new
    (emptied), what it lost is put back from the database (`recover_lost_state`, with
    `desk.session_factory`), then every idle available advisor is offered the callers
    waiting (`availability.offer_waiting_callers`): a snapshot may hold advisors
    available beside callbacks just put back, whom no advisor's change would serve.
    Restarted, before any of that, every advisor available and idle is held until
    Twilio says they are on no call, and every one holding a call from its end
    (`presence.hold_to_confirm`), unless the Redis is a replica promoted by a failover
    (`promoted_replica`: its presence is the primary's); each pass, the same
    Redis too, asks Twilio about those held (`confirm_restored_advisors`, its counts
    joining these). Counts: `open_calls_made_due`, `callbacks_restored`,
    `waiting_callers_served`, `advisors_held_to_confirm` (all 0 for the same Redis).
    `now_ms`: ms since the epoch.

    A recovery that fails (the database down) forgets the Redis seen, so the next pass
    notices it again and tries once more; its failure is logged, not raised (the rest
    of the reconciler's pass goes on)."""
    r = desk.r
    done = {"open_calls_made_due": 0, "callbacks_restored": 0, "waiting_callers_served": 0,
            "advisors_held_to_confirm": 0}
    seen = redis_seen(r)
    if seen == "restarted":
        done["open_calls_made_due"] = made = make_open_calls_due(r, now_ms)
        log.warning("Redis restarted (a new run_id): its %d open call(s) due later are "
                    "asked about now, so those already over are closed", made)
        # Before anything offers them a caller: the snapshot's presence may be older
        # than a call they took since. Not after a failover: the replica promoted
        # held every write a replica acknowledged before its answer went out
        # (`ivr.voice.hooks.keep_through_a_failover`), so its presence is current.
        held = [] if promoted_replica(r) else presence.hold_to_confirm(r, now_ms)
        done["advisors_held_to_confirm"] = len(held)
        if held:
            log.warning("Redis restarted: %d advisor(s) it brought back available held "
                        "until Twilio says they are on no call: %s", len(held),
                        ", ".join(held))
    done.update(confirm_restored_advisors(desk, now_ms))
    if seen == "same":
        return done
    try:
        if desk.session_factory is not None:
            done["callbacks_restored"] = recover_lost_state(
                r, desk.session_factory, now_ms, rewound=seen == "restarted")
        done["waiting_callers_served"] = offer_waiting_callers(desk, now_ms)
    except Exception:
        log.exception("Redis lost its state, and putting it back (from the database) or "
                      "serving the callers waiting failed; tried again at the next pass")
        # Redis down as well: the pass fails at its next step anyway.
        with contextlib.suppress(redis.RedisError):
            r.delete(keys.redis_run_id())
    return done
