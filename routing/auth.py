"""Who may discuss cases: the caller's number, or a contact ID and PIN.

Caller ID is not proof, but it is how the desk recognises its contacts; an
unrecognised number proves itself with contact ID and PIN. Attempts count
against the number and the contact ID (`routing.lockout`) before the PIN is
checked: three failures from one number lock it out for 15 minutes; five for one
contact ID within 24 hours, from any numbers, lock that contact's PIN, which is
then refused exactly like a wrong one. An inactive or deactivated contact's ID
is an unknown ID. The PIN is checked against the database, never the Redis cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import directory
from config.logs import mask_phone
from routing import lockout
from routing.call_state import update_call
from routing.desk import Desk

log = logging.getLogger(__name__)

MAX_FAILURES = lockout.NUMBER_MAX_FAILURES
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
    failures: int = 0


def is_authorized(call: dict[str, str]) -> bool:
    """Whether this call is an active authorized contact's (by number or PIN)."""
    return call.get("verified") == "1"


def contact_fields(
    desk: Desk, contact: dict[str, str], now: datetime
) -> dict[str, str | int]:
    """Call fields for a recognised contact (and whether they are active)."""
    district = directory.find_district(desk.r, desk.session_factory, contact.get("district", ""))
    return fields_of_contact(contact, district, now)


def fields_of_contact(
    contact: dict[str, str], district: dict[str, str] | None, now: datetime
) -> dict[str, str | int]:
    """`contact_fields` of a contact whose district (None: unknown) is already read."""
    active = directory.contact_is_active(contact, now)
    # An inactive or deactivated contact identifies nobody (docs/contract.md, "Who is calling").
    return {
        "contact": contact.get("id", ""),
        "contact_name": contact.get("name", ""),
        "district": contact.get("district", ""),
        "district_name": (district or {}).get("name", ""),
        "hosted": (district or {}).get("hosted", "0"),
        "verified": "1" if active else "",
        "inactive": "" if active else "1",
    }


def how_verified(call: dict[str, str]) -> str:
    """How the caller was verified, for the advisor's whisper and the call log:
    "pin", "caller-id-attested", "caller-id" (trusted without attestation) or ""."""
    if not is_authorized(call):
        return ""
    if call.get("verified_by") == "pin" or call.get("verified_by_pin") == "1":
        return "pin"
    if call.get("stir_verstat") == FULL_ATTESTATION:
        return "caller-id-attested"
    return "caller-id"


def is_locked(desk: Desk, caller: str, now: datetime) -> bool:
    """Whether this number is locked out of verification right now."""
    return lockout.number_locked(desk.r, caller, now)


def verify(desk: Desk, call_sid: str, call: dict[str, str], pin: str,
           now: datetime) -> Verification:
    """Check the PIN typed for the call's pending contact ID (`pending_contact`, its
    attempt `pin_try`), counting the attempt against the number and the contact first.

    The attempt takes its place in both counts before the check (`lockout.reserve`),
    so guesses sent at once are checked at most three per number and five per
    contact; while the places are held by checks still running, an attempt is
    refused as a wrong PIN without being counted (the number is not locked, and the
    caller is not told it is). An inactive or deactivated contact is an unknown ID:
    counted against the number only, its right PIN a wrong one. A locked contact, an unknown ID and
    a wrong PIN all cost one scrypt and sound alike. A success takes back its own
    place and resets neither count otherwise: it proves the caller knows one PIN,
    not that their earlier failures (perhaps against other IDs) were typos. Twilio's
    repeat of the attempt (even without its idempotency token), or a late post of
    an earlier attempt of the call, is neither counted nor checked again.
    """
    caller = call.get("caller", "")
    raw_id = call.get("pending_contact", "")
    contact_id = raw_id[:directory.CONTACT_ID_DIGITS] if raw_id.isdigit() else ""
    stored = directory.stored_pin(desk.session_factory, contact_id)
    active = stored.contact is not None and directory.contact_is_active(stored.contact, now)
    attempt = lockout.reserve(desk.r, call_sid, call.get("pin_try", "0"), caller,
                              contact_id if active else None, now)
    if attempt.place in ("repeat", "stale"):
        return _as_before(desk, call, caller, now)
    if attempt.place == "locked":
        return Verification(False, locked=True, failures=MAX_FAILURES)
    if attempt.place == "number-busy":
        # The number's places are held by checks still running (which may all be
        # right): no lock to tell of. Refused as a wrong PIN is, counted nowhere; the
        # caller is asked for their contact ID again, by when those checks are done.
        return Verification(False)
    # The same work whatever the ID: one scrypt, against a dummy hash for an ID
    # that is unknown, inactive, locked or busy, so neither timing nor wording tells.
    pin_hash = stored.pin_hash if active and attempt.place == "check" else ""
    try:
        matched = directory.check_stored_pin(desk.session_factory, contact_id, pin_hash,
                                             pin[:16], desk.settings.pin_pepper)
    except Exception:
        lockout.withdraw(desk.r, attempt)  # not checked: it was no guess
        raise
    if attempt.place == "contact-busy":
        return Verification(False)  # nothing was counted: nothing to settle
    if matched and stored.contact is not None:
        lockout.withdraw(desk.r, attempt)
        update_call(desk.r, call_sid, **contact_fields(desk, stored.contact, now),
                    verified_by_pin="1", verified_by="pin")
        return Verification(True)
    return _count_failure(desk, attempt, contact_id, now,
                          known=stored.contact is not None, active=active)


def _as_before(desk: Desk, call: dict[str, str], caller: str, now: datetime) -> Verification:
    """Twilio's repeat of an attempt already counted, or a late post of an earlier
    attempt: what the first post decided, from the call and the number as they are
    (verified, locked, or a failure without a check)."""
    if is_authorized(call):
        return Verification(True)
    if is_locked(desk, caller, now):
        return Verification(False, locked=True, failures=MAX_FAILURES)
    return Verification(False)


def _count_failure(desk: Desk, attempt: lockout.Attempt, contact_id: str, now: datetime, *,
                   known: bool, active: bool) -> Verification:
    """The attempt stays counted as a failure; log it (number masked) and any lock it starts."""
    failure = lockout.settle_failure(desk.r, attempt, now)
    number = mask_phone(attempt.caller)
    # Operators may read why: the caller hears the same whatever it was.
    unknown = "" if active else " (not an active contact)" if known else " (no such contact)"
    log.warning("failed PIN verification for contact ID %s%s from %s "
                "(%d from this number in 15 min, %s for this ID in 24 h)",
                contact_id or "(none)", unknown, number,
                failure.number.failures, failure.contact.failures if failure.contact else "-")
    if failure.number.lock_started:
        log.warning("number %s locked out of verification for 15 minutes", number)
    if failure.contact and failure.contact.lock_started:
        log.warning("contact %s's PIN locked for 24 hours (or until an operator unlocks it) "
                    "after %d failures, the last from %s",
                    contact_id, failure.contact.failures, number)
    return Verification(False, locked=failure.number.locked, failures=failure.number.failures)
