"""Phone numbers as the directory stores them: E.164."""

from __future__ import annotations

import phonenumbers


def normalize_phone(raw: str, region: str = "US") -> str | None:
    """The number in E.164, or None when it is not a phone number."""
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 64:
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    # Valid and dialable (PRODUCT: a number without its area code is a bad record);
    # the fictional 555-01xx numbers of the demo and tests are valid NANP numbers.
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
