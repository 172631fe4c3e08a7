"""A colleague on the call: the contact's other staff member, brought in by the advisor.

The desk's policy: "If an Authorized Contact needs to involve another staff
member who is not an authorized contact in a support call, they must
coordinate the meeting and be present throughout the discussion." So the
advisor adds the colleague from the console while connected (a US or Canada
number only: the line pays for the leg, and a premium-rate number is toll
fraud), the call moves into a Twilio `<Conference>`, and the contact's leg
ends the conference when it leaves (`endConferenceOnExit`): the colleague is
never left alone with the advisor. The advisor's leg ends it too (the contact
and colleague stay on no line of ours without the desk), and the advisor can
remove the colleague. Who added whom, when the colleague joined and left is
kept on the call and goes on its log (`details.colleagues`).

How the call moves (Twilio's documented behaviour): redirecting the advisor's
leg (the `<Dial>`'s child) out of the bridge ends the caller's `<Dial>`, whose
action is then requested; redirecting the caller's leg (the parent) first
would hang up the advisor's. So the advisor's leg is redirected first, then
the contact's; the contact's `<Dial>` action holds them a moment with a
redirect to the same place, in case the second REST request never lands.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import phonenumbers
import redis
from phonenumbers import PhoneNumberType

from config.webhooks import CONFERENCE_COLLEAGUE, CONFERENCE_JOIN, webhook_url
from directory import keys
from directory.phones import normalize_phone
from routing import presence
from routing.acd import CallFinished, Decision, after_dial, is_final
from routing.availability import finish_with_advisor
from routing.call_state import call_and_end, get_call, is_ended, update_call
from routing.callbacks import CALLBACK_REGIONS
from routing.changes import announce_change
from routing.desk import Desk
from telephony import Outcome

# Numbers that bill the line by the minute to someone else: never dialed.
_PREMIUM = frozenset({PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST})
# How long one add may hold the call's "adding" lock (its REST steps take seconds at most).
_ADDING_MS = 30_000
# How long (seconds) the move of the advisor's leg, failed in a way that may have come
# after Twilio moved it (a 5xx, a cut connection), looks for the sign that it did
# (`_advisor_joined`) before it is sent again: one webhook, the leg fetching its join.
# No longer than the backoff's first wait (0.25 s), so the look costs the move no time:
# a move that fails twice and then hears the advisor hung up still waits 0.25 + 0.5 s
# between three requests to Twilio's API, 100-300 ms each: 1.05-1.65 s in all. The
# contact's `<Dial>` action, posted once the advisor hangs up, waits 1.5 s for the move
# to settle (`moved_out_of_dial`): enough while Twilio answers within 250 ms. When it is
# not, the contact hears that the colleague is being brought in, is held 2 s, and then
# hears the call's end as they would have (`join`). A leg slower than this to fetch its
# join still gets the move twice.
_MOVE_LOOK_SECONDS = 0.25
# Colleague fields on the call's hash: "colleague:<leg CallSid>:<field>".
_FIELDS = ("phone", "added_by", "added_at", "joined_at", "left_at", "removed_by", "outcome")


@dataclass(frozen=True)
class Refused:
    """The colleague was not added (or removed): `reason` says why, for the advisor.

    reason: "invalid-number", "outside-us-canada", "premium-rate", "line-number" (the
    line's own number, or the contact's), "advisor-number" (an advisor's phone: a
    colleague is the contact's, and an advisor is rung only by the ACD), "not-on-a-call",
    "callback" (a callback's legs cannot be moved yet), "colleague-on-call",
    "no-colleague", "call-over" or "twilio-unavailable".
    """

    reason: str

    @property
    def bad_request(self) -> bool:
        """Whether the number itself was refused (else the call's state was)."""
        return self.reason in ("invalid-number", "outside-us-canada", "premium-rate",
                               "line-number", "advisor-number")


@dataclass(frozen=True)
class ColleagueAdded:
    """The colleague's phone is ringing into the call's conference."""

    call_sid: str
    phone: str
    leg: str


@dataclass(frozen=True)
class ColleagueRemoved:
    """The colleague's leg was hung up."""

    call_sid: str
    leg: str


@dataclass(frozen=True)
class JoinConference:
    """This leg joins the call's conference; leaving it ends the conference when
    `ends_it` (the contact's and the advisor's legs)."""

    name: str
    role: str
    call_sid: str
    ends_it: bool = True


@dataclass(frozen=True)
class HoldForConference:
    """The contact's `<Dial>` ended because the advisor's leg moved: a moment, then join."""

    call_sid: str


@dataclass(frozen=True)
class LeaveConference:
    """Nothing to join (the call is over or never moved): this leg hangs up."""


def conference_name(call_sid: str) -> str:
    """The conference a call moves into (Twilio's friendly name: one per call)."""
    return f"caseline-{call_sid}"


def colleague_number(text: str) -> str | Refused:
    """The E.164 form of a colleague's number, or why it is refused: a valid number
    (as the directory's, US the default region) in the regions the line calls back
    (`routing.callbacks.CALLBACK_REGIONS`: US and Canada), never premium-rate or
    shared-cost."""
    number = normalize_phone((text or "")[:40])
    if number is None:
        return Refused("invalid-number")
    parsed = phonenumbers.parse(number, None)
    if phonenumbers.region_code_for_number(parsed) not in CALLBACK_REGIONS:
        return Refused("outside-us-canada")
    if phonenumbers.number_type(parsed) in _PREMIUM:
        return Refused("premium-rate")
    return number


def _talking_call(desk: Desk, advisor_id: str) -> tuple[str, dict[str, str]] | Refused:
    """The live inbound call the advisor is talking on, or why there is none."""
    state = presence.advisor_state(desk.r, advisor_id)
    call_sid = state.get("call") or ""
    if not call_sid or state.get("hold") != "talking":
        return Refused("not-on-a-call")
    call, ended = call_and_end(desk.r, call_sid)
    if ended or not call or call.get("answered_by") != advisor_id:
        return Refused("not-on-a-call")
    if call.get("callback") == "1":
        return Refused("callback")
    if not call.get("advisor_leg"):
        return Refused("not-on-a-call")
    return call_sid, call


def add_colleague(desk: Desk, advisor_id: str, phone_text: str, base: str,
                  now_ms: int) -> ColleagueAdded | Refused:
    """Bring a colleague into the call `advisor_id` is talking on.

    Twilio is sent to the base URL the call itself reached the service at (its
    `base`, as the queue's redirects are); `base`, the service's public base URL as
    the advisor's request found it, only for a call that kept none. The first
    colleague moves the call into its conference (both legs redirected through
    the REST API, the advisor's first); the colleague is then dialed in as a
    participant. One colleague at a time, one add at a time (a second click
    while the first is under way is refused). Refused (nothing changed) for a
    number outside the US and Canada, an advisor's phone, when the advisor is not
    on a call, or when Twilio's API does not answer.
    """
    number = colleague_number(phone_text)
    if isinstance(number, Refused):
        return number
    found = _talking_call(desk, advisor_id)
    if isinstance(found, Refused):
        return found
    call_sid, call = found
    if number in (call.get("to"), call.get("caller")):
        # The line itself (its IVR, billed both ways) or the contact already on the call.
        return Refused("line-number")
    if _an_advisors_phone(desk, number):
        # Presence would still offer them callers while they sit in the conference: an
        # advisor's phone is rung only by the ACD, which holds them for the call.
        return Refused("advisor-number")
    lock = keys.colleague_adding(call_sid)
    if call.get("colleague_leg") or not desk.r.set(lock, advisor_id, nx=True,
                                                    px=_ADDING_MS):
        return Refused("colleague-on-call")
    try:
        return _add(desk, advisor_id, number, base, call_sid, now_ms)
    finally:
        desk.r.delete(lock)


def _an_advisors_phone(desk: Desk, number: str) -> bool:
    """Whether `number` (E.164) is the phone of an advisor in the directory cache."""
    advisor_ids = sorted(desk.r.smembers(keys.advisors()))  # type: ignore[arg-type]
    if not advisor_ids:
        return False
    pipe = desk.r.pipeline(transaction=False)
    for advisor_id in advisor_ids:
        pipe.hget(keys.advisor(advisor_id), "phone")
    return number in pipe.execute()


def _add(desk: Desk, advisor_id: str, number: str, base: str, call_sid: str,
         now_ms: int) -> ColleagueAdded | Refused:
    """`add_colleague` once the call is known and the add is ours alone."""
    call = get_call(desk.r, call_sid)
    if call.get("colleague_leg"):
        return Refused("colleague-on-call")
    # Without PUBLIC_BASE_URL, the advisor's request names the address it came in on
    # (a console on the LAN), which Twilio may not reach: the call's own base it did.
    base = call.get("base") or base
    name = conference_name(call_sid)
    if call.get("conference") != name:
        update_call(desk.r, call_sid, conference=name, state="conference", advisor_joined_at="")
        # A move sent again after Twilio carried it out (a 5xx, a cut connection) would
        # take the advisor's leg out of the conference it just joined, ending it.
        moved = desk.telephony.redirect_call(
            call["advisor_leg"], webhook_url(base, CONFERENCE_JOIN, call=call_sid, role="advisor"),
            carried_out=functools.partial(_advisor_joined, desk, call_sid),
            look_seconds=_MOVE_LOOK_SECONDS)
        if moved is not Outcome.DONE:
            # Still bridged as before (or over): nothing moved, nothing to undo on Twilio.
            update_call(desk.r, call_sid, conference="", state="bridged")
            return Refused("call-over" if moved is Outcome.GONE else "twilio-unavailable")
        update_call(desk.r, call_sid, conference_moved=1)
        if not get_call(desk.r, call_sid).get("contact_joined_at"):
            # One try: a redirect retried late would pull a contact the hold already
            # brought in back out of the conference (ending it for everyone). If it
            # fails, the contact's <Dial> action brings them in.
            desk.telephony.redirect_call(
                call_sid, webhook_url(base, CONFERENCE_JOIN, call=call_sid, role="contact"),
                retry=False)
    leg = desk.telephony.add_participant(
        name, to=number, from_=call.get("to") or call.get("caller", ""),
        status_callback=webhook_url(base, CONFERENCE_COLLEAGUE, call=call_sid))
    if leg is None:
        return Refused("twilio-unavailable")
    update_call(desk.r, call_sid, colleague_leg=leg, **{
        f"colleague:{leg}:phone": number, f"colleague:{leg}:added_by": advisor_id,
        f"colleague:{leg}:added_at": now_ms})
    call, ended = call_and_end(desk.r, call_sid)
    if ended or call.get("advisor_left_at"):
        # The contact (or the advisor) left while the colleague was being dialed:
        # nobody of the call is there to meet them.
        desk.telephony.hang_up(leg)
        update_call(desk.r, call_sid, colleague_leg="", **{f"colleague:{leg}:left_at": now_ms})
        return Refused("call-over")
    announce_change(desk.r, "advisors")
    return ColleagueAdded(call_sid, number, leg)


def remove_colleague(desk: Desk, advisor_id: str, now_ms: int) -> ColleagueRemoved | Refused:
    """Hang up the colleague on the call `advisor_id` is talking on (the call goes on)."""
    found = _talking_call(desk, advisor_id)
    if isinstance(found, Refused):
        return found
    call_sid, call = found
    leg = call.get("colleague_leg") or ""
    if not leg:
        return Refused("no-colleague")
    outcome = desk.telephony.hang_up(leg)
    if outcome not in (Outcome.DONE, Outcome.GONE):
        return Refused("twilio-unavailable")
    update_call(desk.r, call_sid, colleague_leg="", **{
        f"colleague:{leg}:removed_by": advisor_id, f"colleague:{leg}:left_at": now_ms})
    announce_change(desk.r, "advisors")
    return ColleagueRemoved(call_sid, leg)


def join(desk: Desk, call_sid: str, role: str, leg_sid: str, call_status: str,
         now_ms: int) -> JoinConference | LeaveConference | Decision:
    """A leg redirected into the call's conference: join it, unless the call is over.

    A contact arriving after the advisor left (or after the move failed) hears
    the end of an answered call instead (`after_conference`): never a conference
    with the colleague and nobody of the desk.
    """
    call, ended = call_and_end(desk.r, call_sid)
    name = call.get("conference") or ""
    if ended or is_final(call_status) or role not in ("advisor", "contact"):
        return LeaveConference()
    if role == "advisor":
        if not name or call.get("advisor_left_at"):
            return LeaveConference()
        update_call(desk.r, call_sid, advisor_joined_at=now_ms,
                    **({"advisor_leg": leg_sid} if leg_sid else {}))
        return JoinConference(name, role, call_sid)
    if not name and call.get("contact_held") and call.get("answered_by"):
        # Held for a move that then failed (the advisor hung up meanwhile): their
        # <Dial> is over, so is the answered call.
        advisor_id = call["answered_by"]
        talk = max(0, (now_ms - int(call.get("answered_at") or now_ms)) // 1000)
        return after_dial(desk, call_sid, advisor_id, "completed", talk, now_ms, call_status)
    if not name or call.get("advisor_left_at"):
        return after_conference(desk, call_sid, "contact", call_status, now_ms)
    update_call(desk.r, call_sid, contact_joined_at=now_ms)
    return JoinConference(name, role, call_sid)


def _advisor_joined(desk: Desk, call_sid: str) -> bool | None:
    """Whether the advisor's leg has followed the move into the call's conference: it
    fetched the conference's join (`join`, which notes `advisor_joined_at`; `_add`
    clears it before the move). None when Redis cannot tell: the look ends, and the
    move is sent again, as before."""
    try:
        return bool(desk.r.hget(keys.call(call_sid), "advisor_joined_at"))
    except redis.RedisError:
        return None


def moved_out_of_dial(desk: Desk, call_sid: str, call_status: str,
                      wait_seconds: float = 1.5,
                      call: dict[str, str] | None = None) -> HoldForConference | None:
    """The contact's `<Dial>` ended: because the advisor's leg was moved into the
    conference (hold the contact a moment: their own redirect is on its way), or
    None when the call is not moving (the ring's end is the ACD's).

    Twilio may post this action before the advisor's redirect has answered us,
    and an advisor who hangs up while the move is retried ends the `<Dial>` too:
    while a move is under way (for at most `wait_seconds`), it waits to know.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        call = call if call is not None else get_call(desk.r, call_sid)
        if (not call.get("conference") or is_final(call_status)
                or call.get("contact_joined_at") or call.get("advisor_left_at")):
            return None
        if call.get("conference_moved") or time.monotonic() >= deadline:
            update_call(desk.r, call_sid, contact_held=1)
            return HoldForConference(call_sid)
        time.sleep(0.05)
        call = None  # read it again


def after_conference(desk: Desk, call_sid: str, role: str, call_status: str,
                     now_ms: int) -> Decision | LeaveConference:
    """A leg's `<Dial><Conference>` ended (or the contact arrived too late for it).

    The advisor's leg: they left, and the conference ended with them; they go to
    wrap-up, and a colleague waiting for a contact who never came is hung up.
    The contact still on the line: the call is over as an answered call's
    `<Dial>` is, survey included. A contact who hung up gets nothing more (the
    status callback ends the call). The talk time runs from the answer to the
    first of the two to leave.
    """
    call = get_call(desk.r, call_sid)
    advisor_id = call.get("answered_by") or ""
    if not advisor_id or not call.get("conference"):
        # Not a call that moved: a stray or forged request frees nobody.
        return LeaveConference()
    if not call.get("talk_seconds"):
        answered_at = int(call.get("answered_at") or now_ms)
        update_call(desk.r, call_sid, talk_seconds=max(0, (now_ms - answered_at) // 1000))
    if role == "advisor":
        if not call.get("advisor_left_at"):
            update_call(desk.r, call_sid, advisor_left_at=now_ms, state="answered")
            if presence.on_call(desk.r, advisor_id, call_sid):
                finish_with_advisor(desk, call_sid, advisor_id, now_ms)
            colleague = call.get("colleague_leg") or ""
            if colleague and not call.get("contact_joined_at"):
                desk.telephony.later(lambda: desk.telephony.hang_up(colleague))
        return LeaveConference()
    if is_final(call_status) or role != "contact":
        return LeaveConference()
    if call.get("advisor_left_at") or not presence.on_call(desk.r, advisor_id, call_sid):
        return CallFinished(advisor_id)
    talk = int(get_call(desk.r, call_sid).get("talk_seconds") or 0)
    return after_dial(desk, call_sid, advisor_id, "completed", talk, now_ms, call_status)


def colleague_status(desk: Desk, call_sid: str, leg: str, call_status: str,
                     now_ms: int) -> bool:
    """A colleague's call-progress event (Twilio's `CallStatus` of their leg):
    `in-progress` they joined; a final status they left (or never answered).
    True when the call is already over (its log must be brought up to date)."""
    call = get_call(desk.r, call_sid)
    if not call or not leg or f"colleague:{leg}:phone" not in call:
        return False
    if call_status in ("in-progress", "answered"):
        update_call(desk.r, call_sid, **{f"colleague:{leg}:joined_at": now_ms})
    elif is_final(call_status):
        fields: dict[str, str | int] = {f"colleague:{leg}:outcome": call_status}
        if not call.get(f"colleague:{leg}:left_at"):
            fields[f"colleague:{leg}:left_at"] = now_ms
        if call.get("colleague_leg") == leg:
            fields["colleague_leg"] = ""
        update_call(desk.r, call_sid, **fields)
    else:
        return False
    announce_change(desk.r, "advisors")
    return is_ended(desk.r, call_sid)


def legs_left_behind(call: dict[str, str]) -> list[str]:
    """The contact's call (its hash) is over: the legs of its conference that may
    still be up (the advisor's, a colleague's), to hang up. The contact's leaving
    ends the conference only once they had joined it; a contact gone mid-move would
    leave the advisor alone in an empty conference."""
    if not call.get("conference"):
        return []
    return [leg for leg in (call.get("advisor_leg"), call.get("colleague_leg")) if leg]


def hang_up_legs(desk: Desk, legs: list[str]) -> None:
    """Hang up each leg (one already over is fine: Twilio answers "gone")."""
    for leg in legs:
        desk.telephony.hang_up(leg)


def colleagues(call: dict[str, str]) -> list[dict[str, str | None]]:
    """The colleagues a call had, in the order they were added: phone (E.164),
    leg (CallSid), added_by (advisor id), added_at / joined_at / left_at (ISO 8601,
    UTC; None when it did not happen), removed_by (advisor id or None), outcome
    (Twilio's final status of the leg, or None while on the call)."""
    legs = {name.split(":")[1] for name in call if name.startswith("colleague:")}
    found: list[dict[str, str | None]] = []
    for leg in legs:
        entry: dict[str, str | None] = {"leg": leg}
        for field in _FIELDS:
            value = call.get(f"colleague:{leg}:{field}") or None
            entry[field] = _iso(value) if value and field.endswith("_at") else value
        found.append(entry)
    return sorted(found, key=lambda e: e.get("added_at") or "")


def _iso(ms: str) -> str | None:
    """A millisecond timestamp as ISO 8601 in UTC."""
    try:
        return datetime.fromtimestamp(int(ms) / 1000, UTC).isoformat()
    except ValueError:
        return None

