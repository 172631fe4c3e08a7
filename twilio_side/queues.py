"""`<Enqueue>`: waiting in a queue, its wait music, and leaving it (redirected, or not).

A waiting call really waits (the only place the simulator sleeps unless
`realtime`): until the service's REST redirect reaches the emulator, the
waitUrl TwiML says `<Leave>` or `<Hangup>`, or the caller gives up.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin

from twilio_side.account import queue_sid
from twilio_side.gather import Gathering
from twilio_side.registry import CallUpdate
from twilio_side.twiml import LOOP_GUARD, CallOver, Fetch

# Twilio's queue sizes: a queue `<Enqueue>` creates on demand holds 1000 calls; the
# Queues API may set any size up to 5000 (twilio's Queue `max_size`; error 14207).
DEFAULT_MAX_SIZE = 1000
LARGEST_MAX_SIZE = 5000


@dataclass
class QueueInfo:
    """One queue as Twilio's Queues resource shows it (sizes in calls, wait in seconds)."""

    name: str
    sid: str
    max_size: int
    current_size: int
    average_wait: int
    created: datetime


class QueueBoard:
    """Who waits in which simulated queue, and each queue's `max_size`, across the
    Callers and the emulator of this process (a queue exists once entered or created)."""

    def __init__(self) -> None:
        """No queue, no one waiting."""
        self._lock = threading.Lock()
        self._members: dict[str, list[str]] = {}
        self._waits: dict[str, list[float]] = {}
        self._max_sizes: dict[str, int] = {}
        self._created: dict[str, datetime] = {}

    def _exist(self, queue: str) -> None:
        """Create the queue as `<Enqueue>` does, at the default size (caller holds the lock)."""
        if queue not in self._max_sizes:
            self._max_sizes[queue] = DEFAULT_MAX_SIZE
            self._created[queue] = datetime.now(UTC)
            self._members.setdefault(queue, [])

    def enter(self, queue: str, call_sid: str) -> bool:
        """The call joins the end of the queue (created on demand); False, and it does
        not join, when the queue already holds its `max_size` calls (Twilio's 14207)."""
        with self._lock:
            self._exist(queue)
            members = self._members[queue]
            if call_sid in members:
                return True
            if len(members) >= self._max_sizes[queue]:
                return False
            members.append(call_sid)
            return True

    def create(self, queue: str, max_size: int | None = None) -> bool:
        """Create the queue (`POST Queues.json`); False when one has that name already."""
        with self._lock:
            if queue in self._max_sizes:
                return False
            self._exist(queue)
            if max_size is not None:
                self._max_sizes[queue] = max_size
            return True

    def resize(self, queue: str, max_size: int) -> None:
        """Set an existing queue's `max_size` (calls already waiting stay)."""
        with self._lock:
            self._exist(queue)
            self._max_sizes[queue] = max_size

    def info(self, queue: str) -> QueueInfo | None:
        """The queue as the Queues resource shows it; None when it does not exist."""
        with self._lock:
            if queue not in self._max_sizes:
                return None
            waits = self._waits.get(queue, [])
            return QueueInfo(queue, queue_sid(queue), self._max_sizes[queue],
                             len(self._members.get(queue, [])),
                             int(sum(waits) / len(waits)) if waits else 0,
                             self._created[queue])

    def names(self) -> list[str]:
        """Every queue that exists, oldest first."""
        with self._lock:
            return sorted(self._created, key=self._created.__getitem__)

    def forget(self) -> None:
        """No queue, no one waiting (the emulator's `reset`)."""
        with self._lock:
            self._members.clear()
            self._waits.clear()
            self._max_sizes.clear()
            self._created.clear()

    def leave(self, queue: str, call_sid: str, waited: float) -> None:
        """The call leaves the queue; its wait counts toward the average (last 100)."""
        with self._lock:
            members = self._members.get(queue, [])
            if call_sid in members:
                members.remove(call_sid)
                waits = self._waits.setdefault(queue, [])
                waits.append(waited)
                del waits[:-100]

    def position(self, queue: str, call_sid: str) -> tuple[int, int, int, int]:
        """(position 1-based, current size, average wait in seconds, max size)."""
        with self._lock:
            members = self._members.get(queue, [])
            position = members.index(call_sid) + 1 if call_sid in members else 1
            waits = self._waits.get(queue, [])
            average = int(sum(waits) / len(waits)) if waits else 0
            max_size = self._max_sizes.get(queue, DEFAULT_MAX_SIZE)
            return position, max(len(members), 1), average, max_size


