"""Lockouts: failed verifications counted per calling number and per contact ID.

Caller ID is set by whoever places the call, so counting per number alone lets
rotating spoofed numbers guess a contact's 4-digit PIN without limit. Every
failure therefore counts twice, in Redis for every web process:

* per number: three within 15 minutes lock that number out of verification
  for 15 minutes;
* per contact ID (only an active contact's: any other ID is unknown): five
  within 24 hours, from any numbers, lock that contact's PIN for 24 hours or
  until an operator unlocks it (`unlock_contact`). A locked PIN is refused like
  a wrong one, so the caller cannot tell.

An attempt takes its place in both counts (`reserve`, one script) before its PIN
is checked, so guesses sent at once cannot all be checked while the counts still
read "unlocked": at most three checks per number and five per contact in their
windows, however many arrive together. A right PIN takes back its own place
(`withdraw`); a wrong one stays and may start the locks (`settle_failure`). Each
place is the call's CallSid and the attempt's place in the call, so Twilio
posting the same attempt again counts it once.

Times are the caller's clock (`now`), not Redis's: a lock is "locked until"
a timestamp, and Redis expiries only collect what is long over.
"""

from __future__ import annotations

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

# One attempt takes its place in both counts before its PIN is checked, atomically,
# so attempts that arrive together cannot all be checked while the counts still
# read "unlocked". KEYS: [1] the call's hash, [2] [3] the number's failures and
# lock, and only for an active contact's ID [4] [5] the contact's. ARGV: [1] now
# (ms), [2] the attempt (CallSid and its place in the call: the member it adds),
# [3] that place, [4] [5] the number's window (ms) and limit, [6] how long a count
# is kept (ms), [7] [8] the contact's window and limit, [9] its keep.
# Answers "repeat" (this attempt of this call was counted already: Twilio posted it
# again), "locked" (the number is locked, or its places are all taken by failures
# or by attempts being checked: nothing counted, nothing to check), "closed" (the
# contact is locked or its places are all taken: counted against both all the same,
# as a wrong PIN is, but not to be checked) or "check".
_RESERVE = """
local now = tonumber(ARGV[1])
local call = redis.call('EXISTS', KEYS[1]) == 1
if call and redis.call('HGET', KEYS[1], 'pin_checked') == ARGV[3] then return 'repeat' end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[4]))
if tonumber(redis.call('GET', KEYS[3]) or '0') > now
    or redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  return 'locked'
end
if call then redis.call('HSET', KEYS[1], 'pin_checked', ARGV[3]) end
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
if #KEYS < 5 then return 'check' end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[7]))
local open = tonumber(redis.call('GET', KEYS[5]) or '0') <= now
    and redis.call('ZCARD', KEYS[4]) < tonumber(ARGV[8])
redis.call('ZADD', KEYS[4], now, ARGV[2])
redis.call('PEXPIRE', KEYS[4], ARGV[9])
if open then return 'check' end
return 'closed'
"""

