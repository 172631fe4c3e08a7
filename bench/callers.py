"""Virtual callers: Twilio's side of many calls at once, on one event loop.

A `VirtualCaller` walks TwiML the way `twilio_side.Caller` (the tests'
Twilio-side driver) does, and posts what it posts: signed form posts with the
call's standard parameters, each `<Gather>` answered with the script's next
keys (silence falls through to the next verb), `<Redirect>` followed, the
advisor's leg played on `<Dial><Number url>` (the whisper's `<Gather>`
answered with the accept key), `<Enqueue>` waited in with its waitUrl
re-requested once its TwiML has "played", `<Record>` left, and the status
callback posted at the end.

Why a second walker and not `Caller` itself: `Caller` is synchronous (one
blocking thread per call, `requests` underneath), keeps a full transcript of
every call and polls the REST emulator while waiting. One core has to carry
the generator, Twilio's REST side and up to a thousand waiting callers, so
this walker is asynchronous, keeps counters instead of transcripts, and is
told of a REST redirect the moment it lands. `Caller` still places every
scenario once before each run (`bench.run` "smoke"), which checks that this
walker and the tests' driver agree on every scenario's outcome and request
count.

`TwilioSide` is Twilio's REST API: the project's own emulator
(`twilio_side.TwilioEmulator`, the same class `python -m twilio_side` serves)
hosted on this event loop, so a redirect wakes the waiting caller at once
instead of being polled for.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import xml.etree.ElementTree as ET
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlencode, urljoin, urlsplit

from bench.wire import HttpError, HttpPool, serve_wsgi
from twilio_side import (
    API_VERSION,
    DEFAULT_TO,
    WORDS_PER_SECOND,
    CallUpdate,
    TwilioEmulator,
    new_sid,
    queue_sid,
    signature_headers,
)

DTMF = set("0123456789*#")
LOOP_GUARD = 60
FORM = "application/x-www-form-urlencoded"


class CallOver(Exception):
    """Unwinds a walk: the call has ended."""


# -- Twilio's REST side --------------------------------------------------------------


class TwilioSide:
    """The REST emulator on this loop, and the waiting callers it wakes."""

    def __init__(self, account_sid: str, auth_token: str, latency: float = 0.0) -> None:
        """An emulator that checks caseline's credentials, as Twilio does, and answers
        after `latency` seconds (Twilio's API is ~0.1-0.3 s away from most servers)."""
        self.latency = latency
        self.emulator = TwilioEmulator(account_sid=account_sid, auth_token=auth_token)
        self._events: dict[str, asyncio.Event] = {}
        self.redirects: list[tuple[float, str]] = []
        self.server: asyncio.Server | None = None
        self.url = ""

    async def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1; the base URL for TWILIO_API_URL."""
        self.server = await serve_wsgi(self.emulator.wsgi_app, port=port, after=self._after,
                                       delay=self.latency)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self.url

    def _after(self, method: str, path: str) -> None:
        """After a REST POST on a call: note it and wake that call's walker."""
        if method != "POST" or not path.endswith(".json"):
            return
        sid = path.rsplit("/", 1)[-1][: -len(".json")]
        if not sid.startswith("CA"):
            return
        self.redirects.append((time.monotonic(), sid))
        event = self._events.get(sid)
        if event is not None:
            event.set()

    def register(self, sid: str, from_: str, to: str) -> None:
        """The call is live (REST updates to it succeed)."""
        self.emulator.register_call(sid, from_=from_, to=to)

    def end(self, sid: str) -> None:
        """The call is over (REST updates to it fail, as on Twilio)."""
        self.emulator.end_call(sid)
        self._events.pop(sid, None)

    def take(self, sid: str) -> CallUpdate | None:
        """The call's next pending REST update."""
        return self.emulator.take_update(sid)

    async def wait_update(self, sid: str, seconds: float) -> CallUpdate | None:
        """Wait up to `seconds` for a REST update of the call."""
        update = self.take(sid)
        if update is not None:
            return update
        event = self._events.setdefault(sid, asyncio.Event())
        event.clear()
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            return None
        return self.take(sid)

    def reset(self) -> None:
        """Forget calls and requests between phases (the emulator keeps every one)."""
        self.emulator.reset()
        self.redirects.clear()

    def close(self) -> None:
        """Stop listening."""
        if self.server is not None:
            self.server.close()


# -- the mix ---------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One kind of call in the mix: who calls, what they press, how it should end."""

    name: str
    weight: float
    from_number: str  # "" = a fresh unknown number per call
    keys: tuple[str, ...]
    expect_open: str  # outcome in business hours
    expect_closed: str  # outcome outside them

    def expect(self, open_now: bool) -> str:
        """The outcome this scenario should have now."""
        return self.expect_open if open_now else self.expect_closed


# Demo directory (demo/directory.json): hosted districts D100, D200, D400.
MIX: tuple[Scenario, ...] = (
    Scenario("8 outage, hosted contact", 30, "+16125550101", ("8",), "advisor", "advisor"),
    Scenario("8 outage, hosted contact 2", 4, "+12185550131", ("8",), "advisor", "advisor"),
    Scenario("8 outage, not hosted", 6, "+15075550141", ("8",), "advisor", "voicemail"),
    Scenario("1 case (owner A7)", 18, "+16125550101", ("1", "2024117#"), "advisor", "voicemail"),
    Scenario("1 case (owner A3, team)", 6, "+17635550111", ("1", "2024128#"), "advisor",
             "voicemail"),
    Scenario("1 case (owner A10)", 6, "+12185550131", ("1", "2024111#"), "advisor", "voicemail"),
    Scenario("2 new case", 8, "+19525550121", ("2",), "advisor", "voicemail"),
    Scenario("6 add-on: fees", 4, "+17635550112", ("6", "2"), "advisor", "voicemail"),
    Scenario("6 add-on: food service", 4, "+13205550151", ("6", "1"), "advisor", "voicemail"),
    Scenario("unknown number, 8", 4, "", ("8", "5004#", "4321#"), "advisor", "advisor"),
    Scenario("unknown number, 1 + ID/PIN", 3, "", ("1", "5001#", "2468#", "2024117#"),
             "advisor", "voicemail"),
    Scenario("bad key, then 8", 3, "+16125550102", ("9", "8"), "advisor", "advisor"),
    Scenario("bad case number, then right", 2, "+16125550103", ("1", "9999999#", "2024117#"),
             "advisor", "voicemail"),
    Scenario("three bad keys", 2, "+17635550111", ("5", "0", "7"), "hangup", "hangup"),
)


def unknown_number(rng: random.Random) -> str:
    """A real-shaped number that is no contact's (the directory's are 555-01xx)."""
    return f"+1651555{rng.randint(2000, 9999)}"


# -- what the generator records ---------------------------------------------------


@dataclass
class Recorder:
    """Every webhook's end time and latency, every call's outcome."""

    done_at: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # the webhook's path
    errors: list[tuple[float, str]] = field(default_factory=list)
    # (when, scenario, outcome, webhooks)
    calls: list[tuple[float, str, str, int]] = field(default_factory=list)
    flow_errors: list[tuple[float, str]] = field(default_factory=list)

    def request(self, path: str, elapsed: float) -> None:
        """A webhook (to `path`) answered 200 with TwiML."""
        self.done_at.append(time.monotonic())
        self.latency.append(elapsed)
        self.kinds.append(path)

    def error(self, message: str) -> None:
        """A webhook failed (non-200, unparseable, refused, timed out)."""
        self.errors.append((time.monotonic(), message))

    def call(self, scenario: str, outcome: str, requests: int, error: str | None) -> None:
        """A call ended (status callback answered)."""
        now = time.monotonic()
        self.calls.append((now, scenario, outcome, requests))
        if error:
            self.flow_errors.append((now, f"{scenario}: {error}"))

    def clear(self) -> None:
        """Forget everything."""
        for items in (self.done_at, self.latency, self.kinds, self.errors, self.calls,
                      self.flow_errors):
            items.clear()


class Pacer:
    """Hands out send times at a fixed rate (requests/s), shared by all callers."""

    def __init__(self, rate: float) -> None:
        """`rate` requests per second from now."""
        self.interval = 1.0 / rate
        self.next_at = time.monotonic()

    async def slot(self) -> None:
        """Wait for the next free send time."""
        at = self.next_at = max(self.next_at + self.interval, time.monotonic() - 0.05)
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


# -- one call ---------------------------------------------------------------------


@dataclass
class Net:
    """How virtual callers reach the service under test."""

    pool: HttpPool
    public_base: str
    auth_token: str
    account_sid: str
    side: TwilioSide
    recorder: Recorder
    pacer: Pacer | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class _Fetch:
    url: str
    params: dict[str, str] = field(default_factory=dict)
    kind: str = "call"


class VirtualCaller:
    """One inbound call, walked as Twilio walks it, asynchronously."""

    def __init__(
        self,
        net: Net,
        scenario: Scenario,
        from_number: str,
        keys: Sequence[str],
        *,
        accept_key: str = "1",
        talk_seconds: int = 30,
        wait_scale: float = 0.1,
        max_wait: float = 60.0,
        start_path: str = "/voice/incoming",
        status_path: str = "/voice/status",
        queues: QueueBoard | None = None,
    ) -> None:
        """Describe the call; `run()` places it."""
        self.net, self.scenario = net, scenario
        self.from_number = from_number
        self.keys = deque(keys)
        self.accept_key = accept_key
        self.talk_seconds = talk_seconds
        self.wait_scale, self.max_wait = wait_scale, max_wait
        self.sid = new_sid("CA")
        base = net.public_base.rstrip("/")
        self.start_url, self.status_url = base + start_path, base + status_path
        self.queues = queues
        self.status = "ringing"
        self.sim = 0.0
        self.requests = 0
        self.bridged = self.recorded = self.gave_up = False
        self.answered_by = ""
        self.error: str | None = None
        self.waited = 0.0
        self.doc_url = self.start_url
        self._params = {
            "CallSid": self.sid, "AccountSid": net.account_sid, "From": from_number,
            "To": DEFAULT_TO, "Caller": from_number, "Called": DEFAULT_TO,
            "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": API_VERSION,
            "FromCountry": "US", "ToCountry": "US", "CallerCountry": "US", "CalledCountry": "US",
            # Full SHAKEN/STIR attestation, as `twilio_side.Caller` posts by default: a
            # contact's number identifies them (CASELINE_CALLER_ID_TRUST=attested).
            "StirVerstat": "TN-Validation-Passed-A",
        }

    # -- running -------------------------------------------------------------

    async def run(self) -> str:
        """Place the call, walk it to the end, post the status callback; the outcome."""
        side = self.net.side
        side.register(self.sid, self.from_number, DEFAULT_TO)
        fetch: _Fetch | None = _Fetch(self.start_url, {}, "incoming")
        docs = 0
        try:
            while fetch is not None:
                update = side.take(self.sid)
                if update is not None:
                    fetch = self._follow(update)
                docs += 1
                if docs > LOOP_GUARD:
                    self._fail("loop guard: too many documents")
                root = await self._document(fetch)
                fetch = await self._walk(root)
        except CallOver:
            pass
        finally:
            outcome = await self._finish()
        return outcome

    async def _finish(self) -> str:
        """The status callback; the outcome (advisor, voicemail, queue, hangup)."""
        self.status = "completed"
        self.net.side.end(self.sid)
        outcome = ("advisor" if self.bridged else "voicemail" if self.recorded
                   else "queue" if self.gave_up else "hangup")
        duration = max(1, round(self.sim))
        params = {
            "CallStatus": "completed", "CallDuration": str(duration),
            "Duration": str(-(-duration // 60)),
            "Timestamp": format_datetime(datetime.now(UTC), usegmt=True),
            "CallbackSource": "call-progress-events", "SequenceNumber": "0",
        }
        with contextlib.suppress(CallOver):
            await self._post(self.status_url, params, "status")
        return outcome

    # -- requests --------------------------------------------------------------

    async def _post(
        self, url: str, params: dict[str, str], kind: str, *, leg: bool = False
    ) -> ET.Element:
        """One signed webhook of this call (or of the advisor's leg): its TwiML root."""
        net = self.net
        if leg:
            form = params
        else:
            self._params["CallStatus"] = self.status
            form = {**self._params, **params}
        headers = signature_headers(net.auth_token, url, form)
        headers["Content-Type"] = FORM
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        if net.pacer is not None:
            await net.pacer.slot()
        self.requests += 1
        try:
            status, body, elapsed = await net.pool.request(
                "POST", target, headers.items(), urlencode(form).encode()
            )
        except (HttpError, OSError, TimeoutError) as exc:
            net.recorder.error(f"{kind} {parts.path}: {type(exc).__name__} {exc}")
            self._fail(f"{kind} {parts.path}: {type(exc).__name__}")
        if self.status == "ringing":
            self.status = "in-progress"
        if status != 200:
            net.recorder.error(f"{kind} {parts.path}: HTTP {status}")
            self._fail(f"HTTP {status} from {parts.path}")
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            net.recorder.error(f"{kind} {parts.path}: unparseable TwiML")
            self._fail(f"unparseable TwiML from {parts.path}")
        if root.tag != "Response":
            net.recorder.error(f"{kind} {parts.path}: root <{root.tag}>")
            self._fail(f"TwiML root <{root.tag}> from {parts.path}")
        net.recorder.request(parts.path, elapsed)
        return root

    async def _document(self, fetch: _Fetch) -> ET.Element:
        """Fetch the next document of the caller's leg."""
        root = await self._post(fetch.url, fetch.params, fetch.kind)
        self.doc_url = fetch.url
        return root

    def _fail(self, message: str) -> None:
        """An application error: Twilio apologises and hangs up."""
        if self.error is None:
            self.error = message
        raise CallOver

    def _follow(self, update: CallUpdate) -> _Fetch:
        """The fetch a REST update leads to (or the end of the call)."""
        if update.hangup:
            raise CallOver
        return _Fetch(urljoin(self.doc_url, update.url or ""), {}, "redirect")

    # -- the walk --------------------------------------------------------------

    def _hear(self, verb: ET.Element) -> bool:
        """Say/Play/Pause: time passes. False for any other verb."""
        tag = verb.tag
        loops = max(1, _int(verb.get("loop"), 1))
        if tag == "Say":
            self.sim += max(1.0, len((verb.text or "").split()) / WORDS_PER_SECOND) * loops
        elif tag == "Play":
            self.sim += 5.0 * loops
        elif tag == "Pause":
            self.sim += _int(verb.get("length"), 1)
        else:
            return False
        return True

    async def _walk(self, root: ET.Element) -> _Fetch | None:
        """Execute one document of the caller's leg: the next fetch, or the call ends."""
        doc_url = self.doc_url
        for verb in root:
            tag = verb.tag
            if self._hear(verb):
                continue
            if tag == "Gather":
                fetch = self._gather(verb, doc_url)
                if fetch is not None:
                    return fetch
            elif tag == "Redirect":
                target = (verb.text or "").strip()
                if not target:
                    self._fail("<Redirect> without a URL")
                return _Fetch(urljoin(doc_url, target), {}, "redirect")
            elif tag == "Dial":
                fetch = await self._dial(verb, doc_url)
                if fetch is not None:
                    return fetch
            elif tag == "Enqueue":
                return await self._enqueue(verb, doc_url)
            elif tag == "Record":
                return self._record(verb, doc_url)
            elif tag in ("Hangup", "Reject"):
                raise CallOver
        raise CallOver

    def _gather(self, verb: ET.Element, doc_url: str, waiting: bool = False) -> _Fetch | None:
        """The caller's `<Gather>`: the next key entry, or silence (fall through)."""
        for child in verb:
            self._hear(child)
        action = urljoin(doc_url, verb.get("action") or doc_url)
        entry = "" if waiting or not self.keys else self.keys.popleft()
        digits, finished = _digits(entry, verb.get("finishOnKey", "#"),
                                   _int(verb.get("numDigits"), 0))
        if digits:
            self.sim += 0.5 * len(digits)
            return _Fetch(action, {"Digits": digits, "FinishedOnKey": finished}, "gather")
        self.sim += _int(verb.get("timeout"), 5)
        if verb.get("actionOnEmptyResult", "false").lower() == "true":
            return _Fetch(action, {}, "gather")
        return None

    def _record(self, verb: ET.Element, doc_url: str) -> _Fetch:
        """`<Record>`: leave a short message and press #."""
        action = urljoin(doc_url, verb.get("action") or doc_url)
        self.recorded = True
        self.sim += 8
        sid = new_sid("RE")
        return _Fetch(action, {
            "RecordingUrl": f"http://emulator/recordings/{sid}", "RecordingSid": sid,
            "RecordingDuration": "8", "Digits": "#",
        }, "record")

    # -- Dial ------------------------------------------------------------------

    async def _dial(self, verb: ET.Element, doc_url: str) -> _Fetch | None:
        """`<Dial>`: ring each number; the advisor presses the accept key at the whisper."""
        action = verb.get("action")
        numbers = [c for c in verb if c.tag == "Number"]
        if not numbers and not (verb.text or "").strip():
            self._fail("<Dial> with nothing to dial")
        leg_sid, answered = "", False
        for number in numbers or [verb]:
            leg_sid = new_sid("CA")
            url = number.get("url") if number is not verb else None
            if url is None:
                outcome = "bridged"
            else:
                outcome = await self._whisper(urljoin(doc_url, url), (number.text or "").strip(),
                                              leg_sid)
            if outcome == "bridged":
                self.bridged = True
                self.answered_by = (number.text or "").strip()
                self.sim += self.talk_seconds
                if action:
                    # The caller hangs up after talking: the action is requested, its TwiML
                    # ignored (as in the simulator's default `bridged_hangup="caller"`).
                    self.status = "completed"
                    await self._post(urljoin(doc_url, action), {
                        "DialCallStatus": "completed", "DialCallSid": leg_sid,
                        "DialCallDuration": str(self.talk_seconds), "DialBridged": "true",
                    }, "dial-action")
                raise CallOver
            answered = True
        if not action:
            return None
        status = "completed" if answered else "no-answer"
        params = {"DialCallStatus": status, "DialCallSid": leg_sid}
        if answered:
            params.update({"DialCallDuration": "5", "DialBridged": "false"})
        return _Fetch(urljoin(doc_url, action), params, "dial-action")

    async def _whisper(self, url: str, number: str, leg_sid: str) -> str:
        """The advisor's leg: "bridged" after accepting, "hangup" otherwise."""
        base = {
            "CallSid": leg_sid, "ParentCallSid": self.sid, "AccountSid": self.net.account_sid,
            "From": self.from_number, "To": number, "Caller": self.from_number,
            "Called": number, "CallStatus": "in-progress", "Direction": "outbound-dial",
            "ApiVersion": API_VERSION,
        }
        fetch: _Fetch | None = _Fetch(url, {}, "whisper")
        hops = 0
        while fetch is not None:
            hops += 1
            if hops > 20:
                self._fail("loop guard on the advisor's leg")
            root = await self._post(fetch.url, {**base, **fetch.params}, fetch.kind, leg=True)
            doc_url, fetch = fetch.url, None
            for verb in root:
                if self._hear(verb):
                    continue
                if verb.tag == "Gather":
                    action = urljoin(doc_url, verb.get("action") or doc_url)
                    fetch = _Fetch(action, {"Digits": self.accept_key, "FinishedOnKey": ""},
                                   "whisper-accept")
                    break
                if verb.tag == "Redirect":
                    fetch = _Fetch(urljoin(doc_url, (verb.text or "").strip()), {}, "whisper")
                    break
                if verb.tag in ("Hangup", "Reject"):
                    return "hangup"
        return "bridged"

    # -- Enqueue ---------------------------------------------------------------

    async def _enqueue(self, verb: ET.Element, doc_url: str) -> _Fetch | None:
        """`<Enqueue>`: replay the waitUrl until a redirect, a `<Leave>` or giving up."""
        name = (verb.text or "").strip()
        if not name:
            self._fail("<Enqueue> without a queue name")
        wait_url = urljoin(doc_url, verb.get("waitUrl")) if verb.get("waitUrl") else None
        action = urljoin(doc_url, verb.get("action")) if verb.get("action") else None
        entered = time.monotonic()
        board = self.queues
        ticket = board.enter(name) if board else 0
        side = self.net.side

        def params(result: str | None = None) -> dict[str, str]:
            waited = int(time.monotonic() - entered)
            out = {"QueueSid": queue_sid(name), "QueueTime": str(waited)}
            if result is not None:
                out["QueueResult"] = result
            else:
                size = board.size(name) if board else 1
                out.update({"QueuePosition": str(board.position(name, ticket) if board else 1),
                            "CurrentQueueSize": str(size), "AvgQueueTime": "0",
                            "MaxQueueSize": "1000"})
            return out

        def leave() -> None:
            self.waited += time.monotonic() - entered
            self.sim += time.monotonic() - entered
            if board:
                board.leave(name)

        while True:
            update = side.take(self.sid)
            if update is None:
                remaining = self.max_wait - (time.monotonic() - entered)
                if remaining <= 0:
                    self.gave_up = True
                    leave()
                    if action:
                        self.status = "completed"
                        await self._post(action, params("hangup"), "enqueue-action")
                    raise CallOver
                pause = 0.5
                if wait_url:
                    cycle = await self._wait_cycle(wait_url, params)
                    if cycle == "leave":
                        leave()
                        return _Fetch(action, params("leave"), "enqueue-action") if action \
                            else None
                    pause = max(0.05, float(cycle) * self.wait_scale)
                update = await side.wait_update(self.sid, min(pause, max(remaining, 0.05)))
            if update is not None:
                leave()
                if update.hangup:
                    raise CallOver
                if action:
                    # Twilio requests the Enqueue action on a redirect; its TwiML is ignored.
                    await self._post(action, params("redirected"), "enqueue-action")
                return self._follow(update)

    async def _wait_cycle(self, wait_url: str, params: object) -> float | str:
        """Play one waitUrl document: its length in simulated seconds, or "leave"."""
        fetch: _Fetch | None = _Fetch(wait_url, params(), "wait")  # type: ignore[operator]
        seconds, hops = 0.0, 0
        while fetch is not None:
            hops += 1
            if hops > 10:
                self._fail("loop guard in the waitUrl TwiML")
            before = self.sim
            root = await self._post(fetch.url, fetch.params, fetch.kind)
            doc_url, fetch = fetch.url, None
            for verb in root:
                if self._hear(verb):
                    continue
                if verb.tag == "Gather":
                    self._gather(verb, doc_url, waiting=True)  # holds: presses nothing
                elif verb.tag == "Redirect":
                    fetch = _Fetch(urljoin(doc_url, (verb.text or "").strip()),
                                   params(), "wait")  # type: ignore[operator]
                    break
                elif verb.tag == "Leave":
                    return "leave"
                elif verb.tag == "Hangup":
                    raise CallOver
            seconds += self.sim - before
            self.sim = before
        return max(seconds, 1.0)


class QueueBoard:
    """Positions for the waitUrl parameters Twilio sends (QueuePosition, size)."""

    def __init__(self) -> None:
        """Empty queues."""
        self._entered: dict[str, int] = defaultdict(int)
        self._left: dict[str, int] = defaultdict(int)

    def enter(self, name: str) -> int:
        """A caller enters; their ticket."""
        self._entered[name] += 1
        return self._entered[name]

    def leave(self, name: str) -> None:
        """A caller leaves."""
        self._left[name] += 1

    def size(self, name: str) -> int:
        """How many wait now."""
        return max(1, self._entered[name] - self._left[name])

    def position(self, name: str, ticket: int) -> int:
        """Roughly where a ticket stands (served in order)."""
        return max(1, ticket - self._left[name])


def _int(value: str | None, default: int) -> int:
    """An integer attribute, or the default."""
    try:
        return int(value) if value else default
    except ValueError:
        return default


def _digits(entry: str, finish_on_key: str, num_digits: int) -> tuple[str, str]:
    """(Digits, FinishedOnKey) Twilio posts for a typed entry."""
    digits, finished = "", ""
    for ch in entry.strip():
        if ch not in DTMF:
            continue
        if finish_on_key and ch in finish_on_key:
            finished = ch
            break
        digits += ch
        if num_digits and len(digits) >= num_digits:
            break
    return digits, finished
