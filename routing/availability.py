"""An advisor's release: the end of their part in a call (wrap-up), then the
best waiting caller brought to them, else available again.

A claimed waiting caller is redirected through Twilio's REST API (after the
webhook has answered); a callback caller is called back by ringing the
advisor first. When Twilio cannot be asked, the caller keeps their place and
the advisor takes the next one.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

import redis

from config.webhooks import CALLBACK_ADVISOR, CALLBACK_STATUS, CONNECT, webhook_url
from directory import keys
from directory.catalog import GENERAL
from directory.scripts import script
from jobs.queues import schedule_end_of_wrapup
from routing import presence
from routing.call_state import call_and_end, note_fallback, record_try, update_call
from routing.desk import Desk
from telephony import Outcome

log = logging.getLogger(__name__)

# How many waiting callers one freed advisor may try before giving up on
# redirects (each failure means that caller had already hung up).
_MAX_REDIRECT_ATTEMPTS = 20
# How long (seconds) a waiting caller's redirect, failed in a way that may have come
# after Twilio moved the call (a 5xx, a cut connection), looks for the sign that it did
# (`_brought_over`) before it is sent again: two webhooks (the `<Enqueue>` action, then
# /voice/connect) from a Twilio that has just failed and may be slow. No answer waits
# on it: only the caller, hearing the queue's music, the advisor claimed for them, and
# one of the web's four REST threads. A redirect that really failed every time is
# given up after 5.75 s of waits (1, 1, 1 and 1.75 s between its five tries, 1 s after
# the last) instead of 3.5 s.
_BROUGHT_OVER_LOOK_SECONDS = 1.0
# An advisor who did not answer a caller (or a callback's ring) is offered that caller
# again from the queue only after this long, ms (they may have stepped away); others
# are offered them meanwhile.
REOFFER_AFTER_MS = 60_000


def finish_with_advisor(desk: Desk, call_sid: str, advisor_id: str, now_ms: int) -> None:
    """The advisor's part of a call is over: wrap-up, then available again."""
    wrapup = desk.settings.wrapup_seconds
    if wrapup <= 0:
        free_advisor(desk, advisor_id, now_ms, expected_call=call_sid)
        return
    if presence.hold_for(
        desk.r, advisor_id, call_sid=call_sid, hold="wrapup",
        lease_until_ms=now_ms + wrapup * 1000,
    ):
        schedule_end_of_wrapup(desk.job_redis, advisor_id, call_sid, now_ms + wrapup * 1000)


def finish_taken_callback(desk: Desk, call_sid: str, advisor_id: str, now_ms: int) -> None:
    """The advisor's leg for a callback they took is over: wrap-up, then available, as
    after any routed call (`finish_with_advisor`), unless the contact is known not to
    have answered: then available at once.

    Twilio posts the leg's end and the `<Dial>`'s action (did the contact answer?) as
    two requests, in either order. At the leg's end the answer may not be known yet:
    the advisor who may have talked is held in wrap-up (never freed early, never
    double-booked); an action that says the contact never answered then ends that
    wrap-up (`routing.callbacks.contact_unreached`). The check and the wrap-up's start
    are one step (`presence.wrap_up_taken_callback`). `now_ms`: ms since the epoch."""
    wrapup = desk.settings.wrapup_seconds
    if wrapup > 0:
        until = now_ms + wrapup * 1000
        held = presence.wrap_up_taken_callback(desk.r, advisor_id, call_sid, until)
        if held == "wrapup":
            schedule_end_of_wrapup(desk.job_redis, advisor_id, call_sid, until)
            return
    # Not reached, or no wrap-up at the desk. (An advisor no longer on the call,
    # "stale" above, is refused here too: the release names the call.)
    free_advisor(desk, advisor_id, now_ms, expected_call=call_sid, skip_call=call_sid)


def fallback_given(desk: Desk, call_sid: str, how: str, given_ms: int) -> None:
    """The caller's own call was given the fallback reply at `given_ms` (ms since the
    epoch; `how`: "number" or "apology", as `call_state.note_fallback`): marked, and out
    of their queue in the same step, so no advisor freed later redirects the call away
    from the fallback number; then the advisor claimed for them and still ringing for
    them (a claim whose `/voice/connect` failed) is released at once, handed the next
    waiting caller, rather than held until their ring's lease runs out. Idempotent (the
    release names the call: a repeat, or one after the reconciler's, is stale)."""
    held = note_fallback(desk, call_sid, how, given_ms)
    if held:
        free_advisor(desk, held, given_ms, expected_call=call_sid, skip_call=call_sid)


