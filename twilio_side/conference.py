"""`<Conference>`: a bridged call moved into a conference, and the phones in it.

While a bridged caller stays on the line (`on_call_seconds` of real time), the
simulator watches the REST emulator as Twilio's switch would:

- the advisor's leg (the `<Dial>`'s child) redirected: it fetches its new
  TwiML; the caller's `<Dial>` ends, its action is requested and its TwiML
  followed (unless the caller's own redirect is already waiting: a modified
  call ignores the action's TwiML);
- the caller's leg redirected while bridged: the action is requested (its
  TwiML ignored) and the advisor's leg is dropped, as Twilio does;
- participants dialed into the conference (`Conferences/{name}/Participants`):
  their phone answers by the advisor policy, and their status callback hears
  `in-progress`, then `completed` (or `no-answer`, `busy`, `failed`);
- a leg that leaves with `endConferenceOnExit` ends the conference: every
  other leg's `<Dial>` ends (the advisor's action is requested and walked),
  and the participants are hung up;
- the advisor's leg redirected again while in the conference: it leaves it
  (its `<Dial>` action requested, its TwiML not executed, the conference
  ended if the leg was to end it) and fetches its new TwiML.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TypeVar
from urllib.parse import urljoin

from twilio_side.account import API_VERSION
from twilio_side.advisors import AdvisorPolicy
from twilio_side.leg import CallLeg
from twilio_side.links import EmulatorLink
from twilio_side.registry import CallUpdate, CreatedCall
from twilio_side.twiml import CallOver, Fetch

T = TypeVar("T")


@dataclass
class AdvisorLeg:
    """The advisor's leg of a bridged call: its CallSid, number and base parameters."""

    sid: str
    number: str
    params: dict[str, str]
    # Its `<Dial><Conference>`'s action and the document that held it, once inside.
    action: str | None = None
    method: str = "POST"
    in_room: bool = False
    # Whether its leaving ends the conference (`endConferenceOnExit`).
    ends_room: bool = False
    over: bool = False


@dataclass
class Room:
    """One conference as the simulator plays it."""

    name: str
    colleagues: dict[str, CreatedCall] = field(default_factory=dict)
    joined_at: dict[str, float] = field(default_factory=dict)
    over: bool = False


