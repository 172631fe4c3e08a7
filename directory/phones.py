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
