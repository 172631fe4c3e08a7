"""`<Dial>`: ringing advisors' phones, the whisper on the advisor's leg, the bridge."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from urllib.parse import urljoin

from twilio_side.account import API_VERSION, new_sid, queue_sid
from twilio_side.advisors import AdvisorPolicy
from twilio_side.conference import AdvisorLeg, Conferencing
from twilio_side.gather import Gather, Gathering
from twilio_side.registry import CallUpdate
from twilio_side.twiml import CallOver, Fetch, int_attr


class Dialing(Gathering, Conferencing):
    """Plays each dialed phone by the advisor policy and walks the advisor's leg."""

    policy: AdvisorPolicy
    talk_seconds: int
    bridged_hangup: str
    ring_seconds: float
    advisor_gather_input: Callable[[Gather], str] | None
    _dials: dict[str, int]
    _bridged: bool
    _leg_params: dict[str, str]

    def _dial(self, verb: ET.Element, doc_url: str) -> Fetch | None:
        """`<Dial>`: ring each number by the advisor policy; the action's fetch, or None."""
        action = verb.get("action")
        method = verb.get("method", "POST")
        timeout = int_attr(verb.get("timeout"), 30)
        caller_id = verb.get("callerId") or self.from_number
        targets = [c for c in verb if c.tag in ("Number", "Client", "Sip", "Queue", "Conference")]
        room = next((t for t in targets if t.tag == "Conference"), None)
        if room is not None:
            return self._conference(verb, room, doc_url)
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
            cut = self._ring()
            if cut is not None:
                return self._ring_cut(cut, number, leg_sid, action, method, doc_url)
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
            return Fetch(urljoin(doc_url, action), method, params, "dial-action")
        return None

    def _ring(self) -> CallUpdate | None:
        """The dialed phone rings `ring_seconds` of real time before it does what the
        advisor policy says; a REST update of the caller's call that arrives meanwhile
        is returned (it ends the `<Dial>`), else None."""
        if self.ring_seconds <= 0:
            return None
        deadline = time.monotonic() + self.ring_seconds
        while True:
            update = self._take_update()
            if update is not None or time.monotonic() >= deadline:
                return update
            time.sleep(self.wait_poll_interval)

    def _ring_cut(self, update: CallUpdate, number: str, leg_sid: str, action: str | None,
                  method: str, doc_url: str) -> Fetch:
        """The caller's call was modified through the REST API while a phone rang: as
        Twilio does, the ring is canceled (the phone stops), the `<Dial>` action is
        requested and its TwiML not executed, and the call goes where the update says
        (Twilio's changelog, 2021-05-24: "Twilio will make a request to the provided
        action callback when the parent call is transferred to a new TwiML via call
        modification. Twilio will not execute any TwiML returned by the action URL").
        The action hears `DialCallStatus=canceled`, Twilio's word for a dialed call
        ended before it was answered (which status Twilio posts here is not
        documented)."""
        self.result.dial_results.append((number, "canceled"))
        self._emit("hangup", "the ring was cut: the caller's call was modified",
                   party="advisor")
        if update.hangup:
            self._call_status = "completed"
        self._dial_action(action, method, doc_url,
                          {"DialCallStatus": "canceled", "DialCallSid": leg_sid})
        return self._follow_update(update)

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
    ) -> Fetch | None:
        """The caller talks; then whoever hangs up first ends the bridge."""
        self._bridged = True
        self.result.answered_by = answered_by
        advisor = None
        if self.on_call_seconds > 0 and self.link is not None and self._leg_params:
            # The advisor's leg is live at the switch from the bridge on (REST can move it).
            advisor = AdvisorLeg(leg_sid, answered_by, dict(self._leg_params))
            self._link_leg(advisor.sid, "register", advisor.number, parent=self.call_sid)
        self._emit("connect", answered_by, party="caller", detail=str(self.talk_seconds))
        params = {
            "DialCallStatus": "completed",
            "DialCallSid": leg_sid,
            "DialCallDuration": str(self.talk_seconds),
            "DialBridged": "true",
            **extra,
        }
        hangup_by = self.bridged_hangup
        if advisor is not None:
            moved = self._watch_bridge(advisor, action, method, doc_url, params)
            if moved is not None:
                return moved
            hangup_by = "advisor" if advisor.over else hangup_by
        self._spend(self.talk_seconds)
        if hangup_by == "caller":
            self._emit("hangup", "after talking", party="caller")
            self._call_status = "completed"
            self._dial_action(action, method, doc_url, params)  # its TwiML is not played
            raise CallOver
        self._emit("hangup", "after talking", party="advisor")
        if action:
            return Fetch(urljoin(doc_url, action), method, params, "dial-action")
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
        self._leg_params = base
        fetch: Fetch | None = Fetch(url, "POST", {}, "whisper")
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
            except CallOver:
                return "error"
            fetch = None
            for verb in root:
                # Twilio's <Number> documentation: the url's TwiML may `<Play>` or `<Say>`,
                # and decline with `<Gather>` and `<Hangup>`; "the url attribute does not
                # support any other TwiML verbs" (not `<Pause>`, not `<Redirect>`).
                if verb.tag in ("Say", "Play") and self._hear(verb, "advisor"):
                    continue
                if verb.tag == "Gather":
                    fetch, done = self._advisor_gather(verb, url, phone_action)
                    if done:
                        break
                elif verb.tag in ("Hangup", "Reject"):
                    self._emit("hangup", f"<{verb.tag}> on the advisor's leg", party="advisor")
                    return "hangup"
                else:
                    message = f"<{verb.tag}> is not allowed in a <Number url>"
                    self._emit("warning", message, party="service")
                    self._note_error(message)
            if fetch is not None:
                url = fetch.url
        return "bridged"

    def _advisor_gather(
        self, verb: ET.Element, doc_url: str, phone_action: str
    ) -> tuple[Fetch | None, bool]:
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
            return Fetch(
                gather.action, method, {"Digits": digits, "FinishedOnKey": finished}
            ), True
        self._emit("gather", "", gather.action, "advisor", "timeout")
        self._spend(gather.timeout)
        if verb.get("actionOnEmptyResult", "false").lower() == "true":
            return Fetch(gather.action, method, {}), True
        return None, False
