"""Announcing that the desk changed (an advisor's presence, a queue), on one
Redis pub/sub channel, so every web process can tell the pages it serves.

The message says only what kind of thing changed; a page re-reads the state
it shows. Announcing is best effort: a lost message costs a page one polling
interval, never a call.
"""

from __future__ import annotations

import logging

import redis

from directory import keys

log = logging.getLogger(__name__)

KINDS = ("presence", "queue")


def announce_change(r: redis.Redis, kind: str) -> None:
    """Publish that presence or a queue changed (errors are logged, never raised)."""
    try:
        r.publish(keys.desk_changes(), kind)
    except redis.RedisError as exc:  # the change itself is done; a page will poll
        log.warning("could not announce a %s change: %s", kind, exc)