def free_advisor(
    desk: Desk,
    advisor_id: str,
    now_ms: int,
    *,
    expected_call: str = "",
    skip_call: str = "",
    explicit: bool = False,
    ending_wrapup: bool = False,
    expired_by_ms: int | None = None,
    settle_held_call: bool = False,
    ring_ended_leg: str | None = None,
    offer_idle: bool = False,
    not_rung_within_ms: int | None = None,
    missed_ring: bool = False,
) -> presence.Release:
    """Make an advisor available, handing them the best waiting caller first.

    A claimed waiting caller is redirected through Twilio's REST API to TwiML
    that dials the advisor; if the redirect fails (the caller hung up), the
    advisor is released again for the next caller. The keywords are
    `presence.make_available`'s (a refused release is outcome "stale").
    """
    overflow_ms = desk.settings.overflow_seconds * 1000
    release = presence.make_available(
        desk.r, advisor_id, now_ms=now_ms, lease_ms=desk.lease_ms,
        expected_call=expected_call, skip_call=skip_call, explicit=explicit,
        ending_wrapup=ending_wrapup,
        overflow_ms=overflow_ms, expired_by_ms=expired_by_ms,
        settle_held_call=settle_held_call, ring_ended_leg=ring_ended_leg,
        offer_idle=offer_idle, not_rung_within_ms=not_rung_within_ms,
        missed_ring=missed_ring,
    )
    return _serve(desk, advisor_id, release, now_ms)


def offer_waiting_callers(desk: Desk, now_ms: int, budget_s: float | None = None,
                          clock: Callable[[], float] = time.monotonic) -> int:
    """Every idle available advisor of a team someone waits for (and of the general
    team, which serves the others' overflow), longest idle first, offered the waiting
    callers as if they had just become available (`free_advisor` with `offer_idle`), as
    long as anyone waits; how many were claimed for a caller. A caller an advisor was
    rung for in the last `REOFFER_AFTER_MS` is not offered to them (the next in line
    is). `now_ms`: ms since the epoch.

    A callback, whose contact hung up, has no hold cycle of its own to claim an advisor:
    one put back in its place (Twilio would not place it, or its advisor missed the
    ring) beside idle advisors, or waiting in a Redis that came back from a snapshot,
    is served here. Run by the reconciler's every pass, after a missed callback ring,
    and on Redis's recovery; never on a caller's path. Nobody waiting costs one round
    trip (`_teams_waited_for`); then one script per idle advisor. With `budget_s`
    (seconds of `clock`), no advisor is offered once it is spent: in the worker a
    claimed caller's redirect, failing while Twilio fails, takes seconds, and the next
    pass goes on."""
    started = clock()
    teams = _teams_waited_for(desk)
    if not teams:
        return 0
    idle: dict[str, float] = {}
    for team in {*teams, GENERAL}:
        for advisor_id, since in desk.r.zrange(keys.team_available(team), 0, -1,
                                               withscores=True):
            idle[advisor_id] = min(since, idle.get(advisor_id, since))
    claimed = 0
    for advisor_id in sorted(idle, key=lambda advisor: (idle[advisor], advisor)):
        if budget_s is not None and clock() - started >= budget_s:
            break
        release = free_advisor(desk, advisor_id, now_ms, offer_idle=True,
                               not_rung_within_ms=REOFFER_AFTER_MS)
        if release.outcome == "claimed":
            claimed += 1
        if not any(desk.r.zcard(keys.team_waiting(team)) for team in teams):
            break
    return claimed


# The teams with callers waiting, in one step: the set of teams (KEYS[1]) whose
# waiting set (ARGV[1], with {}) is not empty.
_TEAMS_WAITED_FOR = """
local out = {}
for _, team in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('ZCARD', (string.gsub(ARGV[1], '{}', function() return team end, 1))) > 0 then
    out[#out + 1] = team
  end
end
return out
"""


def _teams_waited_for(desk: Desk) -> list[str]:
    """The teams someone waits for (`_TEAMS_WAITED_FOR`: one round trip, a dozen teams)."""
    return list(script(desk.r, _TEAMS_WAITED_FOR)(
        keys=[keys.teams()], args=[keys.team_waiting("{}")], client=desk.r))


