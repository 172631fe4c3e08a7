"""What Twilio posted, parsed defensively: every field bounded, every number
clamped, anything missing or malformed a safe default (never a 5xx)."""

from __future__ import annotations

from flask import request

MENU_OPTIONS = ("1", "2", "6", "8")


def form(name: str, limit: int = 64) -> str:
    """A posted field as a bounded string ('' when missing)."""
    return (request.form.get(name) or "")[:limit]


def call_sid() -> str:
    """The posted CallSid ('' when missing)."""
    return form("CallSid")


def key() -> str:
    """The first key the caller pressed ('' for silence)."""
    return form("Digits")[:1]


def whole(name: str) -> int:
    """A posted whole number, 0 when missing or malformed."""
    try:
        return max(0, int(form(name) or 0))
    except ValueError:
        return 0


def dial_bridged() -> bool:
    """Whether a `<Dial>` action says Twilio bridged the dialed leg to the caller
    (its `DialBridged`, "true" or "false"; False when missing)."""
    return form("DialBridged", 8).lower() == "true"


def call_status() -> str:
    """The caller's call status as posted with a `<Dial>` action (in progress if absent)."""
    return form("CallStatus") or "in-progress"


def whole_arg(name: str) -> int:
    """A whole number from the action URL's query (0 when missing or malformed)."""
    try:
        return max(0, min(int(request.args.get(name, "0")), 100))
    except ValueError:
        return 0


def attempt() -> int:
    """Which try of the current question this is (from the action URL)."""
    try:
        return max(1, min(int(request.args.get("attempt", "1")), 10))
    except ValueError:
        return 1


def option() -> str:
    """The menu option a verification step is for (from the action URL)."""
    chosen = request.args.get("option", "1")[:1]
    return chosen if chosen in MENU_OPTIONS else "1"


def leg() -> tuple[str, str]:
    """An advisor's leg: the caller's CallSid and the advisor (from the URL)."""
    return request.args.get("call", "")[:64], request.args.get("advisor", "")[:64]
