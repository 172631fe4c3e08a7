"""The Twilio side of a phone call: a driver that walks TwiML as Twilio does.

`Caller` places one inbound call on a service: it posts what Twilio posts
(signed with `X-Twilio-Signature`), executes the returned TwiML verb by verb,
follows every `action`, `url` and `waitUrl` (relative URLs resolve against the
document that held them), plays the advisor's phone on `<Dial><Number url>`,
waits in `<Enqueue>` until a REST redirect arrives through the emulator
(`caseline.twilio_emulator`), and ends with the status callback. It works over
Flask's test client (`FlaskTransport`) or real HTTP (`HttpTransport`), and
returns a `CallResult`: what the caller heard, how the call ended, each request
and how long it took.

Nothing here knows caseline's URLs except the two a phone number is
configured with: the Voice URL (`/voice/incoming`) and the status callback
(`/voice/status`). Time on the phone is simulated (no sleeping) except where a
test really waits: in a queue, for an advisor to be freed.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, NoReturn, Protocol
from urllib.parse import urlencode, urljoin, urlsplit

import requests
from twilio.request_validator import RequestValidator

from caseline.twilio_emulator import CallUpdate

DEFAULT_TO = "+18005550100"
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
API_VERSION = "2010-04-01"
APPLICATION_ERROR = "We are sorry, an application error has occurred. Goodbye."
ADVISOR_ACTIONS = ("answer", "no-answer", "busy", "failed", "voicemail")
OUTCOMES = ("advisor", "queue", "voicemail", "hangup")
DTMF = set("0123456789*#")
LOOP_GUARD = 50
WORDS_PER_SECOND = 2.5


def new_sid(prefix: str = "CA") -> str:
    """A Twilio-shaped sid: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def _with_query(url: str, params: Mapping[str, str]) -> str:
    """`url` with `params` appended to its query string (how Twilio sends GET)."""
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(list(params.items()))


def signature_headers(
    auth_token: str | None, url: str, params: Mapping[str, str]
) -> dict[str, str]:
    """The headers Twilio sends with a webhook: its signature (if a token) and user agent."""
    headers = {
        "User-Agent": "TwilioProxy/1.1",
        "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
    }
    if auth_token:
        validator = RequestValidator(auth_token)
        headers["X-Twilio-Signature"] = validator.compute_signature(url, dict(params))
    return headers


# -- transports ----------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    """What the service answered to one webhook."""

    status: int
    text: str
    elapsed: float
    content_type: str = ""


class Transport(Protocol):
    """How the simulated Twilio reaches the service."""

    base_url: str

    def request(self, method: str, url: str, params: Mapping[str, str]) -> Response:
        """Send one signed webhook (GET puts params in the query string)."""
        ...

    def post(self, url: str, params: Mapping[str, str]) -> Response:
        """Send one signed, form-encoded POST."""
        ...


class _BaseTransport:
    """URL resolution and signing shared by both transports."""

    base_url: str
    auth_token: str | None

    def absolute(self, url_or_path: str) -> str:
        """A full public URL: absolute URLs as they are, paths under `base_url`."""
        if urlsplit(url_or_path).scheme:
            return url_or_path
        return self.base_url.rstrip("/") + "/" + url_or_path.lstrip("/")

    def _prepare(
        self, method: str, url_or_path: str, params: Mapping[str, str]
    ) -> tuple[str, str, dict[str, str] | None, dict[str, str]]:
        """(method, signed URL, form body or None, headers) for one webhook."""
        method = method.upper()
        url = self.absolute(url_or_path)
        if method == "GET":
            url = _with_query(url, params)
            return method, url, None, signature_headers(self.auth_token, url, {})
        form = {k: str(v) for k, v in params.items()}
        return method, url, form, signature_headers(self.auth_token, url, form)

    def post(self, url: str, params: Mapping[str, str]) -> Response:
        """Send one signed, form-encoded POST."""
        return self.request("POST", url, params)

    def request(self, method: str, url: str, params: Mapping[str, str]) -> Response:
        """Send one signed webhook."""
        raise NotImplementedError


class HttpTransport(_BaseTransport):
    """Webhooks over real HTTP (a running `caseline serve`, gunicorn, a test server)."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 10,
        *,
        auth_token: str | None = None,
        public_base_url: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        """Send to `base_url`; sign over `public_base_url` (behind a proxy) or `base_url`."""
        self.base_url = (public_base_url or base_url).rstrip("/")
        self._wire_base = base_url.rstrip("/")
        self.timeout = timeout
        self.auth_token = auth_token
        self._session = session or requests.Session()

    def _wire_url(self, url: str) -> str:
        """Where to send a public URL (the same unless behind a simulated proxy)."""
        if self.base_url != self._wire_base and url.startswith(self.base_url):
            return self._wire_base + url[len(self.base_url) :]
        return url

    def request(self, method: str, url: str, params: Mapping[str, str]) -> Response:
        """Send one signed webhook; a network failure is status 0."""
        method, signed_url, form, headers = self._prepare(method, url, params)
        started = time.monotonic()
        try:
            answer = self._session.request(
                method,
                self._wire_url(signed_url),
                data=form,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return Response(0, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
        return Response(
            answer.status_code,
            answer.text,
            time.monotonic() - started,
            answer.headers.get("Content-Type", ""),
        )

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def __enter__(self) -> HttpTransport:
        """Use in a `with` block."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving a `with` block."""
        self.close()


