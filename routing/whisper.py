"""What an advisor is told before the caller is bridged (or before a callback
dials the contact): the facts; `ivr` words them."""

from __future__ import annotations

from dataclasses import dataclass

from routing import presence
from routing.auth import how_verified
from routing.call_state import get_call
from routing.callbacks import is_placed_leg
from routing.desk import Desk

# Seconds the advisor has to press the accept key once the whisper is said (the
# whisper's `<Gather timeout>`, `ivr.twiml.whisper`).
KEY_TIMEOUT_SECONDS = 8
# Seconds the whisper takes to say at most (case digits, district, caller, priority,
# then "press any key": some 15 s at Twilio's speaking rate; a long district name
# stays well inside).
SPEECH_SECONDS = 60


def whisper_lease_ms(desk: Desk) -> int:
    """How long an advisor's ring is held once they pick up (ms): the whisper, its key
    timeout and the claim's margin (DESIGN: answering extends the lease). Their accept
    then finds the hold the reconciler would otherwise free after the claim's lease
    (ring timeout + margin, from the claim), which an advisor who picked up late in the
    ring outlives while they hear the whisper."""
    return (SPEECH_SECONDS + KEY_TIMEOUT_SECONDS + desk.settings.lease_margin_seconds) * 1000


@dataclass(frozen=True)
class Whisper:
    """Case number, district, caller (and how verified), priority; what the call is about
    when there is no case number."""

    case: str
    district: str
    contact_name: str
    verified_by: str  # `auth.how_verified`: "pin", "caller-id-attested", "caller-id" or ""
    priority: str
    outage: bool
    product: str


def call_facts(call: dict[str, str]) -> Whisper:
    """The whisper's facts from the call's hash (also the console's call card)."""
    return Whisper(
        case=call.get("case", ""), district=call.get("district_name", ""),
        contact_name=call.get("contact_name", ""), verified_by=how_verified(call),
        priority=call.get("priority", ""), outage=bool(call.get("outage")),
        product=call.get("product", ""),
    )


def play_whisper(desk: Desk, call_sid: str, advisor_id: str, now_ms: int) -> Whisper | None:
    """The advisor rung for this call picked up at `now_ms` (ms since the epoch): what to
    tell them (None when the call no longer rings them, or their hold is gone). Their
    hold is kept through the whisper and its key (`whisper_lease_ms`); only their key
    answers (`acd.dial_answered`)."""
    call = presence.pick_up(desk.r, advisor_id, call_sid, now_ms + whisper_lease_ms(desk))
    # {}: the call rings someone else now, or their hold was released meanwhile (the
    # reconciler): their key could take nothing.
    return call_facts(call) if call else None


def callback_whisper(desk: Desk, call_sid: str, advisor_id: str, now_ms: int,
                     leg: str = "") -> Whisper | None:
    """The advisor picked up a callback's first leg at `now_ms` (ms since the epoch):
    whom it is for (None when stale, or when `leg`, the leg's own CallSid, is not the
    one the desk placed: a call Twilio placed while answering an error,
    `routing.callbacks.is_placed_leg`). Their hold is kept through the whisper and its
    key, as for a caller's (`whisper_lease_ms`)."""
    call = get_call(desk.r, call_sid)
    if call.get("callback_state") != "ringing-advisor" or call.get("ringing") != advisor_id:
        return None
    if not is_placed_leg(call, leg):
        return None
    if not presence.renew_ring(desk.r, advisor_id, call_sid, now_ms + whisper_lease_ms(desk)):
        return None  # released meanwhile (the reconciler): their key could take nothing
    return call_facts(call)
