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
read "unlocked": a place is refused while the settled failures and the attempts
still being checked fill the limit, so at most three checks per number and five
per contact in their windows, however many arrive together. An attempt being
checked is *pending*, apart from the failures: a right PIN takes back its own
place (`withdraw`); a wrong one moves into the failures (`settle_failure`), and
only settled failures start a lock or are reported, so a check still running
for another call (that may turn out right) never counts as a failure. A pending
place frees itself after `PENDING_SECONDS` should its check never settle (its web
process died). Each place is the call's CallSid and the attempt's place in the
call, so Twilio posting the same attempt again counts it once, and a late post of
an earlier attempt of the call is neither checked nor counted.

A lock that is running is not lengthened by the attempts made during it, but a
locked contact's attempts count as failures (unchecked, as a wrong PIN is): if
five or more of them fall within the 24 hours before the lock ends, the next
attempt after it locks the contact again. A contact whose ID is hammered stays
locked while the hammering goes on (five attempts a day suffice), and is free 24
hours after the last lock started once it stops, or when an operator unlocks it.

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

# How long a place held by a PIN check stands without being settled or withdrawn:
# far longer than a check (one scrypt, one database read) and than Twilio waits for
# a webhook's answer (15 s), so only a check whose process died loses its place.
PENDING_SECONDS = 60

# One attempt takes its place in both counts before its PIN is checked, atomically,
# so attempts that arrive together cannot all be checked while the counts still
# read "unlocked". KEYS: [1] the call's hash, [2] [3] [4] the number's failures,
# pending checks and lock, and only for an active contact's ID [5] [6] [7] the
# contact's. ARGV: [1] now (ms), [2] the attempt's member (CallSid:attempt), [3]
# the attempt (its place in the call), [4] [5] [6] [7] the number's window, limit,
# lock and keep (ms), [8] [9] [10] [11] the contact's, [12] how long a pending place
# stands (ms).
# Answers:
# * "stale": the call has gone on to a later attempt (a late post of an earlier one);
# * "repeat": this attempt of this call was counted already (Twilio posted it again);
# * "locked": the number is locked (a lock that exists: one is started here when the
#   settled failures reached the limit while an earlier lock ran): nothing counted;
# * "number-busy": the number's settled failures and pending checks fill its limit,
#   no lock: nothing counted, nothing to check;
# * "closed": the contact is locked: pending against both all the same, to be
#   settled as a wrong PIN is, but not checked;
# * "contact-busy": the contact's settled failures and pending checks fill its
#   limit, no lock: nothing counted, not checked;
# * "check": pending against both (the number only, for no active contact's ID).
# Pending places are scored by when they expire; failures by when they settled.
_RESERVE = """
local now = tonumber(ARGV[1])
local attempt = tonumber(ARGV[3]) or 0
local call = redis.call('EXISTS', KEYS[1]) == 1
if call then
  if (tonumber(redis.call('HGET', KEYS[1], 'pin_try')) or 0) ~= attempt then
    return 'stale'
  end
  local checked = tonumber(redis.call('HGET', KEYS[1], 'pin_checked'))
  if checked and checked >= attempt then return 'repeat' end
end
local function state(failures, pending, lock, window, limit, lock_ms, keep)
  redis.call('ZREMRANGEBYSCORE', failures, '-inf', now - tonumber(window))
  redis.call('ZREMRANGEBYSCORE', pending, '-inf', now)
  local settled = redis.call('ZCARD', failures)
  local locked_until = tonumber(redis.call('GET', lock) or '0')
  if locked_until <= now and settled >= tonumber(limit) then
    redis.call('SET', lock, now + tonumber(lock_ms), 'PX', keep)
    return 'locked'
  end
  if locked_until > now then return 'locked' end
  if settled + redis.call('ZCARD', pending) >= tonumber(limit) then return 'busy' end
  return 'open'
end
local number = state(KEYS[2], KEYS[3], KEYS[4], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
if number == 'locked' then return 'locked' end
if number == 'busy' then return 'number-busy' end
local contact = 'open'
if #KEYS >= 7 then
  contact = state(KEYS[5], KEYS[6], KEYS[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
  if contact == 'busy' then return 'contact-busy' end
end
if call then redis.call('HSET', KEYS[1], 'pin_checked', attempt) end
local expires = now + tonumber(ARGV[12])
redis.call('ZADD', KEYS[3], expires, ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[7])
if #KEYS >= 7 then
  redis.call('ZADD', KEYS[6], expires, ARGV[2])
  redis.call('PEXPIRE', KEYS[6], ARGV[11])
end
if contact == 'locked' then return 'closed' end
return 'check'
"""