class FlaskTransport(_BaseTransport):
    """Webhooks through a Flask test client; `base_url` is the public URL that is signed."""

    def __init__(
        self, client: Any, base_url: str = "http://caseline.test", *, auth_token: str | None = None
    ) -> None:
        """Post through `client` (a `app.test_client()`) as if from `base_url`."""
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.auth_token = auth_token

    def request(self, method: str, url: str, params: Mapping[str, str]) -> Response:
        """Send one signed webhook through the test client."""
        method, signed_url, form, headers = self._prepare(method, url, params)
        parts = urlsplit(signed_url)
        started = time.monotonic()
        answer = self.client.open(
            parts.path or "/",
            method=method,
            base_url=f"{parts.scheme}://{parts.netloc}",
            query_string=parts.query,
            data=form,
            headers=headers,
        )
        try:
            text = answer.get_data(as_text=True)
        finally:
            answer.close()
        return Response(
            answer.status_code,
            text,
            time.monotonic() - started,
            answer.headers.get("Content-Type", ""),
        )


# -- the advisor's phone -------------------------------------------------------


def _phone_key(number: str) -> str:
    """A number reduced to '+' and digits, for matching."""
    return "".join(ch for ch in number if ch.isdigit() or ch == "+")


@dataclass(frozen=True)
class AdvisorPolicy:
    """What each dialed phone does: answer, no-answer, busy, failed or voicemail.

    `by_number` maps a number to an action, or to a list of actions for its
    successive dials within one call (the last one repeats). `decide_fn(number,
    attempt)` gets the number and how many times it was dialed before in this
    call (0 the first time). "answer" presses `accept_key` at the whisper's
    `<Gather>`; "voicemail" picks up but presses nothing.
    """

    default: str = "answer"
    by_number: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    decide_fn: Callable[[str, int], str] | None = None
    accept_key: str = "1"

    def decide(self, number: str, attempt: int) -> str:
        """The action of `number` on its `attempt`-th dial (0-based) in this call."""
        if self.decide_fn is not None:
            action = self.decide_fn(number, attempt)
        else:
            action = self.default
            wanted = _phone_key(number)
            for key, value in self.by_number.items():
                if _phone_key(key) == wanted:
                    if isinstance(value, str):
                        action = value
                    elif value:
                        action = value[min(attempt, len(value) - 1)]
                    break
        if action not in ADVISOR_ACTIONS:
            raise ValueError(f"advisor action {action!r} is not one of {ADVISOR_ACTIONS}")
        return action

    @classmethod
    def coerce(
        cls,
        value: AdvisorPolicy
        | str
        | Mapping[str, str | Sequence[str]]
        | Callable[[str, int], str]
        | None,
    ) -> AdvisorPolicy:
        """A policy from a policy, an action for every phone, a mapping or a callable."""
        if value is None:
            return cls()
        if isinstance(value, AdvisorPolicy):
            return value
        if isinstance(value, str):
            if value not in ADVISOR_ACTIONS:
                raise ValueError(f"advisor action {value!r} is not one of {ADVISOR_ACTIONS}")
            return cls(default=value)
        if isinstance(value, Mapping):
            return cls(by_number=dict(value))
        if callable(value):
            return cls(decide_fn=value)
        raise TypeError(f"cannot make an AdvisorPolicy from {value!r}")


# -- the simulated queues (positions, for the waitUrl parameters) ----------------


