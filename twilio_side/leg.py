"""One call's leg on Twilio's side: its state and what every verb does with it.

`CallLeg` holds what the walk shares (the transport, the call's identity, the
result being written, simulated time, the line to the REST emulator) and the
moves every verb makes: send a webhook, parse the TwiML it answers, note an
event, fail as Twilio fails, let time pass, play what is heard.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from typing import NoReturn
from urllib.parse import urljoin, urlsplit

from twilio_side.account import API_VERSION
from twilio_side.links import EmulatorLink
from twilio_side.registry import CallUpdate
from twilio_side.results import CallResult, Event, Step
from twilio_side.transport import Response, Transport
from twilio_side.twiml import LOOP_GUARD, CallOver, Fetch, int_attr, say_seconds, text_of


def without_unknown_account(params: Mapping[str, str]) -> dict[str, str]:
    """`params` without an empty `AccountSid`: a caller that does not know the account
    (`account_sid=""`, `caseline call` with no TWILIO_ACCOUNT_SID) posts none rather
    than a sid that cannot be right."""
    return {name: value for name, value in params.items()
            if name != "AccountSid" or value}


class CallLeg:
    """The state of one simulated call and the primitives its verbs share."""

    transport: Transport
    from_number: str
    to_number: str
    account_sid: str  # "" when unknown: no `AccountSid` posted
    call_sid: str
    direction: str
    attestation: str | None
    extra_params: dict[str, str]
    link: EmulatorLink | None
    on_event: Callable[[Event], None] | None
    realtime: bool
    result: CallResult
    _started: float
    _sim: float
    _requests_sent: int
    _doc_url: str
    _idle_docs: int
    _call_status: str
    _link_broken: bool
    _deferred: list[Fetch]

    def _public(self, url_or_path: str) -> str:
        """A full URL: absolute as it is, a path under the transport's base URL."""
        if urlsplit(url_or_path).scheme:
            return url_or_path
        return self.transport.base_url.rstrip("/") + "/" + url_or_path.lstrip("/")

    def _link_call(self, what: str, duration: int | None = None) -> None:
        """Register or end the call at the emulator, ended after `duration` seconds when
        given (a broken link is a warning, once)."""
        if self.link is None or self._link_broken:
            return
        try:
            if what == "register":
                self.link.register(self.call_sid, from_=self.from_number, to=self.to_number)
            else:
                self.link.end(self.call_sid, duration=duration)
        except Exception as exc:  # noqa: BLE001 - any link failure just disables redirects
            self._link_broken = True
            self._emit("warning", f"emulator link failed: {exc}", party="service")

    def _take_update(self) -> CallUpdate | None:
        """A pending REST update for this call, if the emulator has one."""
        stashed = getattr(self, "_stashed", None)
        if stashed is not None:
            self._stashed = None
            return stashed
        if self.link is None or self._link_broken:
            return None
        try:
            return self.link.take_update(self.call_sid)
        except Exception as exc:  # noqa: BLE001
            self._link_broken = True
            self._emit("warning", f"emulator link failed: {exc}", party="service")
            return None

    def _live_pause(self, seconds: float) -> None:
        """A pause while the call is being moved on a live switch: it lasts in real
        time, and a REST update ends it (kept for the next fetch), as on Twilio."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            update = self._take_update()
            if update is not None:
                self._stashed = update
                return
            time.sleep(0.02)

    def _apply_update(self, fetch: Fetch) -> Fetch:
        """Before each fetch: a pending REST update replaces the document (applied at once)."""
        update = self._take_update()
        if update is None:
            return fetch
        return self._follow_update(update)

    def _follow_update(self, update: CallUpdate) -> Fetch:
        """The fetch a REST update leads to (or the end of the call)."""
        if update.hangup:
            self._emit("hangup", "the call was ended through the REST API", party="service")
            raise CallOver
        self.result.redirected_at.append(time.monotonic() - self._started)
        self._idle_docs = 0
        if update.twiml is not None:
            self._emit("redirect", "TwiML from the REST API", self._doc_url, "service", "rest")
            return Fetch(self._doc_url, "POST", {}, "redirect", twiml=update.twiml)
        url = urljoin(self._doc_url, update.url or "")
        self._emit("redirect", url, url, "service", "rest")
        return Fetch(url, update.method or "POST", {}, "redirect")

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
        full = without_unknown_account({**self._call_params(), **params})
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
        params = without_unknown_account(params)
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

    def _fetch_document(self, fetch: Fetch) -> ET.Element:
        """Fetch (or take) the next document of the caller's leg."""
        self._idle_docs += 1
        if self._idle_docs > LOOP_GUARD:
            self._emit(
                "hangup", f"loop guard: {LOOP_GUARD} documents without progress", party="caller"
            )
            self._note_error(f"loop guard: {LOOP_GUARD} documents walked without progress")
            raise CallOver
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
        raise CallOver

    def _spend(self, seconds: float) -> None:
        """Simulated time passes on the phone (really, with `realtime`)."""
        self._sim += seconds
        if self.realtime and seconds > 0:
            time.sleep(seconds)

    def _hear(self, verb: ET.Element, party: str, detail: str = "") -> bool:
        """Say/Play/Pause: heard by `party`. False when the verb is not one of them."""
        loops = max(1, int_attr(verb.get("loop"), 1))
        if verb.tag == "Say":
            text = text_of(verb)
            self._emit("say", text, party=party, detail=detail)
            self._spend(say_seconds(text) * loops)
        elif verb.tag == "Play":
            url = (verb.text or "").strip()
            digits = verb.get("digits")
            self._emit("play", url or f"digits {digits}", url, party, detail)
            self._spend(5.0 * loops)
        elif verb.tag == "Pause":
            length = int_attr(verb.get("length"), 1)
            self._emit("pause", str(length), party=party, detail=detail)
            self._spend(length)
            if getattr(self, "_live_pauses", False) and not self.realtime:
                self._live_pause(min(length, 5))
        else:
            return False
        return True
