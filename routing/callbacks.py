"""Who may be called back, and at which number (the desk's callback policy).

A callback makes the vendor's account place a call, so it is offered only to
a verified authorized contact, dials only that contact's directory phone (never
the caller ID, which anyone can set), only to a US or Canadian fixed or mobile
number (no premium-rate, toll-free or international numbers: toll fraud), and
at most a few times per contact per day (Central dates).

The directory is read again when the advisor takes the callback: the contact is
dialled at their directory phone as it is then (an operator may have changed it
since the contact asked). A contact removed or deactivated meanwhile, or whose
phone may no longer be dialled, is not called back: the advisor hears so, and the
call's log says why (`callback_not_dialled`).

Then the callback itself: the advisor's leg rings first (`routing.availability`
places it when the advisor frees up), the advisor accepts, the contact is
dialed; an advisor who never took it is released and the caller keeps their
place.

Its end comes as two of Twilio's requests, in either order, either maybe repeated
or late: the `<Dial>`'s action (`contact_dial_ended`: did the contact answer?) and
the leg's status callback (`end_callback`). An advisor who talked with the contact
gets the desk's wrap-up whichever comes first; one whose contact never answered is
free at once. The leg's end holds the advisor in wrap-up while the answer is not
known; an action that says nobody answered ends that wrap-up (only that one: the
release names the call and the hold). See `contact_unreached`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import phonenumbers
from phonenumbers import PhoneNumberType

import directory
from config.hours import central_date
from directory import keys
from directory.scripts import script
from routing import presence
from routing.acd import ANSWERED_DIAL_STATUSES, MISSED_RING_STATUSES, Nothing, is_final
from routing.auth import is_authorized
from routing.availability import (
    end_wrapup,
    finish_taken_callback,
    free_advisor,
    offer_waiting_callers,
)
from routing.call_state import (
    end_taken_callback,
    get_call,
    update_call,
    update_call_while,
    update_logged_call,
)
from routing.desk import Desk

log = logging.getLogger(__name__)

CALLBACK_REGIONS = frozenset({"US", "CA"})
CALLBACK_NUMBER_TYPES = frozenset({
    PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE,
})
# Callbacks one contact may ask for in a day (Central).
MAX_CALLBACKS_PER_DAY = 3
# How many times a callback rings a contact who does not answer.
CALLBACK_ATTEMPTS = 3


# The try of a callback's contact that follows the try ARGV[1] (1-based), decided and
# counted in the call's `contact_attempt` (the try dialed last; 1 when unset) in one
# step: "late" when a later try was dialed already (a late repeat of an earlier try's
# action), "over" when the advisor's leg dials the contact no more (its end was
# handled), both with nothing written; else "next", the count raised to ARGV[2].
_NEXT_TRY = """
local dialed = tonumber(redis.call('HGET', KEYS[1], 'contact_attempt') or '') or 1
if dialed > tonumber(ARGV[1]) then return 'late' end
if redis.call('HGET', KEYS[1], 'callback_state') ~= 'dialing-contact' then
  return 'over'
end
redis.call('HSET', KEYS[1], 'contact_attempt', ARGV[2])
return 'next'
"""


@dataclass(frozen=True)
class DialContact:
    """The advisor's callback leg dials the contact (`retry`: after no answer)."""

    number: str
    attempt: int = 1
    retry: bool = False


@dataclass(frozen=True)
class CallbackNotDialled:
    """The advisor took a callback the directory no longer allows (`reason`, as the
    call's log gives it): they hear so, and nobody is dialled."""

    reason: str


@dataclass(frozen=True)
class ContactUnreached:
    """The contact did not answer the callback, however often rung: goodbye."""


# How long (s) the end of a callback's unanswered leg, a status webhook, goes on offering
# idle advisors the callers waiting (each offer may place a callback through Twilio's
# REST API): Twilio waits 15 s for a webhook; the reconciler's pass offers the rest.
OFFER_IN_WEBHOOK_SECONDS = 2.0


