"""What caseline's logs may say about people: phone numbers only masked.

A log line keeps enough of a number to tell calls apart when reading it with
the caller on the phone (country, area code, the last four digits), never the
whole number.
"""

from __future__ import annotations

import logging
import re

# An E.164 number (or something trying to be one) anywhere in a log line.
_PHONE = re.compile(r"\+\d{7,15}\b")


def mask_phone(number: str) -> str:
    """`+16125550101` -> `+1612***0101`; anything short or not a number -> `***`."""
    number = (number or "").strip()
    digits = number.lstrip("+")
    if not digits:
        return ""
    if not digits.isdigit() or len(digits) < 8:
        return "***"
    return f"+{digits[:4]}***{digits[-4:]}"


def mask_phones(text: str) -> str:
    """`text` with every E.164 number in it masked."""
    return _PHONE.sub(lambda match: mask_phone(match.group()), text)


class PhoneMaskingFilter(logging.Filter):
    """Masks any E.164 number a log record would print (a safety net under mask_phone)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, masked; always let the record through."""
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let logging report it as usual
            return True
        masked = mask_phones(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse `exc_text` when set: the traceback is masked too.
            record.exc_text = mask_phones(logging.Formatter().formatException(record.exc_info))
        return True


def install_phone_masking(*handlers: logging.Handler) -> None:
    """Add the masking filter to `handlers` (default: the root logger's)."""
    for handler in handlers or tuple(logging.getLogger().handlers):
        if not any(isinstance(f, PhoneMaskingFilter) for f in handler.filters):
            handler.addFilter(PhoneMaskingFilter())
