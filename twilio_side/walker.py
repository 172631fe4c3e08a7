"""The caller's leg walked verb by verb, as Twilio walks a TwiML document."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import urljoin

from twilio_side.account import new_sid
from twilio_side.dialing import Dialing
from twilio_side.queues import Waiting
from twilio_side.twiml import CallOver, Fetch, int_attr


class Walker(Dialing, Waiting):
    """Executes one document of the caller's leg: the next fetch, or the end of the call."""

    record_seconds: int
    record_ending: str
    recording_base_url: str
    _recorded: bool

    def _walk(self, root: ET.Element) -> Fetch | None:
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
                return Fetch(url, verb.get("method", "POST"), {}, "redirect")
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
                raise CallOver
            else:
                self._emit("warning", f"<{tag}> is not supported here; skipped", doc_url, "service")
        self._emit("hangup", "no more TwiML", doc_url, "service")
        raise CallOver

    def _record(self, verb: ET.Element, doc_url: str) -> Fetch | None:
        """`<Record>`: the caller leaves a message; its action's fetch."""
        action = urljoin(doc_url, verb.get("action") or doc_url)
        method = verb.get("method", "POST")
        seconds = max(1, min(self.record_seconds, int_attr(verb.get("maxLength"), 3600)))
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
                Fetch(
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
            raise CallOver
        return Fetch(action, method, params, "record")
