"""Server-sent events: each open page hears "something changed" within a moment
of any web process or worker changing presence or a queue (Redis pub/sub,
`routing.changes`), then re-reads its live part. A stream ends after a few
minutes, or as soon as its web process is told to stop, and the browser
reconnects by itself, so no thread is held forever and a graceful stop (a
deploy) is not held up by open pages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import redis
from flask import Response, current_app, session

from directory import keys
from ivr.console.pages import bp, signed_in
from ivr.console.web_sessions import still_signed_in
from ivr.context import desk

STREAM_SECONDS = 300
KEEPALIVE_SECONDS = 15
# app.extensions key: a callable telling whether this web process still serves (set by
# `caseline serve` from gunicorn's worker; absent, the process serves until it exits).
SERVING = "caseline.serving"


def _always() -> bool:
    return True


def change_events(r: redis.Redis, seconds: float = STREAM_SECONDS,
                  serving: Callable[[], bool] = _always,
                  signed_in: Callable[[], bool] = _always) -> Iterator[str]:
    """The event stream's text: a retry hint, then one `change` event per announcement.
    Ends after `seconds`, or within a second once `serving()` turns false, or within
    about two once `signed_in()` does (asked once a second: it reads Redis)."""
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(keys.desk_changes())
        yield "retry: 1000\n: connected\n\n"
        deadline = time.monotonic() + seconds
        quiet_since = asked_at = time.monotonic()
        while time.monotonic() < deadline and serving():
            if time.monotonic() - asked_at >= 1.0:
                if not signed_in():
                    return  # the browser reconnects, is refused, and the page signs in
                asked_at = time.monotonic()
            message = pubsub.get_message(timeout=1.0)
            if message is not None:
                yield f"event: change\ndata: {message['data']}\n\n"
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
    except redis.RedisError:
        return  # the page falls back to polling until the stream is back
    finally:
        pubsub.close()


class _HeldStream:
    """An event stream holding one of the process's stream slots until it is closed
    (the server closes it when the browser goes: at the latest, the next keep-alive)."""

    def __init__(self, events: Iterator[str], slots: threading.BoundedSemaphore) -> None:
        """Stream `events`; give the slot back on close."""
        self.events = events
        self.slots: threading.BoundedSemaphore | None = slots

    def __iter__(self) -> Iterator[str]:
        """The events."""
        return self.events

    def close(self) -> None:
        """End the stream and free its slot (once)."""
        self.events.close()  # type: ignore[attr-defined]
        slots, self.slots = self.slots, None
        if slots is not None:
            slots.release()


@bp.get("/events")
@signed_in()
def events() -> Response:
    """The event stream of presence and queue changes; 503 when this process holds
    all the streams it may (each holds a thread): the page polls instead."""
    slots: threading.BoundedSemaphore = current_app.extensions["caseline.console_streams"]
    if not slots.acquire(blocking=False):
        return Response("every event stream of this process is taken: poll\n", status=503,
                        mimetype="text/plain", headers={"Retry-After": "30"})
    serving = current_app.extensions.get(SERVING, _always)
    r, sid, stored = desk().r, session.sid, dict(session)  # type: ignore[attr-defined]
    changes = change_events(r, serving=serving,
                            signed_in=lambda: still_signed_in(r, sid, stored))
    return Response(_HeldStream(changes, slots),
                    mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