def dialable_for_callback(phone_e164: str) -> bool:
    """Whether a number may be dialed for a callback: a valid US or Canadian fixed
    or mobile number (phonenumbers' region and number type)."""
    try:
        number = phonenumbers.parse(phone_e164, None)
    except phonenumbers.NumberParseException:
        return False
    return (phonenumbers.is_valid_number(number)
            and phonenumbers.region_code_for_number(number) in CALLBACK_REGIONS
            and phonenumbers.number_type(number) in CALLBACK_NUMBER_TYPES)


def callback_number(desk: Desk, call: dict[str, str], now: datetime | None = None) -> str | None:
    """The number a callback for this call would dial now: the verified contact's
    directory phone when it may be dialed, else None (no callback offered)."""
    return callback_target(desk, call, now or datetime.now(UTC))[0]


def callback_target(
    desk: Desk, call: dict[str, str], now: datetime
) -> tuple[str | None, str]:
    """The verified contact's directory phone as the directory has it at `now`, when a
    callback may dial it: (number, ""), else (None, why not): "not-verified",
    "contact-gone" (no longer in the directory), "contact-inactive" (deactivated, or
    idle 180 days) or "phone-not-dialable" (`dialable_for_callback`)."""
    if not is_authorized(call) or not call.get("contact"):
        return None, "not-verified"
    contact = directory.find_contact(desk.r, desk.session_factory, call["contact"])
    if contact is None:
        return None, "contact-gone"
    if not directory.contact_is_active(contact, now):
        return None, "contact-inactive"
    phone = contact.get("phone", "")
    if not phone or not dialable_for_callback(phone):
        return None, "phone-not-dialable"
    return phone, ""


def callbacks_left(desk: Desk, contact_id: str, now: datetime) -> int:
    """How many more callbacks the contact may ask for today (Central)."""
    used = desk.r.get(keys.callbacks_on(contact_id, central_date(now).isoformat()))
    return max(0, MAX_CALLBACKS_PER_DAY - int(used or 0))


def take_callback(desk: Desk, contact_id: str, now: datetime) -> bool:
    """Count one callback for the contact today; False when the day's are used up."""
    key = keys.callbacks_on(contact_id, central_date(now).isoformat())
    pipe = desk.r.pipeline()
    pipe.incr(key)
    pipe.expire(key, 2 * 24 * 3600)
    used, _ = pipe.execute()
    return int(used) <= MAX_CALLBACKS_PER_DAY


def give_back_callback(desk: Desk, contact_id: str, now: datetime) -> None:
    """Give back a callback counted today (`take_callback`) that was not kept after
    all (the call ended, or was connected, as it was asked)."""
    desk.r.decr(keys.callbacks_on(contact_id, central_date(now).isoformat()))


def is_placed_leg(call: dict[str, str], leg: str) -> bool:
    """Whether `leg` (an advisor's leg's CallSid, '' when not known) may be the
    callback's: the one the desk placed. Twilio may place a call and answer an error
    (`telephony.client.never_acted`): the desk then knows no leg, and that call
    rings the advisor all the same, for the call and advisor in its URL; should the
    desk offer the same callback to the same advisor again, two legs ring for it."""
    return not leg or call.get("callback_leg") == leg


def accept_callback(
    desk: Desk, call_sid: str, advisor_id: str, now_ms: int, leg: str = ""
) -> DialContact | CallbackNotDialled | None:
    """The advisor took the callback: dial the contact at their directory phone as it
    is now (None when it is stale, or `leg` is not the leg the desk placed and rings
    them). A contact the directory no longer lets the desk call back is not dialled:
    marked unreached, so the advisor's leg's end frees them without a wrap-up
    (`presence.wrap_up_taken_callback`), and the log says why."""
    if not presence.take_callback_ring(
            desk.r, advisor_id, call_sid, leg,
            now_ms + desk.settings.talk_lease_seconds * 1000):
        return None
    call = get_call(desk.r, call_sid)
    number, why_not = callback_target(desk, call, datetime.fromtimestamp(now_ms / 1000, UTC))
    if number is None:
        log.warning("callback %s not dialled (%s): the directory no longer allows it; "
                    "advisor %s is told", call_sid, why_not, advisor_id)
        update_call(desk.r, call_sid, contact_unreached=1, callback_not_dialled=why_not)
        return CallbackNotDialled(why_not)
    if number != call.get("callback_number"):
        update_call(desk.r, call_sid, callback_number=number)  # its next tries dial it too
    return DialContact(number)


