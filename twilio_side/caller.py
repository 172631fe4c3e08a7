"""The Twilio side of a phone call: a driver that walks TwiML as Twilio does.

`Caller` places one inbound call on a service: it posts what Twilio posts
(signed with `X-Twilio-Signature`), executes the returned TwiML verb by verb,
follows every `action`, `url` and `waitUrl` (relative URLs resolve against the
document that held them), plays the advisor's phone on `<Dial><Number url>`,
waits in `<Enqueue>` until a REST redirect arrives through the emulator
(`twilio_side.emulator`), and ends with the status callback. It works over
Flask's test client (`FlaskTransport`) or real HTTP (`HttpTransport`), and
returns a `CallResult`: what the caller heard, how the call ended, each request
and how long it took.

Nothing here knows caseline's URLs except the two a phone number is
configured with: the Voice URL (`/voice/incoming`) and the status callback
(`/voice/status`). Time on the phone is simulated (no sleeping) except where a
test really waits: in a queue, for an advisor to be freed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

from twilio_side.account import DEFAULT_ACCOUNT_SID, DEFAULT_TO, new_sid
from twilio_side.advisors import AdvisorPolicy
from twilio_side.gather import Gather
from twilio_side.links import EmulatorLink
from twilio_side.results import CallResult, Event
from twilio_side.transport import Transport
from twilio_side.twiml import CallOver, Fetch
from twilio_side.walker import Walker


class Caller(Walker):
    """One inbound call placed on the service, walked exactly as Twilio walks it."""

    def __init__(
        self,
        transport: Transport,
        from_number: str,
        to_number: str = DEFAULT_TO,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        call_sid: str | None = None,
        keys: Sequence[str] | None = None,
        advisor_policy: AdvisorPolicy
        | str
        | Mapping[str, str | Sequence[str]]
        | Callable[[str, int], str]
        | None = None,
        talk_seconds: int = 60,
        incoming_path: str = "/voice/incoming",
        status_path: str | None = "/voice/status",
        start_url: str | None = None,
        direction: str = "inbound",
        emulator_link: EmulatorLink | None = None,
        wait_poll_interval: float = 0.05,
        wait_cycle_seconds: float = 0.0,
        hold_track_seconds: float = 0.0,
        max_wait_seconds: float = 60.0,
        on_event: Callable[[Event], None] | None = None,
        gather_input: Callable[[Gather], str] | None = None,
        advisor_gather_input: Callable[[Gather], str] | None = None,
        realtime: bool = False,
        post_status_twice: bool = False,
        bridged_hangup: str = "caller",
        record_seconds: int = 8,
        record_ending: str = "key",
        enqueue_action_on_redirect: bool = True,
        recording_base_url: str = "http://emulator",
        extra_params: Mapping[str, str] | None = None,
        attestation: str | None = "TN-Validation-Passed-A",
        on_call_seconds: float = 0.0,
        ring_seconds: float = 0.0,
    ) -> None:
        """Describe the call; `run()` places it.

        keys: one entry per `<Gather>` ("1", "2024117#"; "" is silence; an
        entry "wait:9" answers a `<Gather>` heard while waiting in a queue).
        bridged_hangup: who ends a bridged call: "caller" (the Dial action is
        requested, its TwiML ignored) or "advisor" (the caller follows it).
        record_ending: "key" (press # and follow the Record action) or "hangup".
        hold_track_seconds: real seconds a `<Play>` in the waitUrl TwiML lasts before
        Twilio asks the waitUrl again (Twilio re-requests it only once the document
        runs out of verbs, and the hold music is a track minutes long); a REST update
        meanwhile still takes the caller out of the queue at once. 0 (the default)
        asks again after `wait_cycle_seconds`, as if the track were over at once:
        most tests rely on frequent hold cycles; a test that the desk does not
        (the on-call line, the voicemail offer) sets it long.
        attestation: the `StirVerstat` Twilio posts for the caller ID (SHAKEN/STIR;
        default full attestation), or None for a call that carried none.
        on_call_seconds: real seconds a bridged caller stays on the line watching
        the emulator (the call moved into a conference, colleagues dialed in or
        removed) before the talk ends as `bridged_hangup` says, and as long again
        once in a conference; 0 (the default) ends the talk at once in simulated
        time.
        ring_seconds: real seconds each phone a `<Dial>` rings before it does what
        the advisor policy says; a REST update of the caller's call meanwhile cuts
        the ring as Twilio does (the `<Dial>` action hears `canceled`, its TwiML is
        not executed, the update is followed). 0 (the default) rings in simulated
        time, with no REST update heard until the `<Dial>` is over.
        """
        if bridged_hangup not in ("caller", "advisor"):
            raise ValueError("bridged_hangup must be 'caller' or 'advisor'")
        if record_ending not in ("key", "hangup"):
            raise ValueError("record_ending must be 'key' or 'hangup'")
        self.transport = transport
        self.from_number = from_number
        self.to_number = to_number
        self.account_sid = account_sid
        self.call_sid = call_sid or new_sid("CA")
        self.keys: list[str] = list(keys) if keys is not None else []
        self.policy = AdvisorPolicy.coerce(advisor_policy)
        self.talk_seconds = talk_seconds
        self.start_url = self._public(start_url or incoming_path)
        self.status_url = None if status_path is None else self._public(status_path)
        self.direction = direction
        self.link = emulator_link
        self.wait_poll_interval = wait_poll_interval
        self.wait_cycle_seconds = wait_cycle_seconds
        self.hold_track_seconds = hold_track_seconds
        self.max_wait_seconds = max_wait_seconds
        self.on_event = on_event
        self.gather_input = gather_input
        self.advisor_gather_input = advisor_gather_input
        self.realtime = realtime
        self.post_status_twice = post_status_twice
        self.bridged_hangup = bridged_hangup
        self.record_seconds = record_seconds
        self.record_ending = record_ending
        self.enqueue_action_on_redirect = enqueue_action_on_redirect
        self.recording_base_url = recording_base_url.rstrip("/")
        self.extra_params = dict(extra_params or {})
        self.attestation = attestation
        self.on_call_seconds = on_call_seconds
        self.ring_seconds = ring_seconds
        self.result = CallResult(self.call_sid, from_number, to_number)
        self._started = 0.0
        self._sim = 0.0
        self._requests_sent = 0
        self._doc_url = self.start_url
        self._idle_docs = 0
        self._dials: dict[str, int] = {}
        self._bridged = False
        self._recorded = False
        self._gave_up = False
        self._call_status = "ringing"
        self._link_broken = False
        self._deferred: list[Fetch] = []
        self._leg_params: dict[str, str] = {}
        self._advisor = None
        self._room = None
        self._live_until = 0.0
        self._live_pauses = False
        self._stashed = None

    def run(self) -> CallResult:
        """Place the call and walk it to the end; the result also stays on `self.result`."""
        self._started = time.monotonic()
        self._link_call("register")
        fetch: Fetch | None = Fetch(self.start_url, "POST", {}, "call")
        try:
            while fetch is not None:
                fetch = self._apply_update(fetch)
                root = self._fetch_document(fetch)
                fetch = self._walk(root)
        except CallOver:
            pass
        finally:
            self._finish()
        return self.result

    def _finish(self) -> None:
        """End the call: the link, the status callback, the outcome."""
        result = self.result
        self._call_status = "completed"
        result.duration = max(1, int(round(self._sim)))
        # Twilio's record of the call says what its status callback says.
        self._link_call("end", result.duration)
        if self._bridged:
            result.outcome = "advisor"
        elif self._recorded:
            result.outcome = "voicemail"
        elif self._gave_up:
            result.outcome = "queue"
        else:
            result.outcome = "hangup"
        if self.status_url is not None:
            params = {
                "CallStatus": "completed",
                "CallDuration": str(result.duration),
                "Duration": str(math.ceil(result.duration / 60)),
                "Timestamp": format_datetime(datetime.now(UTC), usegmt=True),
                "CallbackSource": "call-progress-events",
            }
            for sequence in range(2 if self.post_status_twice else 1):
                params["SequenceNumber"] = str(sequence)
                answer = self._request("POST", self.status_url, params, "status")
                self._emit("status", "completed", self.status_url, "service", str(answer.status))
                if answer.status != 200:
                    self._note_error(f"status callback answered HTTP {answer.status}")
        result.real_seconds = time.monotonic() - self._started
