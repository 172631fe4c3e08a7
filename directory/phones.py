"""Phone numbers as the directory stores them: E.164."""

from __future__ import annotations

import phonenumbers


def normalize_phone(raw: str, region: str = "US") -> str | None:
    """The number in E.164, or None when it is not a phone number (nor is a number
    with an extension: see `has_extension`)."""
    number = _parse(raw, region)
    # Valid and dialable (PRODUCT: a number without its area code is a bad record);
    # the fictional 555-01xx numbers of the demo and tests are valid NANP numbers.
    if number is None or number.extension or not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def has_extension(raw: str, region: str = "US") -> bool:
    """Whether the text is a phone number written with an extension ("ext. 12", "x12").
    E.164 has no room for one: kept, it would be dropped, and a callback would ring
    the switchboard while a caller ID (which never carries one) matched nobody."""
    number = _parse(raw, region)
    return number is not None and bool(number.extension)


def _parse(raw: str, region: str) -> phonenumbers.PhoneNumber | None:
    """The number phonenumbers reads in the text, or None."""
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 64:
        return None
    try:
        return phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None


# Where the line dials an advisor: the regions it calls back and colleagues in
# (`routing.callbacks.CALLBACK_REGIONS`, contract "POST /api/advisors/<id>/colleague"),
# and never a number that costs the desk a premium per minute (the number types
# `routing.conference` refuses for a colleague, and the UAN and personal numbers
# that forward at a price).
ADVISOR_REGIONS = frozenset({"US", "CA"})
_PREMIUM_TYPES = frozenset({
    phonenumbers.PhoneNumberType.PREMIUM_RATE, phonenumbers.PhoneNumberType.SHARED_COST,
    phonenumbers.PhoneNumberType.UAN, phonenumbers.PhoneNumberType.PERSONAL_NUMBER,
})


def undialable_for_advisor(phone_e164: str) -> str | None:
    """Why the line must never dial this E.164 number as an advisor's phone, or None:
    "is outside the US and Canada" or "is a premium-rate or shared-cost number"."""
    number = phonenumbers.parse(phone_e164, None)
    if phonenumbers.number_type(number) in _PREMIUM_TYPES:
        return "is a premium-rate or shared-cost number"
    if phonenumbers.region_code_for_number(number) not in ADVISOR_REGIONS:
        return "is outside the US and Canada"
    return None