def _serve(
    desk: Desk, advisor_id: str, release: presence.Release, now_ms: int,
    attempts: int = _MAX_REDIRECT_ATTEMPTS,
) -> presence.Release:
    """Bring the waiting caller the advisor was just claimed for to them (if any),
    trying at most `attempts` callers in turn (those gone, or a callback Twilio would
    not place)."""
    for attempt in range(attempts):
        if release.outcome != "claimed" or not release.call_sid:
            return release
        caller = release.call_sid
        call, ended = call_and_end(desk.r, caller)
        base = call.get("base", "").rstrip("/")
        if not ended and base and call.get("callback") != "1":
            note_dequeued(desk, caller, call, now_ms)
            desk.telephony.later(functools.partial(
                _redirect_or_move_on, desk, caller, advisor_id, webhook_url(base, CONNECT), now_ms))
            return release
        # A callback caller hung up long ago, on purpose: ring the advisor first. On
        # the background pool, as a redirect: placing the call may take Twilio's API
        # seconds to refuse (connect timeouts retried), and the webhook that freed the
        # advisor (a caller's own `<Dial>` action) must answer Twilio within its 15 s.
        if call.get("callback") == "1" and base:
            desk.telephony.later(functools.partial(
                _place_or_move_on, desk, caller, advisor_id, call, base, now_ms,
                attempts - attempt - 1))
            return release
        release = _caller_gone(desk, caller, advisor_id, now_ms)
    return release


def _place_or_move_on(desk: Desk, caller: str, advisor_id: str, call: dict[str, str],
                      base: str, now_ms: int, attempts_left: int) -> None:
    """Ring the advisor claimed for a callback (`_place_callback`); Twilio placing no
    leg (it kept failing, or refused), the contact keeps their place and the advisor
    takes the next caller (`_caller_kept`), as after a redirect that failed, within
    the `attempts_left` callers `_serve` had left to try (a refusal is instant: two
    callbacks Twilio refuses must not be tried in turn for ever)."""
    if _place_callback(desk, caller, advisor_id, call, base, now_ms):
        note_dequeued(desk, caller, call, now_ms)
        return
    release = _caller_kept(desk, caller, advisor_id, now_ms)
    if attempts_left > 0:
        _serve(desk, advisor_id, release, now_ms, attempts_left)


def _caller_gone(desk: Desk, caller: str, advisor_id: str, now_ms: int) -> presence.Release:
    """The claimed waiting caller could not be reached: the advisor takes the next one."""
    log.info("waiting caller %s is gone; advisor %s goes on", caller, advisor_id)
    update_call(desk.r, caller, advisor="")
    return presence.make_available(
        desk.r, advisor_id, now_ms=now_ms, lease_ms=desk.lease_ms, expected_call=caller,
        skip_call=caller, overflow_ms=desk.settings.overflow_seconds * 1000,
    )


def _caller_kept(desk: Desk, caller: str, advisor_id: str, now_ms: int) -> presence.Release:
    """Twilio could not be asked to bring the caller over (it kept failing): the caller
    goes back to their place in the queue and the advisor takes the next one.

    The caller's own hold cycle (`hold_cycle`) then claims a free advisor and
    leaves the queue without any REST request. A callback has none: the reconciler's
    next pass (`offer_waiting_callers`, every 10 s) places it again, with the longest
    idle advisor of its team then.
    """
    kept = presence.return_to_queue(desk.r, caller, advisor_id)
    log.warning("could not bring waiting caller %s to advisor %s; caller %s their place",
                caller, advisor_id, "keeps" if kept else "had no")
    return presence.make_available(
        desk.r, advisor_id, now_ms=now_ms, lease_ms=desk.lease_ms, expected_call=caller,
        skip_call=caller, overflow_ms=desk.settings.overflow_seconds * 1000,
    )


def _redirect_or_move_on(
    desk: Desk, caller: str, advisor_id: str, url: str, now_ms: int
) -> None:
    """Redirect a claimed waiting caller to their advisor.

    Only Twilio saying the call is over (404, "not in-progress") means the
    caller hung up: the advisor takes the next caller. Any other failure, once
    retries are spent, says nothing about the caller: they keep their place.
    A failure that may have come after Twilio moved the call (a 5xx, a cut
    connection) is sent again only if Twilio has not fetched `/voice/connect`
    meanwhile (`_brought_over`): a second redirect would cut the advisor's ring
    that the first one started.
    """
    outcome = desk.telephony.redirect_call(
        caller, url, carried_out=functools.partial(_brought_over, desk, caller),
        look_seconds=_BROUGHT_OVER_LOOK_SECONDS)
    if outcome is Outcome.DONE:
        return
    if outcome is Outcome.GONE:
        release = _caller_gone(desk, caller, advisor_id, now_ms)
    else:
        release = _caller_kept(desk, caller, advisor_id, now_ms)
    _serve(desk, advisor_id, release, now_ms)