class Conferencing(CallLeg):
    """Plays a bridged call that moves into a conference, with its colleagues."""

    on_call_seconds: float
    policy: AdvisorPolicy
    _dials: dict[str, int]
    talk_seconds: int
    bridged_hangup: str
    wait_poll_interval: float
    _advisor: AdvisorLeg | None
    _room: Room | None
    _live_until: float
    _live_pauses: bool
    _stashed: CallUpdate | None

    # -- the bridge, watched -------------------------------------------------

    def _watch_bridge(self, advisor: AdvisorLeg, action: str | None, method: str,
                      doc_url: str, params: Mapping[str, str]) -> Fetch | None:
        """Stay bridged in real time (the advisor's leg registered at the emulator):
        None when the talk ends as usual, else the caller's next fetch (the call moved)."""
        self._advisor = advisor
        self._live_until = time.monotonic() + self.on_call_seconds
        while time.monotonic() < self._live_until:
            # The advisor's leg first: when both legs have an update waiting, the
            # advisor's was asked for first (the service moves the child first).
            moved = self._take_leg_update(advisor.sid)
            if moved is not None:
                if moved.hangup:
                    self._end_advisor_leg("ended through the REST API")
                    return None
                self._walk_advisor_leg(moved)
                return self._after_advisor_moved(action, method, doc_url, params)
            update = self._take_update()
            if update is not None:
                self._drop_advisor("the caller's call was modified")
                self._dial_action(action, method, doc_url, params)
                return self._follow_update(update)
            time.sleep(self.wait_poll_interval)
        self._link_leg(advisor.sid, "end")
        return None

    def _after_advisor_moved(self, action: str | None, method: str, doc_url: str,
                             params: Mapping[str, str]) -> Fetch | None:
        """The caller's `<Dial>` ended because its child left: its action decides,
        unless the caller's own REST update is already there."""
        self._live_pauses = True
        answer = self._dial_action(action, method, doc_url, params)
        update = self._take_update()
        if update is not None:
            return self._follow_update(update)
        if answer is None:
            return None
        return Fetch(urljoin(doc_url, action or ""), method, {}, "dial-action",
                     twiml=answer)

    def _dial_action(self, action: str | None, method: str, doc_url: str,
                     params: Mapping[str, str]) -> str | None:
        """Request the caller's `<Dial>` action: its TwiML, or None."""
        if not action:
            return None
        url = urljoin(doc_url, action)
        answer = self._request(method, url, params, "dial-action")
        if answer.status != 200:
            self._emit("error", f"HTTP {answer.status} from {url}", url, "service")
            self._note_error(f"HTTP {answer.status} from {url}")
            return None
        return answer.text

    # -- the conference, from the caller's leg --------------------------------

    def _conference(self, verb: ET.Element, noun: ET.Element, doc_url: str) -> Fetch | None:
        """The caller's `<Dial><Conference>`: stay in it until someone ends it."""
        name = (noun.text or "").strip()
        ends_it = noun.get("endConferenceOnExit", "false").lower() == "true"
        action, method = verb.get("action"), verb.get("method", "POST")
        room = self._room if self._room and self._room.name == name else Room(name)
        self._room = room
        self._live_pauses = False
        self._idle_docs = 0
        self._emit("conference", name, party="caller", detail="joined")
        self._live_until = time.monotonic() + (self.on_call_seconds if self.link else 0.0)
        while time.monotonic() < self._live_until and not room.over:
            update = self._take_update()
            if update is not None:
                if ends_it:
                    self._end_room("the caller left")
                self._conference_action(action, method, doc_url, "in-progress")
                return self._follow_update(update)
            self._watch_room(room)
            time.sleep(self.wait_poll_interval)
        if not room.over and (self.bridged_hangup == "caller" or self._advisor is None):
            self._emit("hangup", "in the conference", party="caller")
            self._call_status = "completed"
            if ends_it:
                self._end_room("the caller left")
            self._conference_action(action, method, doc_url, "completed")
            raise CallOver
        if not room.over:
            self._end_advisor_leg("in the conference")
            self._end_room("the advisor left")
        answer = self._conference_action(action, method, doc_url, "in-progress")
        if answer is None:
            return None
        return Fetch(urljoin(doc_url, action or ""), method, {}, "dial-action", twiml=answer)

    def _conference_action(self, action: str | None, method: str, doc_url: str,
                           call_status: str) -> str | None:
        """The caller's `<Dial><Conference>` ended: request its action (its TwiML)."""
        params = {"DialCallStatus": "completed", "CallStatus": call_status}
        return self._dial_action(action, method, doc_url, params)

    def _watch_room(self, room: Room) -> None:
        """One look at the switch: the advisor's leg, new participants, removed ones."""
        advisor = self._advisor
        if advisor is not None and not advisor.over:
            update = self._take_leg_update(advisor.sid)
            if update is not None and update.hangup:
                self._end_advisor_leg("ended through the REST API")
                self._end_room("the advisor left")
                return
            if update is not None:
                if advisor.in_room:
                    self._advisor_leaves_room()
                self._walk_advisor_leg(update)
        created = self._take_participant(room.name)
        if created is not None:
            self._colleague_rings(room, created)
        for sid in list(room.colleagues):
            update = self._take_leg_update(sid)
            if update is not None and update.hangup:
                self._colleague_leaves(room, sid, "removed through the REST API")

    def _colleague_rings(self, room: Room, created: CreatedCall) -> None:
        """A participant dialed in: their phone answers (or not) by the advisor policy."""
        number = created.to
        attempt = self._dials.get(number, 0)
        self._dials[number] = attempt + 1
        action = self.policy.decide(number, attempt)
        if action not in ("answer", "voicemail"):
            self._emit("colleague", number, party="colleague", detail=action)
            self._colleague_status(created, action, 0)
            return
        self._link_leg(created.sid, "register", number)
        room.colleagues[created.sid] = created
        room.joined_at[created.sid] = time.monotonic()
        self._emit("colleague", number, party="colleague", detail="joined")
        self._colleague_status(created, "in-progress", 0)

    def _colleague_leaves(self, room: Room, sid: str, why: str) -> None:
        """A colleague's leg ends: their status callback hears `completed`."""
        created = room.colleagues.pop(sid)
        seconds = max(1, int(time.monotonic() - room.joined_at.pop(sid, time.monotonic())))
        self._link_leg(sid, "end")
        self._emit("colleague", created.to, party="colleague", detail=f"left: {why}")
        self._colleague_status(created, "completed", seconds)

    def _colleague_status(self, created: CreatedCall, status: str, seconds: int) -> None:
        """Post a participant's call-progress event to its StatusCallback."""
        if not created.status_callback:
            return
        params = {
            "CallSid": created.sid,
            "AccountSid": self.account_sid,
            "From": created.from_,
            "To": created.to,
            "CallStatus": status,
            "Direction": "outbound-api",
            "ApiVersion": API_VERSION,
            "Timestamp": format_datetime(datetime.now(UTC), usegmt=True),
            "CallbackSource": "call-progress-events",
        }
        if status == "completed":
            params["CallDuration"] = str(seconds)
        url = urljoin(self._doc_url, created.status_callback)
        answer = self._leg_request(created.form.get("StatusCallbackMethod", "POST"), url,
                                   params, "colleague-status")
        if answer.status != 200:
            self._note_error(f"colleague status callback answered HTTP {answer.status}")

    def _end_room(self, why: str) -> None:
        """The conference ends: every colleague is hung up, the advisor's `<Dial>` ends."""
        room = self._room
        if room is None or room.over:
            return
        room.over = True
        self._emit("conference", room.name, party="service", detail=f"ended: {why}")
        for sid in list(room.colleagues):
            self._colleague_leaves(room, sid, "the conference ended")
        advisor = self._advisor
        if advisor is not None and advisor.in_room and not advisor.over:
            advisor.in_room = False
            if advisor.action:
                params = {**advisor.params, "DialCallStatus": "completed"}
                answer = self._leg_request(advisor.method, advisor.action, params, "advisor-leg")
                self._walk_advisor_answer(answer.text if answer.status == 200 else "",
                                          advisor.action)
            if not advisor.in_room:
                self._end_advisor_leg("")

    # -- the advisor's leg -----------------------------------------------------

    def _advisor_leaves_room(self) -> None:
        """The advisor's leg, in the conference, was redirected through the REST API: as
        Twilio does, its `<Dial><Conference>` ends, its action is requested (its TwiML
        not executed: the leg follows the redirect; Twilio's changelog, 2021-05-24),
        and its leaving ends the conference when it was to (`endConferenceOnExit`)."""
        advisor = self._advisor
        if advisor is None or not advisor.in_room:
            return
        advisor.in_room = False
        self._emit("conference", self._room.name if self._room else "", party="advisor",
                   detail="left: the leg was redirected")
        if advisor.action:
            params = {**advisor.params, "DialCallStatus": "completed"}
            self._leg_request(advisor.method, advisor.action, params, "advisor-leg")
        if advisor.ends_room:
            self._end_room("the advisor left")

    def _walk_advisor_leg(self, update: CallUpdate) -> None:
        """The advisor's leg fetches the TwiML a REST redirect sent it to."""
        advisor = self._advisor
        if advisor is None:
            return
        url = urljoin(self._doc_url, update.url or "")
        self._emit("redirect", url, url, "advisor", "rest")
        if update.twiml is not None:
            self._walk_advisor_answer(update.twiml, url)
            return
        answer = self._leg_request(update.method, url, advisor.params, "advisor-leg")
        self._walk_advisor_answer(answer.text if answer.status == 200 else "", url)

    def _walk_advisor_answer(self, text: str, url: str) -> None:
        """One document of the advisor's leg: a conference to join, words, or the end."""
        advisor = self._advisor
        if advisor is None:
            return
        try:
            root = ET.fromstring(text) if text else None
        except ET.ParseError:
            root = None
        for verb in [] if root is None else list(root):
            if self._hear(verb, "advisor"):
                continue
            noun = verb.find("Conference") if verb.tag == "Dial" else None
            if noun is not None:
                advisor.in_room = True
                advisor.ends_room = noun.get("endConferenceOnExit", "false").lower() == "true"
                action = verb.get("action")
                advisor.action = urljoin(url, action) if action else None
                advisor.method = verb.get("method", "POST")
                self._emit("conference", (noun.text or "").strip(), party="advisor",
                           detail="joined")
                return
            if verb.tag in ("Hangup", "Reject"):
                break
        self._end_advisor_leg("")

    def _drop_advisor(self, why: str) -> None:
        """Twilio drops the `<Dial>`'s child when the parent call is modified."""
        self._end_advisor_leg(why)

    def _end_advisor_leg(self, why: str) -> None:
        """The advisor's leg is over."""
        advisor = self._advisor
        if advisor is None or advisor.over:
            return
        advisor.over = True
        advisor.in_room = False
        self._link_leg(advisor.sid, "end")
        self._emit("hangup", why, party="advisor")

    # -- the emulator, for legs other than the caller's ------------------------

    def _over_link(self, act: Callable[[EmulatorLink], T]) -> T | None:
        """Do `act` over the emulator link; None without one, and a failure is a
        warning, once (the link is then left alone, as for the caller's leg)."""
        if self.link is None or self._link_broken:
            return None
        try:
            return act(self.link)
        except Exception as exc:  # noqa: BLE001 - any link failure just disables it
            self._link_broken = True
            self._emit("warning", f"emulator link failed: {exc}", party="service")
            return None

    def _link_leg(self, sid: str, what: str, number: str = "", parent: str = "") -> None:
        """Register or end another leg at the emulator (`parent`: the call whose `<Dial>`
        spawned it)."""
        if what == "register":
            self._over_link(lambda link: link.register(sid, from_=self.to_number, to=number,
                                                       parent_call_sid=parent))
        else:
            self._over_link(lambda link: link.end(sid))

    def _take_leg_update(self, sid: str) -> CallUpdate | None:
        """A pending REST update for another leg."""
        return self._over_link(lambda link: link.take_update(sid))

    def _take_participant(self, name: str) -> CreatedCall | None:
        """A participant dialed into the conference through the REST API, if any."""
        return self._over_link(lambda link: link.take_participant(name))
