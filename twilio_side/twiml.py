"""Reading TwiML as Twilio does: attributes with Twilio's defaults, spoken text, what to fetch."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field

DTMF = set("0123456789*#")
# Documents walked without progress (a key, a dial, a queue) before the call is ended.
LOOP_GUARD = 50
WORDS_PER_SECOND = 2.5


class CallOver(Exception):
    """Unwinds the walk: the call has ended (hang-up, error, loop guard)."""


@dataclass(frozen=True)
class Fetch:
    """The next document to fetch (or, for a REST `Twiml` update, to run)."""

    url: str
    method: str = "POST"
    params: Mapping[str, str] = field(default_factory=dict)
    kind: str = "call"
    twiml: str | None = None


def int_attr(value: str | None, default: int) -> int:
    """An integer attribute, or the default when missing or malformed."""
    try:
        return int(value) if value else default
    except ValueError:
        return default


def text_of(element: ET.Element) -> str:
    """An element's text including nested SSML, whitespace collapsed."""
    return " ".join("".join(element.itertext()).split())


def say_seconds(text: str) -> float:
    """Roughly how long a text takes to speak."""
    return max(1.0, len(text.split()) / WORDS_PER_SECOND)
