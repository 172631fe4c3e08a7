"""The emulator's memory: live calls, their pending REST updates, and every API request.

The simulator registers each call it places (so REST updates to it succeed, as
on Twilio while a call is live) and takes the updates the service asked for.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Call statuses after which Twilio refuses to act on a call.
ENDED = ("completed", "canceled", "failed", "busy", "no-answer")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received on Twilio's API (not `/_emulator/*`)."""

    method: str
    path: str
    form: dict[str, str]
    at: float
    status: int = 0
    call_sid: str | None = None
    username: str | None = None


@dataclass(frozen=True)
class CallUpdate:
    """A change requested for a live call through the REST API."""

    url: str | None = None
    method: str = "POST"
    twiml: str | None = None
    status: str | None = None

    @property
    def hangup(self) -> bool:
        """Whether the update ends the call (`Status=completed|canceled`)."""
        return self.status in ("completed", "canceled")

    def to_json(self) -> dict[str, str | None]:
        """The update as the `/_emulator` endpoint sends it."""
        return {"url": self.url, "method": self.method, "twiml": self.twiml, "status": self.status}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallUpdate:
        """The update from the `/_emulator` endpoint's JSON."""
        return cls(
            url=data.get("url"),
            method=(data.get("method") or "POST").upper(),
            twiml=data.get("twiml"),
            status=data.get("status"),
        )


@dataclass(frozen=True)
class CreatedCall:
    """An outbound call the service asked for (`POST Calls.json`)."""

    sid: str
    to: str
    from_: str
    url: str | None
    method: str
    twiml: str | None
    status_callback: str | None
    form: dict[str, str]
    # The conference it was dialed into (`Conferences/{name}/Participants.json`).
    conference: str | None = None


@dataclass
class LiveCall:
    """What the emulator knows about one call."""

    sid: str
    status: str = "in-progress"
    to: str = ""
    from_: str = ""
    direction: str = "inbound"
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    updates: deque[CallUpdate] = field(default_factory=deque)
    # When it ended, and its length (s) as Twilio reports it (None while live, and for
    # a call that ended unanswered: busy, failed, no-answer, canceled).
    ended: datetime | None = None
    duration: int | None = None
    # The call that spawned it: the caller's call, for a `<Dial>`'s leg to a phone.
    parent_call_sid: str = ""


class CallRegistry:
    """Live calls, their pending updates, recorded requests and planned faults (thread-safe)."""

    def __init__(self) -> None:
        """Remember nothing yet."""
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._calls: dict[str, LiveCall] = {}
        self._created: list[CreatedCall] = []
        self._faults: deque[int | str] = deque()
        self._fetch_faults: deque[int | str] = deque()
        # Participants dialed into each conference, not yet taken by a simulator.
        self._joining: dict[str, deque[CreatedCall]] = {}
        # Runs with each outbound call before its creation is answered: what Twilio
        # does meanwhile (a status callback that overtakes the API's answer).
        self.before_answering_create: Callable[[CreatedCall], None] | None = None

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every API request so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def redirects(self, call_sid: str | None = None) -> list[RecordedRequest]:
        """Requests that tried to redirect a call (`Url` or `Twiml` on a call or member)."""
        return [
            r
            for r in self.requests
            if r.method == "POST"
            and r.call_sid is not None
            and ("Url" in r.form or "Twiml" in r.form)
            and (call_sid is None or r.call_sid == call_sid)
        ]

    @property
    def created_calls(self) -> list[CreatedCall]:
        """Outbound calls created through `POST Calls.json`, oldest first."""
        with self._lock:
            return list(self._created)

    def fail_next(self, *faults: int | str) -> None:
        """Answer the next requests that act on calls (redirects, new calls) with
        these faults, in order: an HTTP status (429, 500, 503...) with Twilio's
        error body, or "reset" (the connection is cut without an answer). Prefixed
        "acted:" ("acted:500", "acted:reset"), Twilio first carries the request out
        (places the call, moves it): the answer is lost or an error all the same."""
        with self._lock:
            self._faults.extend(faults)

    def fail_next_fetch(self, *faults: int | str) -> None:
        """Answer the next requests that read a call (`GET Calls/{sid}.json`) with these
        faults, in order, as `fail_next` does for the requests that act on calls."""
        with self._lock:
            self._fetch_faults.extend(faults)

    def reset(self) -> None:
        """Forget every request, call, pending update and planned fault."""
        with self._lock:
            self._faults.clear()
            self._fetch_faults.clear()
            self._requests.clear()
            self._calls.clear()
            self._created.clear()
            self._joining.clear()
            self.before_answering_create = None

    def register_call(
        self, call_sid: str, *, from_: str = "", to: str = "", direction: str = "inbound",
        parent_call_sid: str = "",
    ) -> None:
        """A simulated call is live: REST updates to it now succeed (and the call list
        shows it; `parent_call_sid`: the call whose `<Dial>` spawned it)."""
        with self._lock:
            call = self._calls.get(call_sid)
            if call is None:
                self._calls[call_sid] = LiveCall(call_sid, from_=from_, to=to, direction=direction,
                                                 parent_call_sid=parent_call_sid)
            else:
                call.status = "in-progress"
                call.ended = call.duration = None

    def end_call(self, call_sid: str, status: str = "completed",
                 duration: int | None = None) -> None:
        """The simulated call is over with `status` (one of `ENDED`): later updates fail
        as they would on Twilio, and a fetch reads its status, end time (now) and
        duration (s: `duration`, else the seconds since it was registered; none for a
        call that ended unanswered)."""
        with self._lock:
            call = self._calls.get(call_sid)
            if call is not None:
                call.status = status
                call.updates.clear()
                call.ended = datetime.now(UTC)
                if status != "completed":
                    call.duration = None
                elif duration is not None:
                    call.duration = duration
                else:
                    call.duration = int((call.ended - call.created).total_seconds())

    def is_live(self, call_sid: str) -> bool:
        """Whether the call is registered and not over."""
        with self._lock:
            call = self._calls.get(call_sid)
            return call is not None and call.status not in ENDED

    def take_update(self, call_sid: str) -> CallUpdate | None:
        """Pop the oldest pending update for the call (redirect, TwiML or hang-up)."""
        with self._lock:
            call = self._calls.get(call_sid)
            if call is None or not call.updates:
                return None
            return call.updates.popleft()

    def take_redirect(self, call_sid: str) -> tuple[str, str] | None:
        """Pop the pending redirect for the call as `(url, method)`, if the next update is one."""
        with self._lock:
            call = self._calls.get(call_sid)
            if call is None or not call.updates or call.updates[0].url is None:
                return None
            update = call.updates.popleft()
            return (update.url or "", update.method)

    def take_participant(self, conference: str) -> CreatedCall | None:
        """Pop the oldest participant dialed into `conference` that no simulated
        call has taken yet (the simulator then plays its phone)."""
        with self._lock:
            waiting = self._joining.get(conference)
            return waiting.popleft() if waiting else None