def contact_dial_ended(
    desk: Desk, call_sid: str, advisor_id: str, dial_status: str, talk_seconds: int,
    attempt: int, now_ms: int, leg_status: str = "in-progress",
) -> Nothing | DialContact | ContactUnreached:
    """The contact's phone: answered, or ring again a bounded number of times.

    `attempt` is the try that ended (1-based, from the action's URL); `leg_status` the
    advisor's leg's own `CallStatus` as posted with the action: a final one (the
    advisor hung up while the contact's phone rang) means no try follows, as does
    the leg's end handled already, even while this action is (`next_try` "over"):
    the contact is then unreached (`contact_unreached`), as after the last try.
    `talk_seconds`: Twilio's DialCallDuration; `now_ms`: ms since the epoch."""
    if dial_status in ANSWERED_DIAL_STATUSES:
        callback_answered(desk, call_sid, advisor_id, talk_seconds)
        return Nothing()
    call = get_call(desk.r, call_sid)
    number = call.get("callback_number", "")
    if attempt < CALLBACK_ATTEMPTS and number and not is_final(leg_status):
        # The try about to ring, counted: a late repeat of an earlier try's action must
        # never pass for the end of this one, nor count the tries back ("late": the
        # same answer as the first time, nothing written).
        if next_try(desk, call_sid, attempt) != "over":
            return DialContact(number, attempt + 1, retry=True)
        # The leg's end came first, maybe since the read above: no try will ring on
        # it, and no other action will come. As it is now:
        call = get_call(desk.r, call_sid)
    contact_unreached(desk, call, call_sid, advisor_id, attempt, now_ms)
    return ContactUnreached()


def next_try(desk: Desk, call_sid: str, attempt: int) -> str:
    """Decide and count the try that follows try `attempt` (1-based) of the callback
    `call_sid`, in one step (`contact_attempt`, only ever raised): "next", or, with
    nothing written, "late" when a later try was dialed already and "over" when the
    advisor's leg dials the contact no more (its end was handled) or never did (a
    stray action: no try is dialed for it)."""
    return str(script(desk.r, _NEXT_TRY)(keys=[keys.call(call_sid)],
                                         args=[attempt, attempt + 1], client=desk.r))


def contact_unreached(
    desk: Desk, call: dict[str, str], call_sid: str, advisor_id: str, attempt: int,
    now_ms: int,
) -> None:
    """The contact never answered the callback `advisor_id` took (`call`: its hash as
    just read; `attempt`: the try that ended, 1-based), and no try follows: the call
    says so (`contact_unreached`), then the advisor's wrap-up after it, if any, ends
    (at `now_ms`, ms since the epoch).

    Mark first, release second: the leg's end reads the mark in the very step that
    would start the wrap-up (`presence.wrap_up_taken_callback`), so a mark written
    before that step frees the advisor there, and a wrap-up started before the mark
    is ended here. Either way the advisor is free. The release ends the wrap-up after
    this call only (`end_wrapup`): an advisor who rings, talks or wraps up on another
    call by then (a very late action) is left alone. Nothing at all for a callback
    not taken by this advisor, one answered, or an earlier try's late repeat (a
    later try was dialed: `contact_attempt`)."""
    if (call.get("callback") != "1" or call.get("advisor") != advisor_id
            or call.get("callback_state") not in ("dialing-contact", "done")
            or call.get("answered_by")
            or attempt < int(call.get("contact_attempt") or 1)):
        return
    update_call(desk.r, call_sid, contact_unreached=1)
    end_wrapup(desk, advisor_id, call_sid, now_ms)


