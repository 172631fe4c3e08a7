"""What a simulated call produces: its events in order, its requests, and how it ended."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from twilio_side.transcripts import format_summary

# How a call can end, as `CallResult.outcome` (and `caseline call --expect`) names it.
OUTCOMES = ("advisor", "queue", "voicemail", "hangup")


@dataclass(frozen=True)
class Event:
    """Something that happened on the call, in order.

    kinds: say, play, pause, gather (a key press; text is the digits, "" for
    silence), dial (text the number, detail the phone's action), whisper,
    connect, enqueue, wait (one waitUrl cycle), leave, record, redirect
    (detail "rest" or "twiml"), hangup, error, warning, status.
    party: "caller", "advisor" or "service" (who did it / who hears it).
    """

    kind: str
    text: str = ""
    url: str = ""
    at: float = 0.0
    party: str = "caller"
    detail: str = ""


@dataclass(frozen=True)
class Step:
    """One webhook request: what was fetched, the answer and how long it took."""

    kind: str
    method: str
    url: str
    status: int
    elapsed: float
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass
class CallResult:
    """How one simulated call went."""

    call_sid: str
    from_number: str = ""
    to_number: str = ""
    transcript: list[Event] = field(default_factory=list)
    outcome: str = "hangup"
    answered_by: str | None = None
    dialed: list[str] = field(default_factory=list)
    dial_results: list[tuple[str, str]] = field(default_factory=list)
    queued: bool = False
    queues: list[str] = field(default_factory=list)
    queue_seconds: float = 0.0
    redirected_at: list[float] = field(default_factory=list)
    keys_pressed: list[str] = field(default_factory=list)
    recording_url: str | None = None
    error: str | None = None
    steps: list[Step] = field(default_factory=list)
    duration: int = 0
    real_seconds: float = 0.0

    def heard(self, party: str = "caller") -> list[str]:
        """Every `<Say>` text the party heard, in order."""
        return [e.text for e in self.transcript if e.kind == "say" and e.party == party]

    def events(self, kind: str) -> list[Event]:
        """The transcript's events of one kind."""
        return [e for e in self.transcript if e.kind == kind]

    def summary(self) -> str:
        """A few lines: outcome, the path taken, each request and how long it took."""
        return format_summary(self)
