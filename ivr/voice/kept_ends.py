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
# Ends kept per web process at most (a few hundred bytes each).
MAX_KEPT = 1000
# The first retry this long (s) after the callback failed, doubling up to the last.
FIRST_RETRY_SECONDS = 0.25
LAST_RETRY_SECONDS = 2.0



@dataclass(frozen=True)
class KeptEnd:
    """A final status callback not applied yet: what `close_call` needs."""

    call_sid: str
    call_status: str
    duration: int
    caller: str
    ended_ms: int
    given_up_at: float  # time.monotonic() past which it is dropped


@dataclass(frozen=True)
class KeptRecording:
    """A voicemail's `<Record>` action not applied yet: what `note_recording` needs."""

    call_sid: str
    url: str  # Twilio's RecordingUrl (at most 512 characters)
    seconds: str  # Twilio's RecordingDuration (s), as posted
    given_up_at: float  # time.monotonic() past which it is dropped


class KeptEnds:
    """This web process's final status callbacks waiting for Redis (see the module)."""

    def __init__(self, desk: Desk, clock_ms: Callable[[], int]) -> None:
        self._desk = desk
        self._clock_ms = clock_ms
        self._ends: dict[str, KeptEnd] = {}
        # CallSid -> (how the fallback was given, when (ms since the epoch),
        # time.monotonic() past which dropped)
        self._fallbacks: dict[str, tuple[str, int, float]] = {}
        self._recordings: dict[str, KeptRecording] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def keep(self, call_sid: str, call_status: str, duration: int, caller: str,
             ended_ms: int) -> bool:
        """Keep an end Redis failed, for the retry thread; False when it cannot be kept
        (the cap is reached: the reconciler will end the call)."""
        with self._lock:
            if call_sid not in self._ends and len(self._ends) >= MAX_KEPT:
                log.error("call %s: its final status (%s) could not be applied (Redis "
                          "unreachable) and %d ends are already kept: left to the "
                          "reconciler", call_sid, call_status, MAX_KEPT)
                return False
            self._ends.setdefault(call_sid, KeptEnd(
                call_sid, call_status, duration, caller, ended_ms,
                time.monotonic() + KEEP_SECONDS))
            self._start()
        log.warning("call %s: its final status (%s) could not be applied (Redis "
                    "unreachable): kept, retried for up to %d s", call_sid, call_status,
                    KEEP_SECONDS)
        return True

    def keep_fallback(self, call_sid: str, how: str) -> bool:
        """Keep a fallback mark Redis failed (`how`: as `note_fallback`'s), given now,
        for the retry thread; False when it cannot be kept (the cap is reached)."""
        with self._lock:
            if call_sid not in self._fallbacks and len(self._fallbacks) >= MAX_KEPT:
                log.error("call %s: given the fallback reply with Redis unreachable, and "
                          "%d marks are already kept: its log will not say fallback "
                          "unless the fallback's <Dial> action tells", call_sid, MAX_KEPT)
                return False
            self._fallbacks.setdefault(
                call_sid, (how, self._clock_ms(), time.monotonic() + KEEP_SECONDS))
            self._start()
        return True

    def keep_recording(self, call_sid: str, url: str, seconds: str) -> bool:
        """Keep a voicemail Redis failed (`url`: RecordingUrl; `seconds`: its
        RecordingDuration), for the retry thread; False when it cannot be kept (the
        cap is reached: the transcription callback may still bring it)."""
        with self._lock:
            if call_sid not in self._recordings and len(self._recordings) >= MAX_KEPT:
                log.error("call %s: its voicemail %s could not be kept (Redis unreachable, "
                          "%d kept already): left to the transcription callback",
                          call_sid, url, MAX_KEPT)
                return False
            self._recordings.setdefault(call_sid, KeptRecording(
                call_sid, url, seconds, time.monotonic() + KEEP_SECONDS))
            self._start()
        log.warning("call %s: its voicemail %s could not be noted (Redis unreachable): "
                    "kept, retried for up to %d s", call_sid, url, KEEP_SECONDS)
        return True

    def _start(self) -> None:
        """Start the retry thread unless it runs (the lock held)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="kept-ends",
                                            daemon=True)
            self._thread.start()

    def __len__(self) -> int:
        with self._lock:
            return len(self._ends) + len(self._fallbacks) + len(self._recordings)

    def _run(self) -> None:
        """Retry the kept recordings, marks and ends (in that order, so an end applied
        here is logged with them) with backoff until none is left."""
        pause = FIRST_RETRY_SECONDS
        while True:
            time.sleep(pause)
            with self._lock:
                ends = list(self._ends.values())
                fallbacks = list(self._fallbacks.items())
                recordings = list(self._recordings.values())
                if not ends and not fallbacks and not recordings:
                    self._thread = None
                    return
            if (self._apply_recordings(recordings) and self._apply_fallbacks(fallbacks)
                    and self._apply_all(ends)):
                pause = FIRST_RETRY_SECONDS
            else:
                pause = min(pause * 2, LAST_RETRY_SECONDS)

    def _apply_recordings(self, recordings: list[KeptRecording]) -> bool:
        """Note each kept voicemail on its call once (added to its log if the call was
        logged already); True when Redis answered."""
        for kept in recordings:
            if time.monotonic() <= kept.given_up_at:
                try:
                    if note_recording(self._desk, kept.call_sid, kept.url, kept.seconds):
                        enqueue_recording(self._desk.job_redis, kept.call_sid)
                    log.warning("call %s: its kept voicemail noted once Redis answered",
                                kept.call_sid)
                except Exception as exc:
                    if redis_unavailable(exc):
                        return False
                    log.exception("call %s: its kept voicemail %s failed", kept.call_sid,
                                  kept.url)
            else:
                log.error("call %s: its voicemail %s could not be noted for %d s (Redis "
                          "unreachable): left to the transcription callback",
                          kept.call_sid, kept.url, KEEP_SECONDS)
            with self._lock:
                self._recordings.pop(kept.call_sid, None)
        return True

    def _apply_fallbacks(self, fallbacks: list[tuple[str, tuple[str, int, float]]]) -> bool:
        """Write each kept fallback mark once; True when Redis answered."""
        for call_sid, (how, given_ms, given_up_at) in fallbacks:
            if time.monotonic() <= given_up_at:
                try:
                    fallback_given(self._desk, call_sid, how, given_ms)
                except Exception as exc:
                    if redis_unavailable(exc):
                        return False
                    log.exception("call %s: its kept fallback mark failed", call_sid)
            else:
                log.error("call %s: given the fallback reply, which could not be recorded "
                          "for %d s (Redis unreachable)", call_sid, KEEP_SECONDS)
            with self._lock:
                self._fallbacks.pop(call_sid, None)
        return True

    def _apply_all(self, ends: list[KeptEnd]) -> bool:
        """Try each end once; True when Redis answered (none failed for Redis)."""
        for end in ends:
            if time.monotonic() > end.given_up_at:
                log.error("call %s: its final status (%s) could not be applied for "
                          "%d s (Redis unreachable): left to the reconciler",
                          end.call_sid, end.call_status, KEEP_SECONDS)
                self._forget(end.call_sid)
                continue
            try:
                self._apply(end)
            except Exception as exc:
                if redis_unavailable(exc):
                    return False
                log.exception("call %s: its kept final status failed: left to the "
                              "reconciler", end.call_sid)
            self._forget(end.call_sid)
        return True

    def _apply(self, end: KeptEnd) -> None:
        """What the status callback would have done: end the call (first end wins)."""
        call = close_call(self._desk, end.call_sid, end.call_status, end.duration,
                          self._clock_ms(), caller=end.caller, ended_ms=end.ended_ms)
        if call:
            count_call(call, final_status(call))
            log.warning("call %s: its kept final status (%s) applied once Redis "
                        "answered", end.call_sid, end.call_status)

    def _forget(self, call_sid: str) -> None:
        """Drop an end: applied, found ended already, or given up on."""
        with self._lock:
            self._ends.pop(call_sid, None)