# An attempt found wrong (or not checked) stays counted: start each lock whose
# limit is reached (a lock already running is not extended: hammering a locked PIN
# does not keep its contact locked out for ever; the failures still count once it
# ends), and note the failure for the stats. KEYS: [1] [2] the number's failures
# and lock, [3] the line's recent failures, [4] [5] the contact's (if counted).
# ARGV: [1] now (ms), [2] the attempt, [3] [4] [5] the number's limit, lock (ms)
# and keep (ms), [6] what "recent" means for the stats (ms), [7] [8] [9] the
# contact's limit, lock and keep. Answers {failures, locked until, started} for
# the number, then for the contact.
_SETTLE_FAILURE = """
local now = tonumber(ARGV[1])
local function settle(failures_key, lock_key, limit, lock, keep)
  local failures = redis.call('ZCARD', failures_key)
  local locked_until = tonumber(redis.call('GET', lock_key) or '0')
  local started = 0
  if locked_until <= now and failures >= tonumber(limit) then
    locked_until = now + tonumber(lock)
    redis.call('SET', lock_key, locked_until, 'PX', keep)
    started = 1
  end
  return {failures, locked_until, started}
end
local out = settle(KEYS[1], KEYS[2], ARGV[3], ARGV[4], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[6]))
redis.call('ZADD', KEYS[3], now, ARGV[2])
redis.call('PEXPIRE', KEYS[3], 2 * tonumber(ARGV[6]))
if #KEYS > 3 then
  local contact = settle(KEYS[4], KEYS[5], ARGV[7], ARGV[8], ARGV[9])
  out[4], out[5], out[6] = contact[1], contact[2], contact[3]
end
return out
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
    contact: Count | None  # None when the typed ID is no active contact's


@dataclass(frozen=True)
class Attempt:
    """One PIN attempt's place in the counts: `place` is "check" (check the PIN),
    "closed" (the contact's PIN is locked: counted, not to be checked), "locked"
    (the number is locked: nothing counted) or "repeat" (Twilio's repeat of an
    attempt counted already)."""

    place: str
    member: str
    caller: str
    contact_id: str | None  # the active contact it counts against, if any


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


def reserve(r: redis.Redis, call_sid: str, attempt: str, caller: str,
            contact_id: str | None, now: datetime) -> Attempt:
    """Take a PIN attempt's place in the number's count (and in the contact's, for an
    active contact's ID) before its PIN is checked: one script, so attempts that
    arrive together are counted one after another. `attempt` is the attempt's place
    in the call: one attempt of one call counts once however often it is posted."""
    now_ms = _ms(now)
    member = f"{call_sid}:{attempt}"
    counters = [keys.call(call_sid), keys.verify_failures(caller), keys.verify_lock(caller)]
    if contact_id:
        counters += [keys.pin_failures(contact_id), keys.pin_lock(contact_id)]
    place = script(r, _RESERVE)(keys=counters, args=[
        now_ms, member, attempt, NUMBER_WINDOW_SECONDS * 1000, NUMBER_MAX_FAILURES,
        _keep_ms(NUMBER_WINDOW_SECONDS, NUMBER_LOCK_SECONDS), CONTACT_WINDOW_SECONDS * 1000,
        CONTACT_MAX_FAILURES, _keep_ms(CONTACT_WINDOW_SECONDS, CONTACT_LOCK_SECONDS)], client=r)
    return Attempt(place.decode() if isinstance(place, bytes) else str(place), member, caller,
                   contact_id)


def withdraw(r: redis.Redis, attempt: Attempt) -> None:
    """Take back an attempt's own place in the counts (its PIN was right, or it could
    not be checked): every other attempt, failed or still being checked, stands."""
    pipe = r.pipeline(transaction=True)
    pipe.zrem(keys.verify_failures(attempt.caller), attempt.member)
    if attempt.contact_id:
        pipe.zrem(keys.pin_failures(attempt.contact_id), attempt.member)
    pipe.execute()


def settle_failure(r: redis.Redis, attempt: Attempt, now: datetime) -> Failure:
    """An attempt whose PIN was wrong (or was not checked) stays counted: start the
    locks it brings to their limits."""
    counters = [keys.verify_failures(attempt.caller), keys.verify_lock(attempt.caller),
                keys.verify_failures_recent()]
    if attempt.contact_id:
        counters += [keys.pin_failures(attempt.contact_id), keys.pin_lock(attempt.contact_id)]
    now_ms = _ms(now)
    out = [int(value) for value in script(r, _SETTLE_FAILURE)(keys=counters, args=[
        now_ms, attempt.member, NUMBER_MAX_FAILURES, NUMBER_LOCK_SECONDS * 1000,
        _keep_ms(NUMBER_WINDOW_SECONDS, NUMBER_LOCK_SECONDS), RECENT_SECONDS * 1000,
        CONTACT_MAX_FAILURES, CONTACT_LOCK_SECONDS * 1000,
        _keep_ms(CONTACT_WINDOW_SECONDS, CONTACT_LOCK_SECONDS)], client=r)]
    number = Count(out[0], out[1] > now_ms, bool(out[2]))
    contact = Count(out[3], out[4] > now_ms, bool(out[5])) if len(out) > 3 else None
    return Failure(number, contact)


def _keep_ms(window: int, lock: int) -> int:
    """How long a counter is kept (on Redis's clock): well past its window and its lock."""
    return (window + lock) * 1000


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