class _QueueBoard:
    """Who waits in which simulated queue, across the Callers of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: dict[str, list[str]] = {}
        self._waits: dict[str, list[float]] = {}

    def enter(self, queue: str, call_sid: str) -> None:
        with self._lock:
            members = self._members.setdefault(queue, [])
            if call_sid not in members:
                members.append(call_sid)

    def leave(self, queue: str, call_sid: str, waited: float) -> None:
        with self._lock:
            members = self._members.get(queue, [])
            if call_sid in members:
                members.remove(call_sid)
                waits = self._waits.setdefault(queue, [])
                waits.append(waited)
                del waits[:-100]

    def position(self, queue: str, call_sid: str) -> tuple[int, int, int]:
        """(position 1-based, current size, average wait in seconds)."""
        with self._lock:
            members = self._members.get(queue, [])
            position = members.index(call_sid) + 1 if call_sid in members else 1
            waits = self._waits.get(queue, [])
            average = int(sum(waits) / len(waits)) if waits else 0
            return position, max(len(members), 1), average


QUEUES = _QueueBoard()


def queue_sid(name: str) -> str:
    """The QueueSid of a named queue (stable, like Twilio's)."""
    return "QU" + hashlib.md5(name.encode("utf-8")).hexdigest()  # noqa: S324 - an id, not security


# -- what a call produces --------------------------------------------------------


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


class _CallOver(Exception):
    """Unwinds the walk: the call has ended (hang-up, error, loop guard)."""


@dataclass(frozen=True)
class Gather:
    """A `<Gather>` the caller (or advisor) is asked, as shown to an interactive user."""

    texts: tuple[str, ...]
    action: str
    num_digits: int | None = None
    finish_on_key: str = "#"
    timeout: int = 5
    input: str = "dtmf"
    party: str = "caller"
    queue: str | None = None


@dataclass(frozen=True)
class _Fetch:
    """The next document to fetch (or, for a REST `Twiml` update, to run)."""

    url: str
    method: str = "POST"
    params: Mapping[str, str] = field(default_factory=dict)
    kind: str = "call"
    twiml: str | None = None


@dataclass
class _QueueStay:
    """One wait in one queue: what `<Enqueue>` said, and when the caller entered and left."""

    name: str
    sid: str
    wait_url: str | None
    wait_method: str
    action: str | None
    action_method: str
    entered: float = field(default_factory=time.monotonic)
    left: float | None = None

    def waited(self) -> float:
        """Seconds in the queue so far (or in all, once left)."""
        return self.left if self.left is not None else time.monotonic() - self.entered


class EmulatorLink(Protocol):
    """The simulator's line to the Twilio REST emulator (see `caseline.twilio_emulator`)."""

    def register(self, call_sid: str, *, from_: str = "", to: str = "") -> None:
        """The call is live."""
        ...

    def end(self, call_sid: str) -> None:
        """The call is over."""
        ...

    def take_update(self, call_sid: str) -> CallUpdate | None:
        """The next pending REST update for the call."""
        ...


def _int(value: str | None, default: int) -> int:
    """An integer attribute, or the default when missing or malformed."""
    try:
        return int(value) if value else default
    except ValueError:
        return default


def _text(element: ET.Element) -> str:
    """An element's text including nested SSML, whitespace collapsed."""
    return " ".join("".join(element.itertext()).split())


def _say_seconds(text: str) -> float:
    """Roughly how long a text takes to speak."""
    return max(1.0, len(text.split()) / WORDS_PER_SECOND)


class Caller:
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
    ) -> None:
        """Describe the call; `run()` places it.

        keys: one entry per `<Gather>` ("1", "2024117#"; "" is silence; an
        entry "wait:9" answers a `<Gather>` heard while waiting in a queue).
        bridged_hangup: who ends a bridged call: "caller" (the Dial action is
        requested, its TwiML ignored) or "advisor" (the caller follows it).
        record_ending: "key" (press # and follow the Record action) or "hangup".
        attestation: the `StirVerstat` Twilio posts for the caller ID (SHAKEN/STIR;
        default full attestation), or None for a call that carried none.
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
        self._deferred: list[_Fetch] = []

    def _public(self, url_or_path: str) -> str:
        """A full URL: absolute as it is, a path under the transport's base URL."""
        if urlsplit(url_or_path).scheme:
            return url_or_path
        return self.transport.base_url.rstrip("/") + "/" + url_or_path.lstrip("/")

    # -- running -----------------------------------------------------------------

    def run(self) -> CallResult:
        """Place the call and walk it to the end; the result also stays on `self.result`."""
        self._started = time.monotonic()
        self._link_call("register")
        fetch: _Fetch | None = _Fetch(self.start_url, "POST", {}, "call")
        try:
            while fetch is not None:
                fetch = self._apply_update(fetch)
                root = self._fetch_document(fetch)
                fetch = self._walk(root)
        except _CallOver:
            pass
        finally:
            self._finish()
        return self.result

    def _finish(self) -> None:
        """End the call: the link, the status callback, the outcome."""
        result = self.result
        self._call_status = "completed"
        self._link_call("end")
        result.duration = max(1, int(round(self._sim)))
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

    def _link_call(self, what: str) -> None:
        """Register or end the call at the emulator (a broken link is a warning, once)."""
        if self.link is None or self._link_broken:
            return
        try:
            if what == "register":
                self.link.register(self.call_sid, from_=self.from_number, to=self.to_number)
            else:
                self.link.end(self.call_sid)
        except Exception as exc:  # noqa: BLE001 - any link failure just disables redirects
            self._link_broken = True
            self._emit("warning", f"emulator link failed: {exc}", party="service")

    def _take_update(self) -> CallUpdate | None:
        """A pending REST update for this call, if the emulator has one."""
        if self.link is None or self._link_broken:
            return None
        try:
            return self.link.take_update(self.call_sid)
        except Exception as exc:  # noqa: BLE001
            self._link_broken = True
            self._emit("warning", f"emulator link failed: {exc}", party="service")
            return None

    def _apply_update(self, fetch: _Fetch) -> _Fetch:
        """Before each fetch: a pending REST update replaces the document (applied at once)."""
        update = self._take_update()
        if update is None:
            return fetch
        return self._follow_update(update)

    def _follow_update(self, update: CallUpdate) -> _Fetch:
        """The fetch a REST update leads to (or the end of the call)."""
        if update.hangup:
            self._emit("hangup", "the call was ended through the REST API", party="service")
            raise _CallOver
        self.result.redirected_at.append(time.monotonic() - self._started)
        self._idle_docs = 0
        if update.twiml is not None:
            self._emit("redirect", "TwiML from the REST API", self._doc_url, "service", "rest")
            return _Fetch(self._doc_url, "POST", {}, "redirect", twiml=update.twiml)
        url = urljoin(self._doc_url, update.url or "")
        self._emit("redirect", url, url, "service", "rest")
        return _Fetch(url, update.method or "POST", {}, "redirect")

    # -- requests ------------------------------------------------------------------

    def _call_params(self) -> dict[str, str]:
        """The standard parameters Twilio sends with every request of this call."""
        params = {
            "CallSid": self.call_sid,
            "AccountSid": self.account_sid,
            "From": self.from_number,
            "To": self.to_number,
            "Caller": self.from_number,
            "Called": self.to_number,
            "CallStatus": self._call_status,
            "Direction": self.direction,
            "ApiVersion": API_VERSION,
            "FromCountry": "US",
            "ToCountry": "US",
            "CallerCountry": "US",
            "CalledCountry": "US",
        }
        if self.attestation and self.direction == "inbound":
            params["StirVerstat"] = self.attestation
        params.update(self.extra_params)
        return params

    def _request(self, method: str, url: str, params: Mapping[str, str], kind: str) -> Response:
        """One webhook, with the call's standard parameters, recorded as a step."""
        full = {**self._call_params(), **params}
        answer = self.transport.request(method, url, full)
        self._requests_sent += 1
        if self._call_status == "ringing":
            self._call_status = "in-progress"
        self.result.steps.append(
            Step(kind, method.upper(), url, answer.status, answer.elapsed, full)
        )
        return answer

    def _leg_request(self, method: str, url: str, params: Mapping[str, str], kind: str) -> Response:
        """A webhook of another leg (the advisor's): no caller parameters added."""
        answer = self.transport.request(method, url, params)
        self.result.steps.append(
            Step(kind, method.upper(), url, answer.status, answer.elapsed, dict(params))
        )
        return answer

    def _parse(self, answer: Response, url: str, party: str = "caller") -> ET.Element:
        """The TwiML of an answer, or an application error that ends the call."""
        if answer.status != 200:
            detail = f"HTTP {answer.status} from {url}"
            if answer.status == 0:
                detail = f"cannot reach {url}: {answer.text}"
            self._fail(detail, url, party)
        try:
            root = ET.fromstring(answer.text)
        except ET.ParseError as exc:
            self._fail(f"unparseable TwiML from {url}: {exc}", url, party)
        if root.tag != "Response":
            self._fail(f"TwiML root is <{root.tag}>, not <Response>, from {url}", url, party)
        return root

    def _fetch_document(self, fetch: _Fetch) -> ET.Element:
        """Fetch (or take) the next document of the caller's leg."""
        self._idle_docs += 1
        if self._idle_docs > LOOP_GUARD:
            self._emit(
                "hangup", f"loop guard: {LOOP_GUARD} documents without progress", party="caller"
            )
            self._note_error(f"loop guard: {LOOP_GUARD} documents walked without progress")
            raise _CallOver
        if fetch.twiml is not None:
            answer = Response(200, fetch.twiml, 0.0)
        else:
            answer = self._request(fetch.method, fetch.url, fetch.params, fetch.kind)
        root = self._parse(answer, fetch.url)
        self._doc_url = fetch.url
        self._run_deferred()
        return root

    def _run_deferred(self) -> None:
        """Requests Twilio makes after the next one (recording status callbacks)."""
        deferred, self._deferred = self._deferred, []
        for fetch in deferred:
            self._leg_request(fetch.method, fetch.url, fetch.params, fetch.kind)

    # -- events ------------------------------------------------------------------

    def _emit(
        self, kind: str, text: str = "", url: str = "", party: str = "caller", detail: str = ""
    ) -> Event:
        """Record an event and tell the live listener."""
        event = Event(kind, text, url, time.monotonic() - self._started, party, detail)
        self.result.transcript.append(event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def _note_error(self, message: str) -> None:
        """Remember the first error of the call."""
        if self.result.error is None:
            self.result.error = message

    def _fail(self, message: str, url: str, party: str = "caller") -> NoReturn:
        """An application error: Twilio apologises and hangs up."""
        self._emit("error", message, url, party)
        self._note_error(message)
        raise _CallOver

    def _spend(self, seconds: float) -> None:
        """Simulated time passes on the phone (really, with `realtime`)."""
        self._sim += seconds
        if self.realtime and seconds > 0:
            time.sleep(seconds)

    def _hear(self, verb: ET.Element, party: str, detail: str = "") -> bool:
        """Say/Play/Pause: heard by `party`. False when the verb is not one of them."""
        loops = max(1, _int(verb.get("loop"), 1))
        if verb.tag == "Say":
            text = _text(verb)
            self._emit("say", text, party=party, detail=detail)
            self._spend(_say_seconds(text) * loops)
        elif verb.tag == "Play":
            url = (verb.text or "").strip()
            digits = verb.get("digits")
            self._emit("play", url or f"digits {digits}", url, party, detail)
            self._spend(5.0 * loops)
        elif verb.tag == "Pause":
            length = _int(verb.get("length"), 1)
            self._emit("pause", str(length), party=party, detail=detail)
            self._spend(length)
        else:
            return False
        return True

    # -- keys ----------------------------------------------------------------------

    def _next_entry(self, gather: Gather) -> str:
        """The caller's answer to a Gather: the script, then the interactive user."""
        in_queue = gather.queue is not None
        if self.keys:
            head = self.keys[0]
            if head.startswith("wait:"):
                if not in_queue:
                    return ""
                self.keys.pop(0)
                return head[len("wait:") :]
            if in_queue:
                return ""
            return self.keys.pop(0)
        if self.gather_input is not None:
            return self.gather_input(gather) or ""
        return ""

    @staticmethod
    def _digits(entry: str, gather: Gather) -> tuple[str, str]:
        """(Digits, FinishedOnKey) Twilio would post for a typed entry."""
        digits, finished = "", ""
        for ch in entry.strip():
            if ch not in DTMF:
                continue
            if gather.finish_on_key and ch in gather.finish_on_key:
                finished = ch
                break
            digits += ch
            if gather.num_digits and len(digits) >= gather.num_digits:
                break
        return digits, finished

    def _make_gather(self, verb: ET.Element, doc_url: str, party: str, queue: str | None) -> Gather:
        """The Gather's attributes, with Twilio's defaults."""
        num_digits = _int(verb.get("numDigits"), 0) or None
        return Gather(
            texts=tuple(_text(c) for c in verb if c.tag == "Say"),
            action=urljoin(doc_url, verb.get("action") or doc_url),
            num_digits=num_digits,
            finish_on_key=verb.get("finishOnKey", "#"),
            timeout=_int(verb.get("timeout"), 5),
            input=verb.get("input", "dtmf"),
            party=party,
            queue=queue,
        )

    def _gather(self, verb: ET.Element, doc_url: str, queue: str | None = None) -> _Fetch | None:
        """The caller's `<Gather>`: the fetch of its action, or None to fall through."""
        detail = f":{queue}" if queue is not None else ""
        for child in verb:
            if not self._hear(child, "caller", f"wait:{queue}" if queue is not None else ""):
                self._emit("warning", f"<{child.tag}> is not allowed in <Gather>", party="service")
        gather = self._make_gather(verb, doc_url, "caller", queue)
        method = verb.get("method", "POST")
        entry = self._next_entry(gather)
        params: dict[str, str] = {}
        if entry.startswith("say:") and "speech" in gather.input:
            speech = entry[len("say:") :].strip()
            if speech:
                params = {"SpeechResult": speech, "Confidence": "0.92"}
                self._emit("gather", speech, gather.action, "caller", f"speech{detail}")
        elif "dtmf" in gather.input:
            digits, finished = self._digits(entry, gather)
            if digits:
                params = {"Digits": digits, "FinishedOnKey": finished}
                self._emit("gather", digits, gather.action, "caller", f"keys{detail}")
        if params:
            self.result.keys_pressed.append(params.get("Digits") or params["SpeechResult"])
            self._idle_docs = 0
            self._spend(len(params.get("Digits", "x")) * 0.5)
            return _Fetch(gather.action, method, params, "gather")
        self._emit("gather", "", gather.action, "caller", f"timeout{detail}")
        self._spend(gather.timeout)
        if verb.get("actionOnEmptyResult", "false").lower() == "true":
            return _Fetch(gather.action, method, {}, "gather")
        return None

    # -- the walk ------------------------------------------------------------------

    def _walk(self, root: ET.Element) -> _Fetch | None:
        """Execute one document of the caller's leg: the next fetch, or the call ends."""
        doc_url = self._doc_url
        for verb in root:
            tag = verb.tag
            if self._hear(verb, "caller"):
                continue
            if tag == "Gather":
                fetch = self._gather(verb, doc_url)
                if fetch is not None:
                    return fetch
            elif tag == "Redirect":
                target = (verb.text or "").strip()
                if not target:
                    self._fail("<Redirect> without a URL", doc_url)
                url = urljoin(doc_url, target)
                self._emit("redirect", url, url, "service", "twiml")
                return _Fetch(url, verb.get("method", "POST"), {}, "redirect")
            elif tag == "Dial":
                fetch = self._dial(verb, doc_url)
                if fetch is not None:
                    return fetch
            elif tag == "Enqueue":
                fetch = self._enqueue(verb, doc_url)
                if fetch is not None:
                    return fetch
            elif tag == "Record":
                return self._record(verb, doc_url)
            elif tag in ("Hangup", "Reject"):
                reason = f"<{tag}>" + (f" ({verb.get('reason')})" if verb.get("reason") else "")
                self._emit("hangup", reason, doc_url, "service")
                raise _CallOver
            else:
                self._emit("warning", f"<{tag}> is not supported here; skipped", doc_url, "service")
        self._emit("hangup", "no more TwiML", doc_url, "service")
        raise _CallOver

    # -- Dial: the advisor's phone ---------------------------------------------------

    def _dial(self, verb: ET.Element, doc_url: str) -> _Fetch | None:
        """`<Dial>`: ring each number by the advisor policy; the action's fetch, or None."""
        action = verb.get("action")
        method = verb.get("method", "POST")
        timeout = _int(verb.get("timeout"), 30)
        caller_id = verb.get("callerId") or self.from_number
        targets = [c for c in verb if c.tag in ("Number", "Client", "Sip", "Queue", "Conference")]
        bare = (verb.text or "").strip()
        if not targets and not bare:
            self._fail("<Dial> with nothing to dial", doc_url)
        self._idle_docs = 0
        statuses: list[str] = []
        leg_sid = ""
        bridged_to: str | None = None
        whisper_seconds = 0.0
        extra: dict[str, str] = {}
        for target, number, url in self._dial_targets(targets, bare):
            leg_sid = new_sid("CA")
            if target == "Queue":
                self._emit("dial", number, party="service", detail="queue")
                extra["QueueSid"] = queue_sid(number)
                bridged_to = f"queue:{number}"
                break
            attempt = self._dials.get(number, 0)
            self._dials[number] = attempt + 1
            self.result.dialed.append(number)
            action_of_phone = self.policy.decide(number, attempt)
            self._emit("dial", number, party="advisor", detail=action_of_phone)
            if action_of_phone in ("no-answer", "busy", "failed"):
                self._spend(timeout if action_of_phone == "no-answer" else 2)
                statuses.append(action_of_phone)
                self.result.dial_results.append((number, action_of_phone))
                continue
            if url:
                leg_start = self._sim
                outcome = self._whisper(
                    urljoin(doc_url, url), number, leg_sid, caller_id, action_of_phone
                )
                whisper_seconds = self._sim - leg_start
            else:
                outcome = "bridged"
            self.result.dial_results.append((number, action_of_phone))
            if outcome == "bridged":
                bridged_to = number
                break
            statuses.append("completed")
        if bridged_to is not None:
            return self._after_bridge(bridged_to, leg_sid, action, method, doc_url, extra)
        if "completed" in statuses:
            status = "completed"
        elif "no-answer" in statuses:
            status = "no-answer"
        elif "busy" in statuses:
            status = "busy"
        else:
            status = "failed"
        params = {"DialCallStatus": status, "DialCallSid": leg_sid}
        if status == "completed":
            params.update(
                {"DialCallDuration": str(max(1, int(whisper_seconds))), "DialBridged": "false"}
            )
        if action:
            return _Fetch(urljoin(doc_url, action), method, params, "dial-action")
        return None

    @staticmethod
    def _dial_targets(targets: list[ET.Element], bare: str) -> list[tuple[str, str, str | None]]:
        """(noun, number or name, whisper url) for each thing a Dial rings."""
        if not targets:
            return [("Number", bare, None)]
        return [(t.tag, (t.text or "").strip(), t.get("url")) for t in targets]

    def _after_bridge(
        self,
        answered_by: str,
        leg_sid: str,
        action: str | None,
        method: str,
        doc_url: str,
        extra: Mapping[str, str],
    ) -> _Fetch | None:
        """The caller talks; then whoever hangs up first ends the bridge."""
        self._bridged = True
        self.result.answered_by = answered_by
        self._emit("connect", answered_by, party="caller", detail=str(self.talk_seconds))
        self._spend(self.talk_seconds)
        params = {
            "DialCallStatus": "completed",
            "DialCallSid": leg_sid,
            "DialCallDuration": str(self.talk_seconds),
            "DialBridged": "true",
            **extra,
        }
        if self.bridged_hangup == "caller":
            self._emit("hangup", "after talking", party="caller")
            self._call_status = "completed"
            if action:
                url = urljoin(doc_url, action)
                answer = self._request(method, url, params, "dial-action")
                if answer.status != 200:
                    self._emit("error", f"HTTP {answer.status} from {url}", url, "service")
                    self._note_error(f"HTTP {answer.status} from {url}")
            raise _CallOver
        self._emit("hangup", "after talking", party="advisor")
        if action:
            return _Fetch(urljoin(doc_url, action), method, params, "dial-action")
        return None

    def _whisper(
        self, url: str, number: str, leg_sid: str, caller_id: str, phone_action: str
    ) -> str:
        """Walk the advisor's leg (`<Number url>`): "bridged", "hangup" or "error"."""
        self._emit("whisper", number, url, "advisor")
        base = {
            "CallSid": leg_sid,
            "ParentCallSid": self.call_sid,
            "AccountSid": self.account_sid,
            "From": caller_id,
            "To": number,
            "Caller": caller_id,
            "Called": number,
            "CallStatus": "in-progress",
            "Direction": "outbound-dial",
            "ApiVersion": API_VERSION,
        }
        fetch: _Fetch | None = _Fetch(url, "POST", {}, "whisper")
        hops = 0
        while fetch is not None:
            hops += 1
            if hops > 20:
                self._emit("hangup", "loop guard on the advisor's leg", party="advisor")
                self._note_error("loop guard on the advisor's leg")
                return "hangup"
            answer = self._leg_request(fetch.method, fetch.url, {**base, **fetch.params}, "whisper")
            try:
                root = self._parse(answer, fetch.url, "advisor")
            except _CallOver:
                return "error"
            fetch = None
            for verb in root:
                if self._hear(verb, "advisor"):
                    continue
                if verb.tag == "Gather":
                    fetch, done = self._advisor_gather(verb, url, phone_action)
                    if done:
                        break
                elif verb.tag == "Redirect":
                    target = urljoin(url, (verb.text or "").strip())
                    fetch = _Fetch(target, verb.get("method", "POST"), {}, "whisper")
                    break
                elif verb.tag in ("Hangup", "Reject"):
                    self._emit("hangup", f"<{verb.tag}> on the advisor's leg", party="advisor")
                    return "hangup"
                else:
                    self._emit(
                        "warning", f"<{verb.tag}> is not allowed in a <Number url>", party="service"
                    )
            if fetch is not None:
                url = fetch.url
        return "bridged"

    def _advisor_gather(
        self, verb: ET.Element, doc_url: str, phone_action: str
    ) -> tuple[_Fetch | None, bool]:
        """The advisor's `<Gather>` in the whisper: (next fetch, whether the document is left)."""
        for child in verb:
            self._hear(child, "advisor")
        gather = self._make_gather(verb, doc_url, "advisor", None)
        method = verb.get("method", "POST")
        if phone_action == "voicemail":
            key = ""
        elif self.advisor_gather_input is not None:
            key = self.advisor_gather_input(gather) or ""
        else:
            key = self.policy.accept_key
        digits, finished = self._digits(key, gather)
        if digits:
            self._emit("gather", digits, gather.action, "advisor", "keys")
            return _Fetch(
                gather.action, method, {"Digits": digits, "FinishedOnKey": finished}
            ), True
        self._emit("gather", "", gather.action, "advisor", "timeout")
        self._spend(gather.timeout)
        if verb.get("actionOnEmptyResult", "false").lower() == "true":
            return _Fetch(gather.action, method, {}), True
        return None, False

    # -- Enqueue: waiting --------------------------------------------------------

    def _enqueue(self, verb: ET.Element, doc_url: str) -> _Fetch | None:
        """`<Enqueue>`: wait, re-requesting the waitUrl, until leave, redirect or hang-up."""
        name = (verb.text or "").strip()
        if not name:
            self._fail("<Enqueue> without a queue name", doc_url)
        action = verb.get("action")
        stay = _QueueStay(
            name=name,
            sid=queue_sid(name),
            wait_url=urljoin(doc_url, verb.get("waitUrl", "")) if verb.get("waitUrl") else None,
            wait_method=verb.get("waitUrlMethod", "POST"),
            action=urljoin(doc_url, action) if action else None,
            action_method=verb.get("method", "POST"),
        )
        self.result.queued = True
        self.result.queues.append(name)
        self._idle_docs = 0
        self._emit("enqueue", name, doc_url, "caller")
        QUEUES.enter(name, self.call_sid)
        try:
            return self._wait_in_queue(stay)
        except KeyboardInterrupt:
            # Ctrl-C in `caseline call`: the waiting caller hangs up, as a real one would.
            self._gave_up = True
            self._emit("hangup", "interrupted while waiting", party="caller")
            self._dequeue(stay, "hangup", post=True)
            raise
        finally:
            self._dequeue(stay, "error", post=False)

    def _dequeue(self, stay: _QueueStay, reason: str, *, post: bool) -> dict[str, str]:
        """Leave the queue (once); post the Enqueue action when `post` (its TwiML ignored)."""
        if stay.left is None:
            stay.left = stay.waited()
            QUEUES.leave(stay.name, self.call_sid, stay.left)
            self.result.queue_seconds += stay.left
            self._sim += stay.left
        params = {"QueueResult": reason, "QueueSid": stay.sid, "QueueTime": str(int(stay.left))}
        if post and stay.action:
            if reason == "hangup":
                self._call_status = "completed"
            self._request(stay.action_method, stay.action, params, "enqueue-action")
        return params

    def _wait_in_queue(self, stay: _QueueStay) -> _Fetch | None:
        """The waiting loop of `<Enqueue>`: the next fetch, None to go on, or the call ends."""
        next_cycle = time.monotonic()
        while True:
            update = self._take_update()
            if update is not None:
                reason = "hangup" if update.hangup else "redirected"
                post = update.hangup or self.enqueue_action_on_redirect
                self._dequeue(stay, reason, post=post)
                return self._follow_update(update)
            if stay.waited() >= self.max_wait_seconds:
                self._gave_up = True
                waited = int(stay.waited())
                self._emit("hangup", f"gives up after {waited}s in queue", party="caller")
                self._dequeue(stay, "hangup", post=True)
                raise _CallOver
            if stay.wait_url and time.monotonic() >= next_cycle:
                next_cycle = time.monotonic() + self.wait_cycle_seconds
                # The wait music plays during the (real) wait, already counted on dequeue.
                simulated = self._sim
                left = self._wait_cycle(stay)
                self._sim = simulated
                if isinstance(left, CallUpdate):
                    self._dequeue(stay, "redirected", post=self.enqueue_action_on_redirect)
                    return self._follow_update(left)
                if left == "leave":
                    params = self._dequeue(stay, "leave", post=False)
                    self._emit("leave", stay.name, party="caller")
                    if stay.action:
                        return _Fetch(stay.action, stay.action_method, params, "enqueue-action")
                    return None
                if left == "hangup":
                    self._dequeue(stay, "hangup", post=True)
                    raise _CallOver
            time.sleep(self.wait_poll_interval)

    def _wait_cycle(self, stay: _QueueStay) -> str | CallUpdate:
        """One pass of the waitUrl TwiML: "again", "leave", "hangup" or a REST update."""
        name, waited = stay.name, int(stay.waited())
        position, size, average = QUEUES.position(name, self.call_sid)
        queue_params = {
            "QueueSid": stay.sid,
            "QueuePosition": str(position),
            "QueueTime": str(waited),
            "AvgQueueTime": str(average),
            "CurrentQueueSize": str(size),
            "MaxQueueSize": "1000",
        }
        detail = f"wait:{name}"
        url = stay.wait_url or ""
        self._emit("wait", name, url, "caller", f"position {position}, {waited}s")
        fetch: _Fetch | None = _Fetch(url, stay.wait_method, {}, "wait")
        hops = 0
        while fetch is not None:
            hops += 1
            if hops > 1:
                update = self._take_update()
                if update is not None:
                    return update
            if hops > LOOP_GUARD:
                self._fail("loop guard in the waitUrl TwiML", url)
            answer = self._request(
                fetch.method, fetch.url, {**queue_params, **fetch.params}, "wait"
            )
            root = self._parse(answer, fetch.url)
            doc_url = fetch.url
            fetch = None
            for verb in root:
                if self._hear(verb, "caller", detail):
                    continue
                if verb.tag == "Gather":
                    fetch = self._gather(verb, doc_url, queue=name)
                    if fetch is not None:
                        fetch = _Fetch(fetch.url, fetch.method, fetch.params, "wait-gather")
                        break
                elif verb.tag == "Redirect":
                    target = urljoin(doc_url, (verb.text or "").strip())
                    fetch = _Fetch(target, verb.get("method", "POST"), {}, "wait")
                    break
                elif verb.tag == "Leave":
                    return "leave"
                elif verb.tag == "Hangup":
                    self._emit("hangup", "<Hangup> while waiting", doc_url, "service")
                    return "hangup"
                else:
                    self._emit(
                        "warning",
                        f"<{verb.tag}> is not allowed in waitUrl TwiML",
                        doc_url,
                        "service",
                    )
        return "again"

    # -- Record ------------------------------------------------------------------

    def _record(self, verb: ET.Element, doc_url: str) -> _Fetch | None:
        """`<Record>`: the caller leaves a message; its action's fetch."""
        action = urljoin(doc_url, verb.get("action") or doc_url)
        method = verb.get("method", "POST")
        seconds = max(1, min(self.record_seconds, _int(verb.get("maxLength"), 3600)))
        recording_sid = new_sid("RE")
        recording_url = f"{self.recording_base_url}/recordings/{recording_sid}"
        self._recorded = True
        self._idle_docs = 0
        self.result.recording_url = recording_url
        self._emit("record", str(seconds), recording_url, "caller")
        self._spend(seconds)
        params = {
            "RecordingUrl": recording_url,
            "RecordingSid": recording_sid,
            "RecordingDuration": str(seconds),
            "Digits": "#" if self.record_ending == "key" else "hangup",
        }
        callback = verb.get("recordingStatusCallback")
        if callback:
            self._deferred.append(
                _Fetch(
                    urljoin(doc_url, callback),
                    verb.get("recordingStatusCallbackMethod", "POST"),
                    {
                        "AccountSid": self.account_sid,
                        "CallSid": self.call_sid,
                        "RecordingSid": recording_sid,
                        "RecordingUrl": recording_url,
                        "RecordingStatus": "completed",
                        "RecordingDuration": str(seconds),
                        "RecordingChannels": "1",
                        "RecordingSource": "RecordVerb",
                    },
                    "recording-status",
                )
            )
        if self.record_ending == "hangup":
            self._emit("hangup", "after the message", party="caller")
            self._call_status = "completed"
            self._request(method, action, params, "record")
            self._run_deferred()
            raise _CallOver
        return _Fetch(action, method, params, "record")


# -- rendering -------------------------------------------------------------------


DIAL_WORDS = {
    "answer": "advisor picks up",
    "voicemail": "voicemail picks up",
    "no-answer": "no answer",
    "busy": "busy",
    "failed": "call failed",
    "queue": "dequeuing",
}


class TranscriptPrinter:
    """Turns events into lines of what the caller hears (for live output and transcripts).

    While waiting in a queue, a line already shown during this wait is not
    repeated, so a position announcement shows each time it changes.
    """

    def __init__(self) -> None:
        """Start with no queue stay."""
        self._seen_in_queue: set[str] = set()

    def lines(self, event: Event) -> list[str]:
        """The lines one event shows (often one, sometimes none)."""
        kind, text, party, detail = event.kind, event.text, event.party, event.detail
        queue = detail[len("wait:") :] if detail.startswith("wait:") else None
        if kind in ("enqueue", "leave", "redirect", "hangup", "connect"):
            self._seen_in_queue.clear()
        indent = "  " if party == "advisor" else ""
        if kind == "say":
            if queue is not None:
                return self._once(f'waiting in queue "{queue}": "{text}"')
            return [f'{indent}{party} hears: "{text}"']
        if kind == "play":
            if queue is not None:
                return self._once(f'waiting in queue "{queue}": (audio {text})')
            return [f"{indent}{party} hears audio: {text}"]
        if kind == "pause":
            return [] if queue is not None else [f"{indent}{party} hears silence ({text}s)"]
        if kind == "gather":
            return self._gather_lines(event, indent)
        if kind == "dial":
            if detail == "queue":
                return [f'dialing queue "{text}"']
            return [f"ringing {text} ... {DIAL_WORDS.get(detail, detail)}"]
        if kind == "whisper":
            return []
        if kind == "connect":
            return [f"connected to {text} (talking {detail}s)"]
        if kind == "enqueue":
            return [f'waiting in queue "{text}"']
        if kind == "wait":
            return []
        if kind == "leave":
            return [f'caller leaves queue "{text}"']
        if kind == "redirect":
            return [f"call redirected by the REST API to {text}"] if detail == "rest" else []
        if kind == "record":
            return [f"caller leaves a voicemail ({text}s) -> {event.url}"]
        if kind == "hangup":
            who = {"caller": "caller hangs up", "advisor": "  advisor's phone hangs up"}.get(
                party, "call ends"
            )
            return [f"{who} ({text})" if text else who]
        if kind == "error":
            return [f'caller hears: "{APPLICATION_ERROR}" ({text})']
        if kind == "warning":
            return [f"warning: {text}"]
        if kind == "status":
            return [f"status callback: CallStatus={text} (HTTP {detail})"]
        return [f"{kind}: {text}"]

    def _gather_lines(self, event: Event, indent: str) -> list[str]:
        """Lines for a key press (or silence)."""
        waiting = ":" in event.detail
        if event.party == "advisor":
            if event.text:
                return [f"  advisor presses {event.text} (accept)"]
            return ["  advisor presses nothing (no one accepts)"]
        who = "waiting caller" if waiting else "caller"
        if event.detail.startswith("speech"):
            return [f'{who} says: "{event.text}"']
        if event.text:
            return [f"{who} presses: {event.text}"]
        if waiting:
            return []
        return [f"{indent}caller presses nothing (timeout)"]

    def _once(self, line: str) -> list[str]:
        """The line, unless already shown during this queue stay."""
        if line in self._seen_in_queue:
            return []
        self._seen_in_queue.add(line)
        return [line]


def format_transcript(result: CallResult) -> str:
    """The call as what the caller hears and does, one line per moment."""
    printer = TranscriptPrinter()
    return "\n".join(line for event in result.transcript for line in printer.lines(event))


def _short(url: str) -> str:
    """A URL's path and query, trimmed for a summary table."""
    parts = urlsplit(url)
    text = parts.path + (f"?{parts.query}" if parts.query else "")
    return text if len(text) <= 60 else text[:57] + "..."


def _runs(steps: list[Step]) -> list[list[Step]]:
    """Consecutive steps grouped when they repeat (a waitUrl polled while waiting)."""
    runs: list[list[Step]] = []
    for step in steps:
        last = runs[-1][0] if runs else None
        if last and (last.kind, last.method, last.url, last.status) == (
            step.kind,
            step.method,
            step.url,
            step.status,
        ):
            runs[-1].append(step)
        else:
            runs.append([step])
    return runs


def format_summary(result: CallResult) -> str:
    """Outcome, the path taken, who answered, and each request's time."""
    path: list[str] = []
    for event in result.transcript:
        if event.kind == "gather" and event.text:
            who = "advisor pressed" if event.party == "advisor" else "pressed"
            path.append(f"{who} {event.text}")
        elif event.kind == "dial":
            path.append(f"rang {event.text} ({event.detail})")
        elif event.kind == "connect":
            path.append(f"connected {event.text}")
        elif event.kind == "enqueue":
            path.append(f"queued in {event.text}")
        elif event.kind == "redirect" and event.detail == "rest":
            path.append("redirected")
        elif event.kind == "leave":
            path.append("left the queue")
        elif event.kind == "record":
            path.append("voicemail")
        elif event.kind == "error":
            path.append("application error")
    lines = [
        f"call {result.call_sid} from {result.from_number} to {result.to_number}",
        f"outcome: {result.outcome}"
        + (f" (answered by {result.answered_by})" if result.answered_by else "")
        + (f"; error: {result.error}" if result.error else ""),
        "path: " + (" -> ".join(path) if path else "(nothing)"),
    ]
    if result.dialed:
        lines.append("dialed: " + ", ".join(f"{n} ({a})" for n, a in result.dial_results))
    if result.queued:
        lines.append(f"waited in queue: {result.queue_seconds:.1f}s ({', '.join(result.queues)})")
    lines.append(f"requests ({len(result.steps)}):")
    for run in _runs(result.steps):
        step, times = run[0], [s.elapsed * 1000 for s in run]
        timing = f"{times[0]:8.1f} ms"
        if len(run) > 1:
            timing += f"  (x{len(run)}, mean {sum(times) / len(times):.1f}, max {max(times):.1f})"
        lines.append(
            f"  {step.kind:<16} {step.method:<4} {_short(step.url):<60} {step.status:>3} {timing}"
        )
    lines.append(f"took {result.real_seconds:.2f}s real, {result.duration}s of simulated call time")
    return "\n".join(lines)
