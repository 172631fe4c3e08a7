"""Server-sent events: each open page hears "something changed" within a moment
of any web process or worker changing presence or a queue (Redis pub/sub,
`routing.changes`), then re-reads its live part. A stream ends after a few
minutes and the browser reconnects by itself, so no thread is held forever."""

from __future__ import annotations

import time
from collections.abc import Iterator

import redis
from flask import Response

from directory import keys
from ivr.console.pages import bp, signed_in
from ivr.context import desk

STREAM_SECONDS = 300
KEEPALIVE_SECONDS = 15


def change_events(r: redis.Redis, seconds: float = STREAM_SECONDS) -> Iterator[str]:
    """The event stream's text: a retry hint, then one `change` event per announcement."""
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(keys.desk_changes())
        yield "retry: 1000\n: connected\n\n"
        deadline = time.monotonic() + seconds
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
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


@bp.get("/events")
@signed_in()
def events() -> Response:
    """The event stream of presence and queue changes."""
    return Response(change_events(desk().r), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
