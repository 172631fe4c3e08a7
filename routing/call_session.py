"""A call's session in Redis: everything the call log will say, gathered as
the call goes.

Webhooks append to the session; they never write SQL. The worker reads it
when the call is over and writes the call log.
"""

from __future__ import annotations

import redis

from routing import keys

SESSION_TTL_SECONDS = 24 * 3600


def start_session(r: redis.Redis, call_sid: str, fields: dict[str, str | int]) -> bool:
    """Open a call's session; False (and nothing changed) if it already exists."""
    key = keys.call(call_sid)
    pipe = r.pipeline()
    pipe.hsetnx(key, "started_at", fields.get("started_at", 0))
    pipe.expire(key, SESSION_TTL_SECONDS)
    created, _ = pipe.execute()
    if created:
        r.hset(key, mapping={k: str(v) for k, v in fields.items()})
    return bool(created)


def get_session(r: redis.Redis, call_sid: str) -> dict[str, str]:
    """The call's session as a dict of strings ({} when unknown)."""
    return r.hgetall(keys.call(call_sid))  # type: ignore[return-value]


def update_session(r: redis.Redis, call_sid: str, **fields: str | int | float) -> None:
    """Set fields of a call's session (and keep it alive)."""
    key = keys.call(call_sid)
    pipe = r.pipeline()
    pipe.hset(key, mapping={k: str(v) for k, v in fields.items()})
    pipe.expire(key, SESSION_TTL_SECONDS)
    pipe.execute()


def append_menu(r: redis.Redis, call_sid: str, step: str) -> None:
    """Append one step (a key, a case number) to the call's menu path."""
    key = keys.call(call_sid)
    current = r.hget(key, "menu") or ""
    r.hset(key, "menu", f"{current}>{step}" if current else step)


def is_ended(r: redis.Redis, call_sid: str) -> bool:
    """Whether the call's end has already been recorded."""
    return bool(r.exists(keys.call_ended(call_sid)))


def mark_ended(r: redis.Redis, call_sid: str) -> bool:
    """Record the call's end once; True only for the first caller."""
    return bool(r.set(keys.call_ended(call_sid), "1", nx=True, ex=SESSION_TTL_SECONDS))


def tried_advisors(r: redis.Redis, call_sid: str) -> list[str]:
    """Advisors rung on this call, in order."""
    raw = r.hget(keys.call(call_sid), "tried") or ""
    return [a for a in raw.split(",") if a]


def record_try(r: redis.Redis, call_sid: str, advisor_id: str) -> None:
    """Note that an advisor was rung on this call (for the call log)."""
    key = keys.call(call_sid)
    current = r.hget(key, "tried") or ""
    r.hset(key, "tried", f"{current},{advisor_id}" if current else advisor_id)
