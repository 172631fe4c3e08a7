"""`<Gather>`: the keys (or words) a caller or an advisor answers a question with."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin

from twilio_side.leg import CallLeg
from twilio_side.twiml import DTMF, Fetch, int_attr, text_of


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


class Gathering(CallLeg):
    """Answers each `<Gather>` from the scripted keys, then from the interactive user."""

    keys: list[str]
    gather_input: Callable[[Gather], str] | None

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
        num_digits = int_attr(verb.get("numDigits"), 0) or None
        return Gather(
            texts=tuple(text_of(c) for c in verb if c.tag == "Say"),
            action=urljoin(doc_url, verb.get("action") or doc_url),
            num_digits=num_digits,
            finish_on_key=verb.get("finishOnKey", "#"),
            timeout=int_attr(verb.get("timeout"), 5),
            input=verb.get("input", "dtmf"),
            party=party,
            queue=queue,
        )

    def _gather(self, verb: ET.Element, doc_url: str, queue: str | None = None) -> Fetch | None:
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
            return Fetch(gather.action, method, params, "gather")
        self._emit("gather", "", gather.action, "caller", f"timeout{detail}")
        self._spend(gather.timeout)
        if verb.get("actionOnEmptyResult", "false").lower() == "true":
            return Fetch(gather.action, method, {}, "gather")
        return None
