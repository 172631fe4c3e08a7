"""Final status callbacks that Redis failed, kept and applied once it answers again.

Twilio posts a call's final status once and never retries it. When Redis is briefly
unreachable (a restart, a failover) as it arrives, the webhook still answers at once
(`ivr.voice.errors`), but the end would be lost: the advisor stays busy on a finished
call, the on-call line stays held, the call log waits, until the reconciler's check
of open calls (`routing.call_end.check_open_calls`) minutes later.

So the status view keeps such an end here, and one daemon thread of this web process
(started when the first end is kept, gone once none is left) applies it as the
callback would have (`routing.call_end.close_call`, with the time the callback came as
the call's end), retrying with a short backoff for up to `KEEP_SECONDS`. The end is
marked once: a repeat of the callback (or the reconciler) that ends the call first
wins, and the retry then finds it ended and forgets it. A callback whose end script
committed before Redis failed (its releases undone) is retried all the same: the
retry finds the end recorded and runs the releases again (`close_call` on a
repeat), logging and counting nothing.

The same thread writes the fallback marks Redis failed (`keep_fallback`: the caller
was given the fallback reply while Redis was unreachable, and the fallback number's
`<Dial>` action, which records it too, may meet the same outage or never come), before
the ends it holds, so a call's end applied here is logged with its mark; a mark applied
after the call was logged (by another process) has its log written again
(`routing.call_state.note_fallback`); the caller leaves their queue with the mark, and an
advisor claimed for them is released (`routing.availability.fallback_given`).

It writes first the voicemails Redis failed (`keep_recording`: the `<Record>` action,
`/voice/recorded`, posted once by Twilio, most often right after the caller hung up):
the recording is on the call before any end the thread applies, so that end's log
carries it; a call already logged has the recording added to its log
(`jobs.queues.enqueue_recording`, as a `<Record>` action posted after the end).

Kept in this process's memory only, at most `MAX_KEPT` ends, as many marks and as many
recordings (more are dropped, logged), each for `KEEP_SECONDS`: a web process stopped
or restarted meanwhile forgets them, and the reconciler's check of open calls stays the
backstop (a forgotten mark: the log says `unknown`, not `fallback`; a forgotten
recording: the transcription callback, which posts the `RecordingUrl` again a minute
or more later, still attaches it, `ivr.voice.after_hours.transcribed`). The thread is
a daemon, so a graceful stop of the worker never waits for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from directory.redis_client import redis_unavailable
from ivr.metrics import count_call
from jobs.queues import enqueue_recording
from routing.acd import note_recording
from routing.availability import fallback_given
from routing.call_end import close_call
from routing.call_state import final_status
from routing.desk import Desk

log = logging.getLogger(__name__)

# Long enough for a Redis restart or a failover; past it, the reconciler's check.
KEEP_SECONDS = 120.0
# Writes of each kind kept per web process at most (a few hundred bytes each).
MAX_KEPT = 1000
# The first retry this long (s) after the callback failed, doubling up to the last.
FIRST_RETRY_SECONDS = 0.25
LAST_RETRY_SECONDS = 2.0



@dataclass(frozen=True)
class Kept:
    """One write Redis failed, waiting for the retry thread: `apply` does it (raising
    as Redis does), `what` names it in the log, `left_to` says who brings it once it is
    given up on, past `given_up_at` (time.monotonic())."""

    call_sid: str
    what: str
    apply: Callable[[], None]
    left_to: str
    given_up_at: float


# What the thread writes, in this order: the voicemails (`keep_recording`), the
# fallback marks (`keep_fallback`), the ends (`keep`), so an end applied here is logged
# with the recording and the mark of its call.
RECORDING, FALLBACK, END = "recording", "fallback", "end"
KINDS = (RECORDING, FALLBACK, END)


class KeptEnds:
    """This web process's writes waiting for Redis (see the module): final status
    callbacks, fallback marks and voicemails."""

    def __init__(self, desk: Desk, clock_ms: Callable[[], int]) -> None:
        self._desk = desk
        self._clock_ms = clock_ms
        self._kept: dict[str, dict[str, Kept]] = {kind: {} for kind in KINDS}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def keep(self, call_sid: str, call_status: str, duration: int, caller: str,
             ended_ms: int) -> bool:
        """Keep an end Redis failed, for the retry thread; False when it cannot be kept
        (the cap is reached: the reconciler will end the call)."""
        return self._keep(END, call_sid, f"its final status ({call_status})", partial(
            self._end, call_sid, call_status, duration, caller, ended_ms), "the reconciler")

    def keep_fallback(self, call_sid: str, how: str) -> bool:
        """Keep a fallback mark Redis failed (`how`: as `note_fallback`'s), given now,
        for the retry thread; False when it cannot be kept (the cap is reached: the
        log says fallback only if the fallback's `<Dial>` action tells)."""
        return self._keep(FALLBACK, call_sid, "its fallback reply's record", partial(
            fallback_given, self._desk, call_sid, how, self._clock_ms()),
            "the fallback's <Dial> action")

    def keep_recording(self, call_sid: str, url: str, seconds: str) -> bool:
        """Keep a voicemail Redis failed (`url`: RecordingUrl; `seconds`: its
        RecordingDuration), for the retry thread; False when it cannot be kept (the
        cap is reached: the transcription callback may still bring it)."""
        return self._keep(RECORDING, call_sid, f"its voicemail {url}", partial(
            self._recording, call_sid, url, seconds), "the transcription callback")

    def _keep(self, kind: str, call_sid: str, what: str, apply: Callable[[], None],
              left_to: str) -> bool:
        """Keep one write of `kind` for the call (the first kept wins); False at the cap."""
        with self._lock:
            kept = self._kept[kind]
            if call_sid not in kept and len(kept) >= MAX_KEPT:
                log.error("call %s: %s could not be written (Redis unreachable) and %d "
                          "are already kept: left to %s", call_sid, what, MAX_KEPT, left_to)
                return False
            kept.setdefault(call_sid, Kept(call_sid, what, apply, left_to,
                                           time.monotonic() + KEEP_SECONDS))
            self._start()
        log.warning("call %s: %s could not be written (Redis unreachable): kept, retried "
                    "for up to %d s", call_sid, what, KEEP_SECONDS)
        return True

    def _start(self) -> None:
        """Start the retry thread unless it runs (the lock held)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="kept-ends",
                                            daemon=True)
            self._thread.start()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(kept) for kept in self._kept.values())

    def _run(self) -> None:
        """Retry the kept writes, kind by kind in `KINDS`' order, with backoff until
        none is left."""
        pause = FIRST_RETRY_SECONDS
        while True:
            time.sleep(pause)
            with self._lock:
                due = [list(self._kept[kind].values()) for kind in KINDS]
                if not any(due):
                    self._thread = None
                    return
            if all(self._apply_each(kind, kept) for kind, kept in zip(KINDS, due, strict=True)):
                pause = FIRST_RETRY_SECONDS
            else:
                pause = min(pause * 2, LAST_RETRY_SECONDS)

    def _apply_each(self, kind: str, due: list[Kept]) -> bool:
        """Try each kept write once (one given up on is dropped, logged); True when
        Redis answered (none failed for Redis). A write that fails otherwise (a bug) is
        logged and dropped: trying it again would fail again."""
        for kept in due:
            if time.monotonic() > kept.given_up_at:
                log.error("call %s: %s could not be written for %d s (Redis unreachable): "
                          "left to %s", kept.call_sid, kept.what, KEEP_SECONDS, kept.left_to)
            else:
                try:
                    kept.apply()
                except Exception as exc:
                    if redis_unavailable(exc):
                        return False
                    log.exception("call %s: %s, kept, failed: left to %s", kept.call_sid,
                                  kept.what, kept.left_to)
            with self._lock:
                self._kept[kind].pop(kept.call_sid, None)
        return True

    def _recording(self, call_sid: str, url: str, seconds: str) -> None:
        """What `/voice/recorded` would have done: the recording on the call (added to
        its log if the call was logged already)."""
        if note_recording(self._desk, call_sid, url, seconds):
            enqueue_recording(self._desk.job_redis, call_sid)
        log.warning("call %s: its kept voicemail noted once Redis answered", call_sid)

    def _end(self, call_sid: str, call_status: str, duration: int, caller: str,
             ended_ms: int) -> None:
        """What the status callback would have done: end the call (first end wins; a
        repeat runs the releases again)."""
        call = close_call(self._desk, call_sid, call_status, duration, self._clock_ms(),
                          caller=caller, ended_ms=ended_ms)
        if call:
            count_call(call, final_status(call))
            log.warning("call %s: its kept final status (%s) applied once Redis "
                        "answered", call_sid, call_status)
