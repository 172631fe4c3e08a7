"""The known-incident announcement played at the greeting and on option 8."""

from __future__ import annotations

import redis

from directory import keys


def set_announcement(r: redis.Redis, text: str, active: bool) -> dict[str, object]:
    """Store the announcement; returns it as the API shows it."""
    r.hset(keys.announcement(), mapping={"text": text.strip(), "active": "1" if active else "0"})
    return {"text": text.strip(), "active": active}


def active_announcement(r: redis.Redis) -> str | None:
    """The announcement's text while it is active, else None."""
    text, active = r.hmget(keys.announcement(), "text", "active")
    return text if active == "1" and text else None


def current_announcement(r: redis.Redis) -> dict[str, object]:
    """The stored announcement, active or not, as the API shows it."""
    text, active = r.hmget(keys.announcement(), "text", "active")
    return {"text": text or "", "active": active == "1"}
