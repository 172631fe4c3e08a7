"""Lockouts: failed verifications counted per calling number and per contact ID.

Caller ID is set by whoever places the call, so counting per number alone lets
rotating spoofed numbers guess a contact's 4-digit PIN without limit. Every
failure therefore counts twice, in Redis for every web process:

* per number: three within 15 minutes lock that number out of verification
  for 15 minutes;
* per contact ID (only an ID that exists): five within 24 hours, from any
  numbers, lock that contact's PIN for 24 hours or until an operator unlocks
  it (`unlock_contact`). A locked PIN is refused like a wrong one, so the
  caller cannot tell.

Times are the caller's clock (`now`), not Redis's: a lock is "locked until"
a timestamp, and Redis expiries only collect what is long over.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import redis
from sqlalchemy.orm import Session, sessionmaker

import directory
from directory import keys
from directory.scripts import script

NUMBER_MAX_FAILURES = 3
NUMBER_WINDOW_SECONDS = 15 * 60
NUMBER_LOCK_SECONDS = 15 * 60

CONTACT_MAX_FAILURES = 5
CONTACT_WINDOW_SECONDS = 24 * 3600
CONTACT_LOCK_SECONDS = 24 * 3600

RECENT_SECONDS = 3600

# One failure against one counter, atomically: forget failures older than the
# window, add this one, and start the lock when the limit is reached (a lock
# already running is not extended: hammering a locked PIN does not keep its
# contact locked out for ever; the failures still count once it ends).
_RECORD_FAILURE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
local failures = redis.call('ZCARD', KEYS[1])
local locked_until = tonumber(redis.call('GET', KEYS[2]) or '0')
local started = 0
if locked_until <= now and failures >= tonumber(ARGV[4]) then
  locked_until = now + tonumber(ARGV[5])
  redis.call('SET', KEYS[2], locked_until, 'PX', ARGV[6])
  started = 1
end
return {failures, locked_until, started}
"""


@dataclass(frozen=True)
class Count:
    """One counter after a failure: how many in its window, and its lock."""

    failures: int = 0
    locked: bool = False
    lock_started: bool = False


@dataclass(frozen=True)
class Failure:
    """A failed verification, counted against the number and the contact ID."""

    number: Count
    contact: Count | None  # None when the typed ID is no contact's


def _ms(now: datetime) -> int:
    """A time as epoch milliseconds."""
    return int(now.timestamp() * 1000)


def _locked_until(r: redis.Redis, key: str) -> int:
    """A lock's end (ms), 0 when there is none."""
    value = r.get(key)
    try:
        return int(value or 0)  # type: ignore[arg-type]
    except ValueError:
        return 0


def number_locked(r: redis.Redis, caller: str, now: datetime) -> bool:
    """Whether this number is locked out of verification right now."""
    return _locked_until(r, keys.verify_lock(caller)) > _ms(now)


def contact_locked(r: redis.Redis, contact_id: str, now: datetime) -> bool:
    """Whether this contact's PIN is locked right now."""
    return _locked_until(r, keys.pin_lock(contact_id)) > _ms(now)


def number_failures(r: redis.Redis, caller: str, now: datetime) -> int:
    """Failed verifications from a number within its window."""
    return int(r.zcount(keys.verify_failures(caller),
                        _ms(now) - NUMBER_WINDOW_SECONDS * 1000 + 1, "+inf"))


def contact_failures(r: redis.Redis, contact_id: str, now: datetime) -> int:
    """Failed PINs for a contact within its window."""
    return int(r.zcount(keys.pin_failures(contact_id),
                        _ms(now) - CONTACT_WINDOW_SECONDS * 1000 + 1, "+inf"))


def _count(r: redis.Redis, failures_key: str, lock_key: str, now_ms: int, *,
           window: int, limit: int, lock: int) -> Count:
    """Run the failure script on one counter (windows and locks in seconds)."""
    member = f"{now_ms}:{secrets.token_hex(6)}"
    # Kept (on Redis's clock) well past both the window and the lock.
    keep_ms = (window + lock) * 1000
    failures, locked_until, started = script(r, _RECORD_FAILURE)(
        keys=[failures_key, lock_key],
        args=[now_ms, member, window * 1000, limit, lock * 1000, keep_ms], client=r)
    return Count(int(failures), int(locked_until) > now_ms, bool(started))


def record_failure(r: redis.Redis, caller: str, contact_id: str | None,
                   now: datetime) -> Failure:
    """Count one failed verification from `caller` (and against `contact_id`, if a contact's)."""
    now_ms = _ms(now)
    number = _count(r, keys.verify_failures(caller), keys.verify_lock(caller), now_ms,
                    window=NUMBER_WINDOW_SECONDS, limit=NUMBER_MAX_FAILURES,
                    lock=NUMBER_LOCK_SECONDS)
    contact = None
    if contact_id:
        contact = _count(r, keys.pin_failures(contact_id), keys.pin_lock(contact_id), now_ms,
                         window=CONTACT_WINDOW_SECONDS, limit=CONTACT_MAX_FAILURES,
                         lock=CONTACT_LOCK_SECONDS)
    recent = keys.verify_failures_recent()
    pipe = r.pipeline(transaction=False)
    pipe.zremrangebyscore(recent, "-inf", now_ms - RECENT_SECONDS * 1000)
    pipe.zadd(recent, {f"{now_ms}:{secrets.token_hex(6)}": now_ms})
    pipe.pexpire(recent, 2 * RECENT_SECONDS * 1000)
    pipe.execute()
    return Failure(number, contact)


def failures_last_hour(r: redis.Redis, now: datetime) -> int:
    """Failed verifications on the whole line in the hour before `now`."""
    now_ms = _ms(now)
    return int(r.zcount(keys.verify_failures_recent(), now_ms - RECENT_SECONDS * 1000 + 1,
                        now_ms))


def unlock_contact(
    r: redis.Redis, session_factory: sessionmaker[Session] | None, contact_id: str,
    now: datetime,
) -> bool | None:
    """An operator lifts a contact's PIN lockout (and forgets its failures).

    None when there is no such contact; else whether the PIN was locked.
    """
    if directory.find_contact(r, session_factory, contact_id) is None:
        return None
    was_locked = contact_locked(r, contact_id, now)
    r.delete(keys.pin_lock(contact_id), keys.pin_failures(contact_id))
    return was_locked