QUEUES = QueueBoard()


@dataclass
class QueueStay:
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


class Waiting(Gathering):
    """Waits in `<Enqueue>` queues, re-requesting the waitUrl, until the call leaves."""

    wait_poll_interval: float
    wait_cycle_seconds: float
    hold_track_seconds: float
    max_wait_seconds: float
    enqueue_action_on_redirect: bool
    _gave_up: bool
    _heard_hold_track: bool

    def _enqueue(self, verb: ET.Element, doc_url: str) -> Fetch | None:
        """`<Enqueue>`: wait, re-requesting the waitUrl, until leave, redirect or hang-up."""
        name = (verb.text or "").strip()
        if not name:
            self._fail("<Enqueue> without a queue name", doc_url)
        action = verb.get("action")
        stay = QueueStay(
            name=name,
            sid=queue_sid(name),
            wait_url=urljoin(doc_url, verb.get("waitUrl", "")) if verb.get("waitUrl") else None,
            wait_method=verb.get("waitUrlMethod", "POST"),
            action=urljoin(doc_url, action) if action else None,
            action_method=verb.get("method", "POST"),
        )
        if not QUEUES.enter(name, self.call_sid):
            # Twilio refuses a full queue (14207): the action hears queue-full at once.
            self._emit("warning", f"queue {name} is full", doc_url, "caller")
            stay.left = 0.0
            params = {"QueueResult": "queue-full", "QueueSid": stay.sid, "QueueTime": "0"}
            if stay.action:
                return Fetch(stay.action, stay.action_method, params, "enqueue-action")
            return None
        self.result.queued = True
        self.result.queues.append(name)
        self._idle_docs = 0
        self._emit("enqueue", name, doc_url, "caller")
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

    def _dequeue(self, stay: QueueStay, reason: str, *, post: bool) -> dict[str, str]:
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

    def _wait_in_queue(self, stay: QueueStay) -> Fetch | None:
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
                raise CallOver
            if stay.wait_url and time.monotonic() >= next_cycle:
                next_cycle = time.monotonic() + self.wait_cycle_seconds
                # The wait music plays during the (real) wait, already counted on dequeue.
                simulated = self._sim
                self._heard_hold_track = False
                left = self._wait_cycle(stay)
                self._sim = simulated
                if self._heard_hold_track:
                    # Twilio asks the waitUrl again only once the track has played out.
                    next_cycle = max(next_cycle, time.monotonic() + self.hold_track_seconds)
                if isinstance(left, CallUpdate):
                    self._dequeue(stay, "redirected", post=self.enqueue_action_on_redirect)
                    return self._follow_update(left)
                if left == "leave":
                    params = self._dequeue(stay, "leave", post=False)
                    self._emit("leave", stay.name, party="caller")
                    if stay.action:
                        return Fetch(stay.action, stay.action_method, params, "enqueue-action")
                    return None
                if left == "hangup":
                    self._dequeue(stay, "hangup", post=True)
                    raise CallOver
            time.sleep(self.wait_poll_interval)

    def _wait_cycle(self, stay: QueueStay) -> str | CallUpdate:
        """One pass of the waitUrl TwiML: "again", "leave", "hangup" or a REST update."""
        name, waited = stay.name, int(stay.waited())
        position, size, average, max_size = QUEUES.position(name, self.call_sid)
        queue_params = {
            "QueueSid": stay.sid,
            "QueuePosition": str(position),
            "QueueTime": str(waited),
            "AvgQueueTime": str(average),
            "CurrentQueueSize": str(size),
            "MaxQueueSize": str(max_size),
        }
        detail = f"wait:{name}"
        url = stay.wait_url or ""
        self._emit("wait", name, url, "caller", f"position {position}, {waited}s")
        fetch: Fetch | None = Fetch(url, stay.wait_method, {}, "wait")
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
                    self._heard_hold_track |= verb.tag == "Play"
                    continue
                if verb.tag == "Gather":
                    fetch = self._gather(verb, doc_url, queue=name)
                    if fetch is not None:
                        fetch = Fetch(fetch.url, fetch.method, fetch.params, "wait-gather")
                        break
                elif verb.tag == "Redirect":
                    target = urljoin(doc_url, (verb.text or "").strip())
                    fetch = Fetch(target, verb.get("method", "POST"), {}, "wait")
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
