"""Who may be called back, and at which number (the desk's callback policy).

A callback makes the vendor's account place a call, so it is offered only to
a verified authorized contact, dials only that contact's directory phone (never
the caller ID, which anyone can set), only to a US or Canadian fixed or mobile
number (no premium-rate, toll-free or international numbers: toll fraud), and
at most a few times per contact per day (Central dates).
"""

from __future__ import annotations

from datetime import datetime

import phonenumbers
from phonenumbers import PhoneNumberType

from config.hours import CENTRAL
from routing import directory, keys
from routing.auth import is_authorized
from routing.desk import Desk

CALLBACK_REGIONS = frozenset({"US", "CA"})
CALLBACK_NUMBER_TYPES = frozenset({
    PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE,
})
# Callbacks one contact may ask for in a day (Central).
MAX_CALLBACKS_PER_DAY = 3


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


def callback_number(desk: Desk, call: dict[str, str]) -> str | None:
    """The number a callback for this call would dial: the verified contact's
    directory phone when it may be dialed, else None (no callback offered)."""
    if not is_authorized(call) or not call.get("contact"):
        return None
    contact = directory.find_contact(desk.r, desk.session_factory, call["contact"])
    phone = (contact or {}).get("phone", "")
    return phone if phone and dialable_for_callback(phone) else None


def callbacks_left(desk: Desk, contact_id: str, now: datetime) -> int:
    """How many more callbacks the contact may ask for today (Central)."""
    used = desk.r.get(keys.callbacks_on(contact_id, now.astimezone(CENTRAL).date().isoformat()))
    return max(0, MAX_CALLBACKS_PER_DAY - int(used or 0))


def take_callback(desk: Desk, contact_id: str, now: datetime) -> bool:
    """Count one callback for the contact today; False when the day's are used up."""
    key = keys.callbacks_on(contact_id, now.astimezone(CENTRAL).date().isoformat())
    pipe = desk.r.pipeline()
    pipe.incr(key)
    pipe.expire(key, 2 * 24 * 3600)
    used, _ = pipe.execute()
    return int(used) <= MAX_CALLBACKS_PER_DAY