def callback_answered(desk: Desk, call_sid: str, advisor_id: str, talk_seconds: int) -> None:
    """The contact picked up the callback and talked with the advisor. Twilio may post
    the advisor's leg's end before this `<Dial>` action: the callback is then over
    already, and stays so (a repeated end must not end it twice); the talk is still
    recorded, and its log, written at the leg's end, brought up to date
    (`update_logged_call`); the advisor's wrap-up, started at the leg's end while
    the answer was not known, runs on (none starts here: a repeat starts no second)."""
    update_logged_call(desk, call_sid, answered_by=advisor_id, talk_seconds=talk_seconds,
                       state="answered")
    # Checked in the write: a leg's end handled meanwhile made it "done", for good.
    update_call_while(desk.r, call_sid, "callback_state", "dialing-contact",
                      callback_state="answered")


def end_callback(
    desk: Desk, call_sid: str, advisor_id: str, leg_status: str, now_ms: int, leg: str = "",
    *, read_again: bool = True,
) -> bool:
    """The advisor's callback leg is over; True when the call's log should be written now.

    An advisor who never took the callback is released and the caller keeps
    their place, offered at once to the idle advisors who did not miss it
    (`availability.offer_waiting_callers`); otherwise the callback is done, answered
    or not, and the advisor who took it wraps up unless the contact is known not to have answered
    (`availability.finish_taken_callback`: whichever of this end and the `<Dial>`'s
    action comes first). The end of a leg the desk did not place (`is_placed_leg`)
    changes nothing; nor does a repeat (the callback is done); nor does a status that
    is not the leg's end (`queued`, `ringing`, `in-progress`...: only a final one,
    `acd.is_final`, ends it, as on the call's own status callback).
    """
    if not is_final(leg_status):
        return False
    call = get_call(desk.r, call_sid)
    if call.get("callback") != "1" or call.get("callback_state") == "done":
        return False
    if not is_placed_leg(call, leg):
        return False
    holds = presence.on_call(desk.r, advisor_id, call_sid)
    accepted = call.get("callback_state") in ("dialing-contact", "answered")
    if not holds and call.get("ringing") != advisor_id:
        return False  # a late or repeated end of an earlier leg: nothing of it is left
    if not accepted:
        # Not taken: the contact's place (or, after the third offer, the callback's
        # end), with the advisor's release when they hold the call, in one step that
        # checks the leg still rings them: an accept, the reconciler's release or the
        # next leg that came since this end's read wins, and it is read again.
        if holds:
            # A ring of theirs let go by, as a caller's (`acd.MISSED_RING_STATUSES`).
            release = free_advisor(desk, advisor_id, now_ms, expected_call=call_sid,
                                   skip_call=call_sid, settle_held_call=True,
                                   ring_ended_leg=leg,
                                   missed_ring=leg_status in MISSED_RING_STATUSES)
            ended = release.outcome not in ("stale", "unknown")
        else:
            ended = presence.end_unheld_callback_ring(desk.r, call_sid, advisor_id, leg,
                                                      now_ms)
        if not ended:
            # Read again (once: what refused is settled by then). Only for a known leg:
            # without its CallSid, an end cannot tell this leg from a later one.
            return read_again and bool(leg) and end_callback(
                desk, call_sid, advisor_id, leg_status, now_ms, leg, read_again=False)
        after = get_call(desk.r, call_sid)
        if after.get("callback_state") == "waiting":
            # Back in their place, with no hold cycle of their own: offered at once to
            # the team's other idle advisors, longest idle first (the one who missed
            # it only after `REOFFER_AFTER_MS`). Within a status webhook: the next
            # advisor after `OFFER_IN_WEBHOOK_SECONDS` is left to the reconciler's pass.
            offer_waiting_callers(desk, now_ms, budget_s=OFFER_IN_WEBHOOK_SECONDS)
        return after.get("callback_state") == "done" and after.get("ended_at") == str(now_ms)
    if holds:
        finish_taken_callback(desk, call_sid, advisor_id, now_ms)
    # Done and among the calls to log in one write: a process that dies before the
    # caller queues the log's job leaves it for the reconciler, never unlogged.
    end_taken_callback(desk.r, call_sid, now_ms)
    return True
