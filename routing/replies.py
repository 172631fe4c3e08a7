"""Replies to webhooks Twilio repeats.

Twilio retries a webhook that timed out or failed with the same
`I-Twilio-Idempotency-Token` header. The repeat must change nothing (one
wrong PIN counted once, one key recorded once) and hear what the first
request answered. The first request claims the token; its reply is kept for
an hour under it; a repeat gets that reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from directory import keys
from directory.scripts import script

REPLY_TTL_SECONDS = 3600
PENDING = "pending"
# How long a repeat waits for the first request's reply (Twilio's own timeout
# for a webhook is 15 s; the first request is usually long done).
WAIT_FOR_FIRST_SECONDS = 5.0


# The live-call check of every webhook and the claim of its token, one round trip:
# the token is claimed only for a call that exists (a refused webhook changes nothing).
_ADMIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if #KEYS < 2 then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
return 0
"""


def admit_call(r: redis.Redis, call_sid: str, token: str = "") -> tuple[bool, bool]:
    """(whether the call exists, whether this request claimed `token`), in one round trip;
    with no token, only the first."""
    found = script(r, _ADMIT)(
        keys=[keys.call(call_sid), *([keys.webhook_reply(token)] if token else [])],
        args=[PENDING, REPLY_TTL_SECONDS], client=r)
    return int(found) >= 0, int(found) == 1


def claim_token(r: redis.Redis, token: str) -> bool:
    """True when this request is the first with `token` (it must answer, then `keep_reply`)."""
    return bool(r.set(keys.webhook_reply(token), PENDING, nx=True, ex=REPLY_TTL_SECONDS))


def keep_reply(r: redis.Redis, token: str, status: int, body: str) -> None:
    """Remember what the first request with `token` answered (HTTP status and body)."""
    r.set(keys.webhook_reply(token), f"{status}\n{body}", ex=REPLY_TTL_SECONDS)


def earlier_reply(
    r: redis.Redis, token: str, *, wait_seconds: float = WAIT_FOR_FIRST_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, str] | None:
    """The reply the first request with `token` gave, as (status, body).

    Waits up to `wait_seconds` while that request is still running; None when
    there is no reply to give (the first request died): the repeat is then
    handled as new.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        value = r.get(keys.webhook_reply(token))
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        if text != PENDING:
            status, _, body = text.partition("\n")
            return int(status), body
        if time.monotonic() >= deadline:
            return None
        sleep(0.05)
