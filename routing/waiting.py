"""The waiting side of the ACD: who waits where, in serving order, how long a
caller can expect to wait, and what a waiting caller may do: hold (each cycle
may claim a free advisor), ask for a callback, leave a voicemail after the
longest wait, or leave the queue when Twilio cannot hold them.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from sqlalchemy.exc import SQLAlchemyError

from config import hours
from config.webhooks import HOLD_AGAIN, webhook_url
from directory import keys, recache_if_lost
from directory.catalog import GENERAL, HOSTING
from directory.pending_callbacks import (
    CallbackRequest,
    forget_pending_callback,
    record_pending_callback,
)
from directory.scripts import as_hash, script
from routing import acd, callbacks, oncall, outage, presence
from routing.availability import (
    REOFFER_AFTER_MS,
    fallback_given,
    left_on_hold_cycle,
    note_dequeued,
)
from routing.call_state import LEAVE_WAITING, call_and_end, get_call, update_call
from routing.cases import Voicemail
from routing.changes import announce_change
from routing.desk import Desk
from routing.presence import BAND_WIDTH, BANDS
from telephony import Outcome

log = logging.getLogger(__name__)


_BAND_NAMES = {band: name for name, band in BANDS.items()}


def estimate(
    desk: Desk, team: str, rank: int | None, recent: list[str], working: str | None
) -> tuple[int | None, float | None]:
    """Place in line and estimated wait: recent average wait x place / advisors serving
    the team (`_serving_advisors`: available, or holding a call).

    With no advisor serving the team (at night, say, or every one busy by their own
    choice) there is no estimate (None): a wait the desk cannot keep is never promised,
    and the caller hears their place and that no wait can be estimated.
    """
    if rank is None:
        return None, None
    serving = int(working) if working is not None else _serving_advisors(desk, team)
    if serving <= 0:
        return rank + 1, None
    waits = [float(w) for w in recent]
    average = sum(waits) / len(waits) if waits else 30.0
    return rank + 1, average * (rank + 1) / serving


def _serving_advisors(desk: Desk, team: str) -> int:
    """How many advisors of a team are serving its callers, cached a few seconds: those
    available, and those holding a call (ringing, talking, wrap-up). An advisor busy by
    their own choice (a meeting, a break: `PUT /api/advisors/<id>/status`), holding no
    call, serves nobody: counted, they would have the estimate promise a wait nobody
    keeps.

    Only the estimate uses it, so a count up to five seconds old is fine and
    spares every hold cycle a read of every advisor.
    """
    advisor_ids = list(desk.r.smembers(keys.advisors()))
    pipe = desk.r.pipeline(transaction=False)
    for advisor_id in advisor_ids:
        pipe.hmget(keys.advisor(advisor_id), "status", "hold", "teams")
    count = sum(
        1
        for status, hold, teams in pipe.execute()
        # Holding a call, they serve the queue whatever status they chose for after it.
        if (status == "available" or hold in presence.HOLDS)
        and team in (teams or "").split(",")
    )
    desk.r.set(keys.team_working(team), count, ex=5)
    return count


def team_names(desk: Desk, now_ms: int) -> list[str]:
    """Every team, sorted: those of the directory's advisors, and any a caller waited for.

    Redis back empty under a running service knows no team until something writes
    one: the directory cache is rebuilt from the database first when Redis lost it
    (`directory.recache_if_lost`, one EXISTS otherwise), so the queues and the stats
    list every team, with nobody waiting, instead of none. SQLAlchemy's errors when it
    must be rebuilt and the database is down; `now_ms` in ms since the epoch."""
    if desk.session_factory is not None:
        recache_if_lost(desk.session_factory, desk.r, datetime.fromtimestamp(now_ms / 1000, UTC))
    return sorted(desk.r.smembers(keys.teams()))


def waiting_callers(desk: Desk, now_ms: int) -> dict[str, list[dict[str, object]]]:
    """Every team's waiting callers in the order they will be served (GET /api/queues):
    {team: [{"call_sid", "priority", "waiting_seconds" (since first arrival),
    "case_number", "caller", "district", "callback"}]} (`team_names`: every team, its
    list empty when nobody waits); `now_ms` in ms since the epoch."""
    return {team: _described(desk, desk.r.zrange(keys.team_waiting(team), 0, -1,
                                                  withscores=True), now_ms)
            for team in team_names(desk, now_ms)}


def queue_heads(desk: Desk, now_ms: int, limit: int) -> dict[str, dict[str, object]]:
    """Each team's count of waiting callers and the first `limit` of them, as
    `waiting_callers` describes them: {team: {"waiting": int, "callers": [...]}}.

    What a wallboard shows: in a storm 5,000 may wait, and reading and drawing
    every one of them on each change would cost the line's core more than the
    calls do (~200 ms of CPU a refresh, measured; docs/benchmarks.md).
    """
    teams = team_names(desk, now_ms)
    pipe = desk.r.pipeline(transaction=True)  # the count and the head from one moment
    for team in teams:
        pipe.zcard(keys.team_waiting(team))
        pipe.zrange(keys.team_waiting(team), 0, limit - 1, withscores=True)
    found = pipe.execute()
    return {team: {"waiting": found[2 * i], "callers": _described(desk, found[2 * i + 1], now_ms)}
            for i, team in enumerate(teams)}


# What a listing needs of each waiting caller's call, read in one script per
# `_LISTING_CHUNK` callers (5,000 may wait, Twilio's largest queue: as commands
# in a pipeline they cost redis-py ~60 ms to pack and parse; a chunk keeps Redis
# free for the calls between two of them).
_CALL_FIELDS = """
local out = {}
for i, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'case', 'caller', 'district', 'callback')
  for j = 1, 4 do out[(i - 1) * 4 + j] = f[j] end