# An attempt found wrong (or not checked) moves from pending into the failures: start
# each lock its settled failures bring to the limit (a lock already running is not
# extended; see the module's docstring for what the failures made during it do), and
# note the failure for the stats. Only settled failures count here: an attempt of
# another call still being checked may yet turn out right. KEYS: [1] [2] [3] the
# number's failures, pending checks and lock, [4] the line's recent failures, [5]
# [6] [7] the contact's (if counted). ARGV: [1] now (ms), [2] the attempt's member,
# [3] [4] [5] [6] the number's window, limit, lock (ms) and keep (ms), [7] what
# "recent" means for the stats (ms), [8] [9] [10] [11] the contact's window, limit,
# lock and keep. Answers {failures, locked until, started} for the number, then for
# the contact.
_SETTLE_FAILURE = """
local now = tonumber(ARGV[1])
local function settle(failures_key, pending_key, lock_key, window, limit, lock, keep)
  redis.call('ZREM', pending_key, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', failures_key, '-inf', now - tonumber(window))
  redis.call('ZADD', failures_key, now, ARGV[2])
  redis.call('PEXPIRE', failures_key, keep)
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
local out = settle(KEYS[1], KEYS[2], KEYS[3], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[7]))
redis.call('ZADD', KEYS[4], now, ARGV[2])
redis.call('PEXPIRE', KEYS[4], 2 * tonumber(ARGV[7]))
if #KEYS > 4 then
  local contact = settle(KEYS[5], KEYS[6], KEYS[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
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
    """One PIN attempt's place in the counts: `place` is "check" (pending: check the
    PIN), "closed" (the contact's PIN is locked: pending, to be settled unchecked),
    "locked" (the number is locked: nothing counted), "number-busy" or "contact-busy"
    (no lock, but the places are all held by failures and checks still running:
    nothing counted, not checked), "repeat" (Twilio's repeat of an attempt counted
    already) or "stale" (a late post of an earlier attempt of the call)."""

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
    active contact's ID) before its PIN is checked, as pending: one script, so
    attempts that arrive together are counted one after another. `attempt` is the
    attempt's place in the call (the call's `pin_try` as read before): one attempt of
    one call counts once however often it is posted, and an earlier one not at all."""
    now_ms = _ms(now)
    member = f"{call_sid}:{attempt}"
    counters = [keys.call(call_sid), keys.verify_failures(caller), keys.verify_pending(caller),
                keys.verify_lock(caller)]
    if contact_id:
        counters += [keys.pin_failures(contact_id), keys.pin_pending(contact_id),
                     keys.pin_lock(contact_id)]
    place = script(r, _RESERVE)(keys=counters, args=[
        now_ms, member, attempt, *_limits(NUMBER_WINDOW_SECONDS, NUMBER_MAX_FAILURES,
                                          NUMBER_LOCK_SECONDS),
        *_limits(CONTACT_WINDOW_SECONDS, CONTACT_MAX_FAILURES, CONTACT_LOCK_SECONDS),
        PENDING_SECONDS * 1000], client=r)
    return Attempt(place.decode() if isinstance(place, bytes) else str(place), member, caller,
                   contact_id)


def withdraw(r: redis.Redis, attempt: Attempt) -> None:
    """Take back an attempt's own pending place in the counts (its PIN was right, or it
    could not be checked): every other attempt, failed or still being checked, stands."""
    pipe = r.pipeline(transaction=True)
    pipe.zrem(keys.verify_pending(attempt.caller), attempt.member)
    if attempt.contact_id:
        pipe.zrem(keys.pin_pending(attempt.contact_id), attempt.member)
    pipe.execute()


def settle_failure(r: redis.Redis, attempt: Attempt, now: datetime) -> Failure:
    """An attempt whose PIN was wrong (or was not checked) moves from pending into the
    failures: start the locks its settled failures bring to their limits."""
    counters = [keys.verify_failures(attempt.caller), keys.verify_pending(attempt.caller),
                keys.verify_lock(attempt.caller), keys.verify_failures_recent()]
    if attempt.contact_id:
        counters += [keys.pin_failures(attempt.contact_id), keys.pin_pending(attempt.contact_id),
                     keys.pin_lock(attempt.contact_id)]
    now_ms = _ms(now)
    out = [int(value) for value in script(r, _SETTLE_FAILURE)(keys=counters, args=[
        now_ms, attempt.member,
        *_limits(NUMBER_WINDOW_SECONDS, NUMBER_MAX_FAILURES, NUMBER_LOCK_SECONDS),
        RECENT_SECONDS * 1000,
        *_limits(CONTACT_WINDOW_SECONDS, CONTACT_MAX_FAILURES, CONTACT_LOCK_SECONDS)],
        client=r)]
    number = Count(out[0], out[1] > now_ms, bool(out[2]))
    contact = Count(out[3], out[4] > now_ms, bool(out[5])) if len(out) > 3 else None
    return Failure(number, contact)


def _limits(window: int, limit: int, lock: int) -> list[int]:
    """A count's script arguments: its window (ms), limit, lock (ms) and keep (ms)."""
    return [window * 1000, limit, lock * 1000, _keep_ms(window, lock)]


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
