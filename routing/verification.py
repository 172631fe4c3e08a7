"""The verification stage of a call: an unrecognised caller who chose 1, 2 or 6
(or 8 at night) is asked for their contact ID, then their PIN, each ending in #.

The checks themselves (PIN, lockouts, caller ID) are `routing.auth`; this is
what the caller is asked next. A caller who cannot be verified is told to
reach their district's authorized contacts, never whom, and the call ends
(`routing.menu` sends an outage caller to `routing.outage` instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from directory import CONTACT_ID_DIGITS
from routing import auth
from routing.call_state import count_on_call, get_call, update_call
from routing.desk import Desk

# Silence on the contact-ID question: asked this many times, then refused.
CONTACT_ID_TRIES = 3
# Silence on the PIN question: asked this many times on a call, then refused as silence
# on the contact ID is. Silence is no guess: never a failed PIN, never counted towards a
# lockout (PRODUCT.md counts failed verifications), never told "could not verify".
PIN_TRIES = 3


@dataclass(frozen=True)
class AskContactId:
    """Ask for the contact ID (after a failed PIN: say so first; after silence,
    `nothing_entered`: that nothing came)."""

    option: str
    attempt: int = 1
    failed: bool = False
    nothing_entered: bool = False


@dataclass(frozen=True)
class AskPin:
    """Ask for the PIN of the contact ID just given. `attempt`: the call's attempt it
    answers (its `pin_try`; 0 when unknown), which the answer names, so that Twilio's
    repeat of it, with or without its idempotency token, hears the first answer.
    `nothing_entered`: asked again after silence (say that nothing came)."""

    option: str
    attempt: int = 0
    nothing_entered: bool = False


@dataclass(frozen=True)
class Verified:
    """The caller proved to be an active authorized contact: on with their option."""

    option: str


@dataclass(frozen=True)
class Unverified:
    """The caller could not be verified. `why`: "locked" (this number is locked out),
    "failed-locked" (a wrong PIN that locked it), or "" (no contact ID given). A right
    PIN of an inactive contact is a wrong PIN: it has no `why` of its own."""

    option: str
    why: str = ""


@dataclass(frozen=True)
class Refused:
    """Not verified, and not an outage report: whom to ask (never who), goodbye."""

    why: str = ""


def begin(
    desk: Desk, call: dict[str, str], option: str, now: datetime
) -> AskContactId | Unverified:
    """Ask an unrecognised caller for their contact ID, unless their number is locked out."""
    if auth.is_locked(desk, call.get("caller", ""), now):
        return Unverified(option, "locked")
    return AskContactId(option)


def enter_contact_id(
    desk: Desk, call_sid: str, digits: str, option: str, attempt: int
) -> AskContactId | AskPin | Unverified:
    """The contact ID: remember it and ask the PIN; silence asks again, three times."""
    if not digits:
        if attempt >= CONTACT_ID_TRIES:
            return Unverified(option)
        return AskContactId(option, attempt + 1, nothing_entered=True)
    # A new attempt: its PIN counts once however often Twilio posts it (`auth.verify`).
    tries = count_on_call(desk.r, call_sid, "pin_try",
                          pending_contact=digits[:CONTACT_ID_DIGITS])
    return AskPin(option, tries)


def enter_pin(
    desk: Desk, call_sid: str, digits: str, option: str, now: datetime
) -> Verified | AskContactId | Unverified:
    """The PIN: verified, or asked again from the contact ID, or locked out (`auth.verify`).
    Silence (nothing keyed, or `#` alone) asks the PIN again (`PIN_TRIES`)."""
    if not digits:
        if count_on_call(desk.r, call_sid, "pin_silences") >= PIN_TRIES:
            return Unverified(option)
        # A new try of the PIN for the same contact ID: the answer names it, so it is
        # not taken for Twilio's repeat of this silent one (`ivr.gate.TRY_KEYED`).
        return AskPin(option, count_on_call(desk.r, call_sid, "pin_try"),
                      nothing_entered=True)
    result = auth.verify(desk, call_sid, get_call(desk.r, call_sid), digits, now)
    if result.verified:
        return Verified(option)
    if result.locked:
        return Unverified(option, "failed-locked")
    return AskContactId(option, failed=True)


def refuse(desk: Desk, call_sid: str, why: str) -> Refused:
    """End an unverified call for options 1, 2 and 6 (the call log says `refused`)."""
    update_call(desk.r, call_sid, refused="1")
    return Refused(why)
