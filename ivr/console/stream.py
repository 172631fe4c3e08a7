"""Server-sent events: each open page hears "something changed" within a moment
of any web process or worker changing presence or a queue (Redis pub/sub,
`routing.changes`), then re-reads its live part. A stream ends after a few
minutes, or as soon as its web process is told to stop, and the browser
reconnects by itself, so no thread is held forever and a graceful stop (a
deploy) is not held up by open pages.

Every few seconds the stream pings Redis and, when Redis answers, tells the page
`alive`. A Redis that stops answering (frozen, a network partition: no error,
just silence) ends the stream within the client's socket timeout, and a page
that hears nothing for a while (`console.js`: three beats) takes the stream for
dead and polls, saying so, instead of showing stale figures as live."""

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
# How often the stream checks that Redis answers and tells the page it is alive (the
# page gives the stream up after three beats of silence: console.js STREAM_SILENCE_MS).
HEARTBEAT_SECONDS = 5
# app.extensions key: a callable telling whether this web process still serves (set by
# `caseline serve` from gunicorn's worker; absent, the process serves until it exits).
SERVING = "caseline.serving"


def _always() -> bool:
    return True


def change_events(r: redis.Redis, seconds: float = STREAM_SECONDS,
                  serving: Callable[[], bool] = _always,
                  signed_in: Callable[[], bool] = _always,
                  heartbeat: float = HEARTBEAT_SECONDS) -> Iterator[str]:
    """The event stream's text: a retry hint, then one `change` event per announcement
    and an `alive` event every `heartbeat` seconds once Redis answered a PING. Ends
    after `seconds`, within a second once `serving()` turns false, within about two
    once `signed_in()` does (asked once a second: it reads Redis), or when Redis fails
    or does not answer (`r`'s socket timeout: a frozen Redis raises no error)."""
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(keys.desk_changes())
        yield "retry: 1000\n: connected\n\n"
        deadline = time.monotonic() + seconds
        beat = asked_at = time.monotonic()
        while time.monotonic() < deadline and serving():
            if time.monotonic() - asked_at >= 1.0:
                if not signed_in():
                    return  # the browser reconnects, is refused, and the page signs in
                asked_at = time.monotonic()
            message = pubsub.get_message(timeout=1.0)
            if message is not None:
                yield f"event: change\ndata: {message['data']}\n\n"
            if time.monotonic() - beat >= heartbeat:
                # A PING on a pooled connection (redis-py's pub/sub PING reply is not
                # readable with decoded replies); the subscription's own connection
                # failing raises in get_message.
                r.ping()
                beat = time.monotonic()
                yield "event: alive\ndata: \n\n"
    except redis.RedisError:
        return  # the page falls back to polling until the stream is back
    finally:
        pubsub.close()


class _HeldStream:
    """An event stream holding one of the process's stream slots until it is closed
    (the server closes it when the browser goes: at the latest, the next heartbeat)."""

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
