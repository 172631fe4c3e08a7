"""The Twilio adapter: caseline's one way to act on a live call through Twilio's REST API.

It knows settings and the `twilio` library, nothing of the desk's decisions:
routing asks it to redirect or place a call and reads back an `Outcome`.
"""

from telephony.client import (
    RETRY_DELAYS_SECONDS,
    CallStatus,
    LiveLeg,
    Outcome,
    Telephony,
    classify,
)

__all__ = ["RETRY_DELAYS_SECONDS", "CallStatus", "LiveLeg", "Outcome", "Telephony", "classify"]
