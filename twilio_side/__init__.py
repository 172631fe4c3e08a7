"""Twilio's side of a phone call, for tests, demos and benchmarks (never the service).

`Caller` plays Twilio placing a call on the service: it posts signed webhooks
and walks the TwiML answered, verb by verb, over a Flask test client
(`FlaskTransport`) or real HTTP (`HttpTransport`). `TwilioEmulator` stands in
for the REST API the service uses to redirect a live call, and hands each
redirect to the simulated call it is for (`InProcessLink`, `HttpLink`).

A separate distribution (`twilio_side/pyproject.toml`), installed only for
development and tests (`make` installs it): caseline's wheel leaves it out.
"""

from twilio_side.account import (
    API_VERSION,
    DEFAULT_ACCOUNT_SID,
    DEFAULT_TO,
    new_sid,
    queue_sid,
)
from twilio_side.advisors import ADVISOR_ACTIONS, AdvisorPolicy
from twilio_side.caller import Caller
from twilio_side.emulator import TwilioEmulator, serve_forever
from twilio_side.gather import Gather
from twilio_side.links import EmulatorLink, HttpLink, InProcessLink
from twilio_side.registry import CallUpdate, CreatedCall, RecordedRequest
from twilio_side.results import OUTCOMES, CallResult, Event, Step
from twilio_side.transcripts import (
    APPLICATION_ERROR,
    TranscriptPrinter,
    format_summary,
    format_transcript,
)
from twilio_side.transport import FlaskTransport, HttpTransport, Transport, signature_headers
from twilio_side.twiml import WORDS_PER_SECOND

__all__ = [
    "ADVISOR_ACTIONS",
    "API_VERSION",
    "APPLICATION_ERROR",
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_TO",
    "OUTCOMES",
    "WORDS_PER_SECOND",
    "AdvisorPolicy",
    "CallResult",
    "CallUpdate",
    "Caller",
    "CreatedCall",
    "EmulatorLink",
    "Event",
    "FlaskTransport",
    "Gather",
    "HttpLink",
    "HttpTransport",
    "InProcessLink",
    "RecordedRequest",
    "Step",
    "TranscriptPrinter",
    "Transport",
    "TwilioEmulator",
    "format_summary",
    "format_transcript",
    "new_sid",
    "queue_sid",
    "serve_forever",
    "signature_headers",
]
