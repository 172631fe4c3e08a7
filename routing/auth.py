"""Who may discuss cases: the caller's number, or a contact ID and PIN.

Caller ID is not proof, but it is how the desk recognises its contacts; an
unrecognised number proves itself with contact ID and PIN. Three failed
verifications from one number lock that number out for 15 minutes, for every
web process (the counter lives in Redis).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from routing import directory, keys
from routing.call_session import get_session, update_session
from routing.desk import Desk

MAX_FAILURES = 3
LOCKOUT_SECONDS = 15 * 60
# Twilio's `StirVerstat` for SHAKEN/STIR full attestation: the originating
# carrier vouches that the caller may use the number they present.
FULL_ATTESTATION = "TN-Validation-Passed-A"


def caller_id_trusted(trust: str, stir_verstat: str) -> bool:
    """Whether a number matching a contact identifies the caller without a PIN.

    `trust` is `CASELINE_CALLER_ID_TRUST`: "attested" (only with Twilio's
    `StirVerstat` of full attestation), "any" (trials only), "never".
    """
    if trust == "any":
        return True
    return trust == "attested" and stir_verstat == FULL_ATTESTATION


@dataclass(frozen=True)
class Verification:
    """The outcome of one contact-ID/PIN attempt."""

    verified: bool
    locked: bool = False
    inactive: bool = False
    failures: int = 0


def is_authorized(session: dict[str, str]) -> bool:
    """Whether this call is an active authorized contact's (by number or PIN)."""
    return session.get("verified") == "1"


def contact_session_fields(
    desk: Desk, contact: dict[str, str], now: datetime
) -> dict[str, str | int]:
    """Session fields for a recognised contact (and whether they are active)."""
    district = directory.find_district(desk.r, desk.session_factory, contact.get("district", ""))
    active = directory.contact_is_active(contact, now)
    # An inactive or deactivated contact identifies nobody (PRODUCT.md).
    return {
        "contact": contact.get("id", ""),
        "contact_name": contact.get("name", ""),
        "district": contact.get("district", ""),
        "district_name": (district or {}).get("name", ""),
        "hosted": (district or {}).get("hosted", "0"),
        "verified": "1" if active else "",
        "inactive": "" if active else "1",
    }


def how_verified(session: dict[str, str]) -> str:
    """How the caller was verified, for the advisor's whisper and the call log:
    "pin", "caller-id-attested", "caller-id" (trusted without attestation) or ""."""
    if not is_authorized(session):
        return ""
    if session.get("verified_by") == "pin" or session.get("verified_by_pin") == "1":
        return "pin"
    if session.get("stir_verstat") == FULL_ATTESTATION:
        return "caller-id-attested"
    return "caller-id"


def is_locked(desk: Desk, caller: str) -> bool:
    """Whether this number is locked out of verification right now."""
    failures = desk.r.get(keys.verify_failures(caller))
    return int(failures or 0) >= MAX_FAILURES


def verify(desk: Desk, call_sid: str, contact_id: str, pin: str, now: datetime) -> Verification:
    """Check a contact ID and PIN typed by the caller; count a failure against the number."""
    session = get_session(desk.r, call_sid)
    caller = session.get("caller", "")
    if is_locked(desk, caller):
        return Verification(False, locked=True, failures=MAX_FAILURES)
    contact = directory.find_contact(desk.r, desk.session_factory, contact_id[:20]) if (
        contact_id.isdigit()) else None
    if contact and directory.check_pin(pin[:16], contact.get("pin_hash", "")):
        fields = contact_session_fields(desk, contact, now)
        if fields["verified"]:
            update_session(desk.r, call_sid, **fields, verified_by_pin="1", verified_by="pin")
            desk.r.delete(keys.verify_failures(caller))
            return Verification(True)
        # A right PIN of an inactive contact: not authorized, but not a guess either.
        update_session(desk.r, call_sid, district=fields["district"],
                       district_name=fields["district_name"])
        return Verification(False, inactive=True)
    return _count_failure(desk, caller)


def _count_failure(desk: Desk, caller: str) -> Verification:
    """One more failure from this number; the third starts the lockout."""
    key = keys.verify_failures(caller)
    pipe = desk.r.pipeline()
    pipe.incr(key)
    pipe.expire(key, LOCKOUT_SECONDS)
    failures, _ = pipe.execute()
    return Verification(False, locked=failures >= MAX_FAILURES, failures=int(failures))
