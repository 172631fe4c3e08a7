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
    # is_possible rather than is_valid: 555-01xx numbers are fictional but real-shaped.
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