end
return out
"""
_LISTING_CHUNK = 500


def _described(desk: Desk, entries: list[tuple[str, float]],
               now_ms: int) -> list[dict[str, object]]:
    """Waiting callers (call SID, score), in order, with what their calls say."""
    fields: list[str | None] = []
    read = script(desk.r, _CALL_FIELDS)
    for first in range(0, len(entries), _LISTING_CHUNK):
        chunk = entries[first:first + _LISTING_CHUNK]
        # A missing field comes back as Lua's false, a nil in the reply: one per field.
        fields += read(keys=[keys.call(sid) for sid, _ in chunk], client=desk.r)
    callers = []
    calls = (fields[i:i + 4] for i in range(0, len(fields), 4))
    for (call_sid, score), call in zip(entries, calls, strict=True):
        # The score keeps their first arrival: a caller queued again after a
        # missed ring has waited since then, as they would say.
        band, arrived = divmod(int(score), BAND_WIDTH)
        callers.append({
            "call_sid": call_sid,
            "priority": _BAND_NAMES.get(band, "medium"),
            "waiting_seconds": round(max(0, now_ms - arrived) / 1000, 1),
            "case_number": call[0] or None,
            "caller": call[1] or None,
            "district": call[2] or None,
            # Asked to be called back (they hung up and keep their place).
            "callback": call[3] == "1",
        })
    return callers


# What a hold cycle reads, in one round trip (it runs for every waiting caller every
# few seconds: 5,000 may wait): the call's hash, whether it ended, and for its team
# its place in line, the recent waits, the cached count of advisors working, and
# the advisors free in the team and in general.
_HOLD_READS = """
local call = redis.call('HGETALL', KEYS[1])
local ended = redis.call('EXISTS', KEYS[2])
local team = redis.call('HGET', KEYS[1], 'waiting_team')
if ended == 1 or not team or team == '' then return {call, ended} end
local function k(template, name) return (string.gsub(template, '{}',
    function() return name end)) end
return {call, ended,
        redis.call('ZRANK', k(ARGV[1], team), ARGV[6]),
        redis.call('LRANGE', k(ARGV[2], team), 0, 19),
        redis.call('GET', k(ARGV[3], team)),
        redis.call('ZCARD', k(ARGV[4], team)),
        redis.call('ZCARD', k(ARGV[4], ARGV[5]))}