def _brought_over(desk: Desk, caller: str) -> bool | None:
    """Whether Twilio has followed the redirect of a claimed waiting caller: it fetched
    `/voice/connect`, whose answer (`acd.connect_claimed`: ringing the advisor, or
    routing afresh) moves the call's state on from `connecting`, which `note_dequeued`
    wrote before the redirect was asked for. Nothing else moves it on in the seconds
    the redirect is tried: the caller's end keeps it, a key on hold or a hold cycle
    finds them out of the queue and changes nothing, and the `<Enqueue>` action
    Twilio posts as the redirect takes the call out of the queue
    (`QueueResult=redirected`) writes nothing. But for one narrow race: a hold cycle
    that read the caller at the head of the queue just before the claim is handed
    the advisor claimed for them (`presence.claim_for_caller`) and answers `<Leave>`;
    the `<Enqueue>` action then (`QueueResult=leave`) rings that advisor, which
    moves the state on too. The sign is right then as well: the caller is being
    brought over, and a redirect sent now would cut that ring. None when Redis
    cannot tell: the look ends, and the redirect is tried again, as before."""
    try:
        state = desk.r.hget(keys.call(caller), "state")
    except redis.RedisError:
        return None
    return state is not None and state != "connecting"


def _place_callback(
    desk: Desk, caller: str, advisor_id: str, call: dict[str, str], base: str, now_ms: int
) -> bool:
    """Ring the advisor for a callback (at `now_ms`, ms since the epoch); the advisor's
    leg then dials the contact. False when Twilio placed no leg, as far as it said."""
    phone = presence.advisor_state(desk.r, advisor_id).get("phone", "")
    leg = desk.telephony.place_call(
        to=phone,
        from_=call.get("to") or call.get("caller", ""),
        url=webhook_url(base, CALLBACK_ADVISOR, call=caller, advisor=advisor_id),
        status_callback=webhook_url(base, CALLBACK_STATUS, call=caller, advisor=advisor_id),
    )
    if leg is None:
        return False
    record_try(desk.r, caller, advisor_id, now_ms)
    update_call(desk.r, caller, callback_state="ringing-advisor", callback_leg=leg,
                   ringing=advisor_id)
    return True


def note_dequeued(desk: Desk, call_sid: str, call: dict[str, str], now_ms: int,
                  state: str = "connecting", on_hold_cycle: bool = False) -> None:
    """Record how long the caller waited in the queue; the call's `state` from now; a
    caller on hold's wait (not a callback's) among the team's recent waits.
    `on_hold_cycle`: their own hold cycle claimed the advisor at `now_ms` (they leave
    Twilio's queue by its `<Leave/>`; `left_on_hold_cycle` tells a repeat of it)."""
    enqueued = int(call.get("enqueued_at") or now_ms)
    waited = float(call.get("queue_wait_ms") or 0) + max(0, now_ms - enqueued)
    team = call.get("waiting_team") or call.get("team") or GENERAL
    noted: dict[str, str | int] = {"queue_wait_ms": int(waited), "state": state}
    if on_hold_cycle:
        noted["left_on_hold_at"] = now_ms
    pipe = desk.r.pipeline(transaction=False)
    pipe.hset(keys.call(call_sid), mapping=noted)
    if call.get("callback") != "1":
        # The recent waits estimate a caller's wait on hold; a callback's hours until
        # the call back (overnight, say) would promise the next callers hours.
        pipe.lpush(keys.team_waits(team), round(waited / 1000, 3))
        pipe.ltrim(keys.team_waits(team), 0, 49)
    pipe.execute()


def left_on_hold_cycle(desk: Desk, call_sid: str, call: dict[str, str]) -> bool:
    """Whether this caller's own hold cycle took them out of the queue for the advisor
    still ringing for them (`note_dequeued(on_hold_cycle=True)`, the same claim: a claim
    handed over by a freed advisor, whose redirect brings the caller, is not it): a
    repeat of that hold cycle (Twilio's retry without its token, whose reply Twilio
    acts on) must tell them to leave again, or they stay in Twilio's queue out of the
    desk's while the advisor is held for them."""
    advisor = call.get("advisor") or ""
    left_at, claimed_at = call.get("left_on_hold_at") or "", call.get("claimed_at") or ""
    try:
        same_claim = bool(left_at) and float(left_at) == float(claimed_at)
    except ValueError:
        return False
    return (same_claim and call.get("state") == "connecting" and bool(advisor)
            and presence.on_call(desk.r, advisor, call_sid))


def end_wrapup(desk: Desk, advisor_id: str, call_sid: str, now_ms: int) -> presence.Release:
    """Wrap-up time is over: the advisor is available (or takes the next caller)."""
    return free_advisor(desk, advisor_id, now_ms, expected_call=call_sid, ending_wrapup=True)
