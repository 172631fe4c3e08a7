"""What names things on Twilio's side: the API version, sids, the default account and line."""

from __future__ import annotations

import hashlib
import secrets

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_TO = "+18005550100"


def new_sid(prefix: str = "CA") -> str:
    """A Twilio-shaped sid: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def queue_sid(name: str) -> str:
    """The QueueSid of a named queue (stable, like Twilio's)."""
    return "QU" + hashlib.md5(name.encode("utf-8")).hexdigest()  # noqa: S324 - an id, not security
