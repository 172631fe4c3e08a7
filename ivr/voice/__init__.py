"""Twilio's webhooks, by stage of the call: thin views that parse the form
(`form`), ask `routing`, and answer its decision as TwiML (`render`).

Every request passes the gate first (`hooks`: 403, no side effect), and any
failure inside a call becomes TwiML that still reaches a human (`errors`).
"""

from __future__ import annotations

from ivr.voice import (  # noqa: F401 - each module adds its webhooks to the blueprint
    after_hours,
    callbacks,
    conference,
    dialing,
    fallback,
    menu,
    outage,
    status,
    verification,
    waiting,
)
from ivr.voice.errors import register_error_pages
from ivr.voice.hooks import bp

__all__ = ["bp", "register_error_pages"]
