"""What an advisor is told before the caller is bridged (or before a callback
dials the contact): the facts; `ivr` words them."""

from __future__ import annotations

from dataclasses import dataclass

from routing.auth import how_verified
from routing.call_state import get_call, update_call
from routing.callbacks import is_placed_leg
from routing.desk import Desk


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


def play_whisper(desk: Desk, call_sid: str, advisor_id: str) -> Whisper | None:
    """The advisor rung for this call picked up: what to tell them (None when the call
    no longer rings them). Playing it means no key yet counts as no answer."""
    call = get_call(desk.r, call_sid)
    if not call or call.get("ringing") != advisor_id:
        return None
    if call.get("whisper") != "accepted":
        update_call(desk.r, call_sid, whisper="played")
    return call_facts(call)


def callback_whisper(desk: Desk, call_sid: str, advisor_id: str,
                     leg: str = "") -> Whisper | None:
    """The advisor picked up a callback's first leg: whom it is for (None when stale,
    or when `leg`, the leg's own CallSid, is not the one the desk placed: a call
    Twilio placed while answering an error, `routing.callbacks.is_placed_leg`)."""
    call = get_call(desk.r, call_sid)
    if call.get("callback_state") != "ringing-advisor" or call.get("ringing") != advisor_id:
        return None
    if not is_placed_leg(call, leg):
        return None
    return call_facts(call)