"""


@dataclass(frozen=True)
class HoldCycle:
    """One hold cycle of a waiting caller: leave for an advisor, or hear where they are."""

    leave: bool
    position: int | None = None
    estimate_seconds: float | None = None  # None with a position: nobody is working the team
    offer_callback: bool = False  # a verified contact with a dialable directory phone
    offer_voicemail: bool = False  # waited past CASELINE_MAX_WAIT_SECONDS


def hold_cycle(desk: Desk, call_sid: str, now_ms: int) -> HoldCycle:
    """On each hold cycle: claim a free advisor for the caller at the head of a queue,
    else tell them their place and estimated wait.

    The claim catches what no release event would: an advisor left available
    after missing this very caller, or a general advisor idle while this caller
    has waited past the overflow time. Only heads are offered, so order holds.
    """
    found = script(desk.r, _HOLD_READS)(
        keys=[keys.call(call_sid), keys.call_ended(call_sid)],
        args=[keys.team_waiting("{}"), keys.team_waits("{}"), keys.team_working("{}"),
              keys.team_available("{}"), GENERAL, call_sid], client=desk.r)
    call, ended = as_hash(found[0]), bool(found[1])
    team = call.get("waiting_team")
    if not team or ended:
        return HoldCycle(leave=False)
    rank, recent, working, free_here, free_general = found[2:]
    # Since their first arrival: a caller queued again after a missed ring keeps it.
    arrived = _arrival_ms(call, now_ms)
    if rank == 0 and call.get("callback") != "1":
        candidates = [team] if free_here else []
        overflowed = now_ms - arrived >= desk.settings.overflow_seconds * 1000
        if team != GENERAL and free_general and overflowed:
            candidates.append(GENERAL)
        for serving_team in candidates:
            claim = presence.claim_for_caller(
                desk.r, call_sid, team=serving_team, owner_id=None, now_ms=now_ms,
                lease_ms=desk.lease_ms, priority=call.get("priority"),
                queue_if_none=False, retry_after_ms=REOFFER_AFTER_MS,
            )
            if claim.outcome == "advisor":
                note_dequeued(desk, call_sid, call, now_ms, on_hold_cycle=True)
                return HoldCycle(leave=True)
    # The engineer goes to the first caller in line who may have them, not only the
    # head: a callback or a caller the night does not route may be ahead.
    if rank is not None and _oncall_serves(desk, call, now_ms) and \
            oncall.offer_to_head(desk, call_sid, call, now_ms):
        note_dequeued(desk, call_sid, call, now_ms, state="oncall")
        return HoldCycle(leave=True)
    if rank is None and (oncall.left_for_engineer(desk, call_sid, call)
                         or left_on_hold_cycle(desk, call_sid, call)):
        return HoldCycle(leave=True)  # a repeat of the hold cycle that took them out
    position, seconds = estimate(desk, team, rank, recent, working)
    if rank is None:  # being connected, or a callback request: nothing to offer
        return HoldCycle(leave=False, position=position, estimate_seconds=seconds)
    waited_ms = now_ms - arrived
    offer_voicemail = waited_ms >= desk.settings.max_wait_seconds * 1000
    if offer_voicemail and call.get("voicemail_offered") != "1":
        # Heard now: the reconciler need not bring them back to hear it (`offer_voicemails`).
        update_call(desk.r, call_sid, voicemail_offered=1)
    return HoldCycle(
        leave=False, position=position, estimate_seconds=seconds,
        offer_callback=call.get("callback") != "1"
        and callbacks.callback_number(desk, call) is not None,
        offer_voicemail=offer_voicemail,
    )


# `voicemail_offered` as the reconciler writes it when it sends a caller to hear the
# offer (`offer_voicemails`): distinct from the hold cycle's "1" (heard it), so a
# failed redirect takes back only its own mark (`_FORGET_OFFER`), and the hold cycle
# the redirect brings, writing "1", is the sign Twilio followed it.
OFFER_SENT = "sent"
# Of the waiting callers past the longest wait (KEYS, their calls' hashes; ARGV[i] the
# CallSid of KEYS[i], ARGV[#KEYS + 1] how many to mark at most, ARGV[#KEYS + 1 + i] the
# ended mark's key of KEYS[i], ARGV[2 * #KEYS + 2] `OFFER_SENT`), those still on the
# line (not over, not a callback's contact) who have not heard the voicemail offered
# nor are being sent to hear it (`voicemail_offered` unset), marked `OFFER_SENT` in the
# same step (once per caller), with their service's base URL: {CallSid, base, ...}.
_OFFER_VOICEMAIL = """
local out = {}
local n = #KEYS
for i, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'callback', 'voicemail_offered', 'base')
  if f[1] ~= '1' and (not f[2] or f[2] == '') and f[3] and f[3] ~= '' and
     redis.call('EXISTS', ARGV[n + 1 + i]) == 0 then
    redis.call('HSET', key, 'voicemail_offered', ARGV[2 * n + 2])
    out[#out + 1] = ARGV[i]
    out[#out + 1] = f[3]
    if #out >= 2 * tonumber(ARGV[n + 1]) then return out end
  end
end
return out
"""
# How many waiting callers `_OFFER_VOICEMAIL` reads in one step (5,000 may wait), and
# marks at most: the worker's redirects are sent one after another (~150 ms each, seconds
# while Twilio fails), so a pass marks only what it has the time to redirect.
_OFFER_CHUNK = 500
_OFFER_AT_ONCE = 10
# How long (s) a pass goes on redirecting callers to hear the offer: the next pass,
# 10 s on, redirects the rest.
OFFER_VOICEMAIL_SECONDS = 3.0


def offer_voicemails(desk: Desk, now_ms: int, budget_s: float = OFFER_VOICEMAIL_SECONDS,
                     clock: Callable[[], float] = time.monotonic) -> int:
    """Every caller waiting past `CASELINE_MAX_WAIT_SECONDS` who has not heard the
    voicemail offered is redirected (REST, on the desk's background pool, retried as an
    advisor's caller is) to `/voice/hold-again`, which puts them back in Twilio's queue
    at once: its waitUrl, asked as they join, offers the voicemail (`hold_cycle`).
    Without this the offer waits for their next hold cycle, which Twilio asks only
    once the hold music has played out, minutes on (PRODUCT: "A caller waiting longer
    than CASELINE_MAX_WAIT_SECONDS is offered a voicemail"). Their place is the desk's
    queue (their score), untouched: one who declines waits on, first in line as before.
    Offered once per caller (`voicemail_offered`, also written by the hold cycle that
    offers it); a redirect Twilio kept refusing is tried again on the next pass. Run by
    the reconciler's every pass (~10 s); how many were redirected. `now_ms`: ms since
    the epoch. No caller is marked once `budget_s` (seconds of `clock`) is spent: the
    next pass offers the rest."""
    cutoff = now_ms - desk.settings.max_wait_seconds * 1000
    if cutoff <= 0:
        return 0
    pipe = desk.r.pipeline(transaction=False)
    teams = sorted(desk.r.smembers(keys.teams()))
    for team in teams:
        for band in sorted(BANDS.values()):
            pipe.zrangebyscore(keys.team_waiting(team), band * BAND_WIDTH,
                               band * BAND_WIDTH + cutoff)
    waiting = [sid for found in pipe.execute() for sid in found]
    started, offered, first = clock(), 0, 0
    while first < len(waiting) and clock() - started < budget_s:
        chunk = waiting[first:first + _OFFER_CHUNK]
        found = script(desk.r, _OFFER_VOICEMAIL)(
            keys=[keys.call(sid) for sid in chunk],
            args=[*chunk, _OFFER_AT_ONCE, *(keys.call_ended(sid) for sid in chunk),
                  OFFER_SENT],
            client=desk.r)
        for sid, base in zip(found[::2], found[1::2], strict=True):
            desk.telephony.later(functools.partial(
                _redirect_to_hold, desk, sid, webhook_url(base, HOLD_AGAIN)))
            offered += 1
        if len(found) < 2 * _OFFER_AT_ONCE:
            first += _OFFER_CHUNK  # nobody else to offer in this chunk
    return offered


# Whether the reconciler's redirect to hear the voicemail offer is still wanted
# (KEYS[1] the call's hash, KEYS[2] its ended mark; ARGV[1] the team's waiting set,
# with {}; ARGV[2] the CallSid; ARGV[3] `OFFER_SENT`): 1 while the call is not over,
# its mark is still the reconciler's, and the caller waits unclaimed in their team's
# queue; else 0.
_STILL_OFFERING = """
local f = redis.call('HMGET', KEYS[1], 'waiting_team', 'voicemail_offered')
if f[2] ~= ARGV[3] or not f[1] or f[1] == '' then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local team = f[1]
if redis.call('ZSCORE', (string.gsub(ARGV[1], '{}', function() return team end, 1)),
              ARGV[2]) then return 1 end
return 0
"""
# The reconciler's mark taken back (KEYS[1] the call's hash; ARGV[1] `OFFER_SENT`) only
# if it is still the reconciler's: a hold cycle that offered the voicemail meanwhile
# wrote "1", which stays (offered once). 1 when taken back.
_FORGET_OFFER = """
if redis.call('HGET', KEYS[1], 'voicemail_offered') == ARGV[1] then
  return redis.call('HDEL', KEYS[1], 'voicemail_offered')
end
return 0
"""


def _still_offering(desk: Desk, call_sid: str) -> bool | None:
    """Whether a caller sent to hear the voicemail offer still waits for it, unclaimed
    (`_STILL_OFFERING`); None when Redis cannot tell."""
    try:
        return bool(script(desk.r, _STILL_OFFERING)(
            keys=[keys.call(call_sid), keys.call_ended(call_sid)],
            args=[keys.team_waiting("{}"), call_sid, OFFER_SENT], client=desk.r))
    except redis.RedisError:
        return None


def _offer_heard(desk: Desk, call_sid: str) -> bool | None:
    """Whether the voicemail offer reached the caller: the hold cycle that offers it
    (the waitUrl Twilio asks once the redirect put them back in the queue, or their
    own) wrote `voicemail_offered` "1" over the reconciler's `OFFER_SENT`. None when
    Redis cannot tell."""
    try:
        return desk.r.hget(keys.call(call_sid), "voicemail_offered") == "1"
    except redis.RedisError:
        return None


def _redirect_to_hold(desk: Desk, call_sid: str, url: str) -> None:
    """Redirect a caller past the longest wait to `/voice/hold-again` (`offer_voicemails`).

    Sent (first try and every retry) only while the caller still waits unclaimed in
    their team's queue with the reconciler's mark (`_still_offering`): an advisor
    claimed during the backoff is ringing them or talking to them, and a redirect
    reaching Twilio then would stop that `<Dial>`. Redis unable to tell: not sent
    (the offer is worth less than a ring it could cut; the hold cycle offers it too).
    A failure Twilio may have carried out is not sent again once the hold cycle it
    brings shows (`_offer_heard`). Twilio saying the call is over: nothing (their
    end takes them out of the queue). Still failing, or not sent: the reconciler's
    mark is taken back only if still its own (`_FORGET_OFFER`), so the next pass
    tries again, but a caller whose hold cycle offered it meanwhile is not brought
    back to hear it twice."""
    outcome = desk.telephony.redirect_call(
        call_sid, url, carried_out=functools.partial(_offer_heard, desk, call_sid),
        still_wanted=functools.partial(_still_offering, desk, call_sid))
    if outcome in (Outcome.DONE, Outcome.GONE):
        return
    if outcome is not Outcome.UNWANTED:
        log.warning("could not bring waiting caller %s to hear the voicemail offer", call_sid)
    try:
        script(desk.r, _FORGET_OFFER)(keys=[keys.call(call_sid)], args=[OFFER_SENT],
                                      client=desk.r)
    except redis.RedisError:
        log.warning("could not take back the voicemail offer mark of %s", call_sid)


def hold_again(desk: Desk, call_sid: str, now_ms: int,
               call_status: str = "in-progress") -> acd.Decision:
    """A waiting caller redirected to `/voice/hold-again` (`offer_voicemails`): back in
    their team's Twilio queue (the desk's queue, their place, untouched) while they
    still wait in it; nothing when the call is over.

    Out of the queue, an advisor or engineer was claimed for them meanwhile (this
    redirect may have overtaken that one, or reached Twilio as the claim was made:
    `_redirect_to_hold` sends none after it). Not yet answered (`connecting`, or the
    advisor's ring that this redirect cut): brought to them (`outage.connect_redirected`,
    which rings the claimed advisor again: the ring's recovery). Already answered
    (`answered_by`: bridged, or in a conference): this redirect stopped the
    conversation's `<Dial>`, which hung up the advisor's leg; the advisor is never
    rung (whispered) again for a caller they were talking to. The caller's call is
    ended as an answered call (`CallFinished(answered_by)`: a hang-up, no goodbye),
    whose end frees the advisor to their wrap-up as any conversation's end does
    (`acd.end_call`); routing them afresh would queue a caller whose advisor is
    still held as talking to them until that end."""
    call, ended = call_and_end(desk.r, call_sid)
    if ended or acd.is_final(call_status) or not call:
        return acd.CallFinished(None)
    team = call.get("waiting_team")
    rank = desk.r.zrank(keys.team_waiting(team), call_sid) if team else None
    if team and rank is not None:
        return acd.WaitInQueue(team, rank + 1)
    if call.get("answered_by"):
        log.warning("hold-again for %s, already answered by %s: its conversation was cut; "
                    "ending the call", call_sid, call["answered_by"])
        return acd.CallFinished(call["answered_by"])
    return outage.connect_redirected(desk, call_sid, now_ms, call_status=call_status)


def _oncall_serves(desk: Desk, call: dict[str, str], now_ms: int) -> bool:
    """Whether the on-call engineer serves this waiting caller: an outage caller on the
    line, a verified contact of a hosted district (`oncall.may_have_engineer`), waiting
    for hosting while the desk is closed, with an engineer configured (the night's
    rule, `outage.routed_at_night`)."""
    return (bool(desk.settings.oncall_number) and call.get("waiting_team") == HOSTING
            and oncall.may_have_engineer(call)
            and not hours.is_open(datetime.fromtimestamp(now_ms / 1000, UTC)))


# Twilio's `<Enqueue>` action results that mean the caller was never queued
# (their `QueueResult`); the caller is still on the line.
QUEUE_FAILURES = frozenset({"queue-full", "error", "system-error"})
# How many times a caller is put in Twilio's queue before another way is taken.
QUEUE_ATTEMPTS = 2


# A caller leaves their queue for something other than an advisor (a voicemail, or
# Twilio unable to queue them), their wait so far noted on the call for its log, in
# one step (`call_state.LEAVE_WAITING`: ARGV[1] the waiting set's key with {}, ARGV[2]
# the CallSid, ARGV[3] now, ms), then the fields ARGV[4..] written. 1 when they left it
# now; 0 (nothing written) when they were not waiting: claimed for an advisor meanwhile
# (that claim noted the wait), or a repeat. A caller is never both left and abandoned,
# and no wait is counted twice.
_LEAVE_WAITING = LEAVE_WAITING + """
if not leave_waiting(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])) then return 0 end
if #ARGV > 3 then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end
return 1
"""


def _leave_waiting(desk: Desk, call_sid: str, now_ms: int, **fields: str | int) -> bool:
    """Take a waiting caller out of their queue, their wait (ms, since they joined it,
    added to any earlier wait of the call) noted for the log, and `fields` written;
    False, nothing changed, when they were not in it (`_LEAVE_WAITING`)."""
    flat = [str(item) for pair in fields.items() for item in pair]
    left = script(desk.r, _LEAVE_WAITING)(
        keys=[keys.call(call_sid)],
        args=[keys.team_waiting("{}"), call_sid, now_ms, *flat], client=desk.r)
    if left:
        announce_change(desk.r, "queue")
    return bool(left)


def leave_queue(desk: Desk, call_sid: str, now_ms: int) -> None:
    """The caller cannot wait (Twilio could not queue them): out of their waiting set,
    the moment they spent in it on their log (`queue_wait_seconds`).

    What they get instead (the fallback number, a voicemail on their case) is
    the caller's next step; the call log says so (`queue_failed`).
    """
    if not _leave_waiting(desk, call_sid, now_ms, queue_failed=1, state="queue-failed"):
        update_call(desk.r, call_sid, queue_failed=1, state="queue-failed")


def _arrival_ms(call: dict[str, str], now_ms: int) -> int:
    """When the caller first joined a queue (ms): the arrival kept in their score."""
    score = call.get("wait_score")
    if score and score.isdigit():
        return int(score) % presence.BAND_WIDTH
    return int(call.get("enqueued_at") or now_ms)


# A waiting caller's callback, kept in one step with the look that allows it: "taken"
# (the fields ARGV[3..] written) only while the call is not over (KEYS[2], its end's
# mark) and waits in its team's set (ARGV[1], with {}), ARGV[2] its CallSid; else
# "already" (a callback kept already: a repeat), "over" or "not-queued" (being
# connected), nothing written. A status callback handled between a separate look and
# write would end the call as an ordinary one, then the write mark it a pending
# callback that waits nowhere, kept forever.
_KEEP_CALLBACK = """
local call = redis.call('HMGET', KEYS[1], 'callback', 'waiting_team')
if call[1] == '1' then return 'already' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'over' end
local team = call[2]
if not team or team == '' or
   not redis.call('ZSCORE', (string.gsub(ARGV[1], '{}',
       function() return team end, 1)), ARGV[2]) then
  return 'not-queued'
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
return 'taken'
"""


def request_callback(desk: Desk, call_sid: str, now: datetime | None = None) -> bool:
    """A waiting caller asks to be called back: they keep their place and may hang up.

    Only as `routing.callbacks` allows (a verified contact, their directory
    phone, a few a day); False (the caller keeps waiting) otherwise. The callback is
    first kept in the database (`_kept_in_database`: refused, the caller keeps waiting,
    when it cannot be), then in Redis in the same step as the look that the call is not
    over and still waits (`_KEEP_CALLBACK`); refused at either, the day's callback
    counted for it is given back.
    """
    now = now or datetime.now(UTC)
    call = get_call(desk.r, call_sid)
    if call.get("callback") == "1":
        return True  # confirmed already: a repeat (Twilio's retry) takes no other callback
    team = call.get("waiting_team")
    score = desk.r.zscore(keys.team_waiting(team), call_sid) if team else None
    if not team or score is None:
        return False  # already being connected
    number = callbacks.callback_number(desk, call)
    if number is None or not callbacks.take_callback(desk, call["contact"], now):
        return False
    # Their time on hold so far (ms), a missed ring's earlier wait included: the wait the
    # line's service level counts for a callback (`routing.stats`), not its hours after.
    now_ms = int(now.timestamp() * 1000)
    held_ms = int(float(call.get("queue_wait_ms") or 0)) + max(
        0, now_ms - int(call.get("enqueued_at") or now_ms))
    fields = {"callback": "1", "callback_state": "waiting", "callback_number": number,
              "callback_hold_ms": str(held_ms)}
    request = CallbackRequest(call_sid, {**call, **fields}, team, int(score), number)
    if not _kept_in_database(desk, request, now):
        callbacks.give_back_callback(desk, call["contact"], now)
        return False
    kept = script(desk.r, _KEEP_CALLBACK)(
        keys=[keys.call(call_sid), keys.call_ended(call_sid)],
        args=[keys.team_waiting("{}"), call_sid, *(p for f in fields.items() for p in f)],
        client=desk.r)
    if kept != "taken":
        callbacks.give_back_callback(desk, call["contact"], now)
        if kept != "already" and desk.session_factory is not None:
            forget_pending_callback(desk.session_factory, call_sid)
    return kept in ("taken", "already")


def _kept_in_database(desk: Desk, request: CallbackRequest, now: datetime) -> bool:
    """Whether the callback asked for is kept in the database, where a Redis that comes
    back empty cannot lose it (`routing.redis_restarts.restore_pending_callbacks`); False,
    logged, when the database cannot be written: a callback that could be lost is not
    promised.

    The one SQL write of a voice webhook, and only of this one: a callback is asked for
    rarely (at most `callbacks.MAX_CALLBACKS_PER_DAY` a contact a day), by a caller who
    has waited already, off the path every call takes."""
    if desk.session_factory is None:
        log.error("callback for %s refused: no database to keep it in", request.call_sid)
        return False
    try:
        record_pending_callback(desk.session_factory, request, now)
    except SQLAlchemyError as exc:
        log.error("callback for %s refused: the database could not keep it (%s); the "
                  "caller keeps waiting", request.call_sid, exc)
        return False
    return True


def _voicemail_on_offer(desk: Desk, call_sid: str, now: datetime) -> bool:
    """Whether the caller has waited long enough to be offered a voicemail (as their
    hold cycle offers it: since they first joined a queue)."""
    now_ms = int(now.timestamp() * 1000)
    waited_ms = now_ms - _arrival_ms(get_call(desk.r, call_sid), now_ms)
    return waited_ms >= desk.settings.max_wait_seconds * 1000


def leave_for_voicemail(desk: Desk, call_sid: str, now_ms: int) -> bool:
    """A caller who waited past `CASELINE_MAX_WAIT_SECONDS` chose to leave a message
    on their case: out of the queue, their wait on their log (`queue_wait_seconds`);
    False when they are being connected already. True again for a repeat of the key
    (Twilio's retry without its token, whose reply Twilio acts on): out of the desk's
    queue, they must leave Twilio's too."""
    if _leave_waiting(desk, call_sid, now_ms, state="voicemail", voicemail_after_wait=1):
        return True
    return wants_voicemail(get_call(desk.r, call_sid))


def wants_voicemail(call: dict[str, str]) -> bool:
    """Whether the caller left the queue to leave a message."""
    return call.get("state") == "voicemail"


@dataclass(frozen=True)
class HoldKey:
    """What a key pressed on hold does: "voicemail" (leave the queue to record a
    message), "callback" (confirmed: the caller may hang up and keeps their place),
    "no-callback" (not offered: keep waiting), or "" (back to the hold music)."""

    outcome: str


def press_hold_key(desk: Desk, call_sid: str, key: str, now: datetime) -> HoldKey:
    """A waiting caller pressed a key: 1 keeps their place for a callback (when the
    policy allows it), 2 leaves the queue for a voicemail on their case once it is on
    offer (after `CASELINE_MAX_WAIT_SECONDS`). Any other key, or 2 pressed before
    then, changes nothing: the caller keeps their place."""
    if key == "2" and _voicemail_on_offer(desk, call_sid, now) \
            and leave_for_voicemail(desk, call_sid, int(now.timestamp() * 1000)):
        return HoldKey("voicemail")
    if key == "1":
        return HoldKey("callback" if request_callback(desk, call_sid, now) else "no-callback")
    return HoldKey("")


@dataclass(frozen=True)
class Requeue:
    """Route the caller again (`decision`); `attempt` counts tries of Twilio's queue."""

    decision: acd.Decision
    attempt: int = 1


@dataclass(frozen=True)
class QueueFailed:
    """Twilio could not queue the caller, twice: the fallback number when there is one,
    else a voicemail on their case."""

    fallback_number: str | None


def after_queue(
    desk: Desk, call_sid: str, result: str, call_status: str, attempt: int, now_ms: int
) -> Requeue | Voicemail | QueueFailed | acd.Nothing:
    """The caller left Twilio's queue (`QueueResult`): routed again if asked to leave.

    When Twilio could not queue them at all (`queue-full`, `error`,
    `system-error`), they still reach someone: another try, then the fallback
    number, else a voicemail on their case. Never a silent hang-up.
    """
    caller_gone = acd.is_final(call_status)
    if result == "leave" and not caller_gone:
        call = get_call(desk.r, call_sid)
        if wants_voicemail(call):
            return Voicemail()
        if call.get("state") == "oncall" and desk.settings.oncall_number:
            # Offered the on-call engineer on a hold cycle (`oncall.offer_to_head`), or
            # taken for them as the line freed (a REST redirect still retried must not
            # cut this ring: `oncall.brought_over`).
            oncall.note_dialed(desk, call_sid)
            return Requeue(acd.DialNumber(desk.settings.oncall_number))
        return Requeue(acd.route_caller(desk, call_sid, now_ms))
    if result not in QUEUE_FAILURES or caller_gone:
        return acd.Nothing()
    log.error("Twilio could not queue call %s (QueueResult=%s, try %d)", call_sid, result,
              attempt)
    if attempt < QUEUE_ATTEMPTS:
        return Requeue(acd.route_caller(desk, call_sid, now_ms), attempt + 1)
    leave_queue(desk, call_sid, now_ms)
    if desk.settings.fallback_number:
        fallback_given(desk, call_sid, "number", now_ms)
    return QueueFailed(desk.settings.fallback_number)
