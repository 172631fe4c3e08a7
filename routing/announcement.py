"""The known-incident announcement played at the greeting and on option 8."""

from __future__ import annotations

import redis

from directory import keys


def set_announcement(r: redis.Redis, text: str | None, active: bool) -> dict[str, object]:
    """Store the announcement (`text` None: keep the stored text, so turning it off and
    on again keeps it); returns it as the API shows it."""
    fields = {"active": "1" if active else "0"}
    if text is not None:
        fields["text"] = text.strip()
    pipe = r.pipeline(transaction=True)  # the answer is what this change stored
    pipe.hset(keys.announcement(), mapping=fields)
    pipe.hget(keys.announcement(), "text")
    stored = pipe.execute()[1]
    return {"text": stored or "", "active": active}


def active_announcement(r: redis.Redis) -> str | None:
    """The announcement's text while it is active, else None."""
    text, active = r.hmget(keys.announcement(), "text", "active")
    return text if active == "1" and text else None


def current_announcement(r: redis.Redis) -> dict[str, object]:
    """The stored announcement, active or not, as the API shows it."""
    text, active = r.hmget(keys.announcement(), "text", "active")
    return {"text": text or "", "active": active == "1"}
