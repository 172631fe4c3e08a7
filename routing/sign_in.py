"""Signing in to the web console: the password check and the lockout after
repeated failures (5 failed sign-ins lock the account id for 15 minutes).

The counter is kept per typed account id, known or not, so the answer never
tells whether an id exists. Each attempt takes its place in the count before
its password is checked (the check is slow on purpose: Argon2id), so guesses
sent at once cannot all slip in before the lock: at most five passwords of an
id are checked in a window, however many arrive together.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy.orm import Session, sessionmaker

from directory import keys
from directory.accounts import Account, check_password, credentials_version
from directory.scripts import script

MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60

# One attempt takes its place in the window, atomically: refused (0) while the id is
# locked or every place is taken (by failures, or by attempts still being checked);
# else its place, 1 to the limit (the window opens at the first).
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local tried = tonumber(redis.call('GET', KEYS[2]) or '0')
if tried >= tonumber(ARGV[1]) then return 0 end
tried = redis.call('INCR', KEYS[2])
if tried == 1 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return tried
"""

# An attempt that could not be checked (busy, or the database failed) gives its place
# back; a count back at 0 is deleted, so sign-ins refused as busy (at once, by the
# thousand, an id each) leave nothing in Redis.
_RELEASE = """
local tried = tonumber(redis.call('GET', KEYS[1]) or '0')
if tried > 1 then redis.call('DECR', KEYS[1]) elseif tried == 1 then redis.call('DEL', KEYS[1]) end
"""


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: "ok" (with the account and the credentials version
    its session is made under), "wrong" or "locked"."""

    outcome: str
    account: Account | None = None
    version: int = 0


def sign_in(r: redis.Redis, session_factory: sessionmaker[Session], advisor_id: str,
            password: str) -> SignIn:
    """Check a password, counting the attempt first; a locked id, or one whose
    attempts in the window are all taken, is refused without a check."""
    advisor_id = advisor_id.strip()[:40]
    if not advisor_id:
        return SignIn("wrong")
    place = int(script(r, _RESERVE)(
        keys=[keys.sign_in_lock(advisor_id), keys.sign_in_failures(advisor_id)],
        args=[MAX_FAILURES, LOCK_SECONDS], client=r))
    if not place:
        return SignIn("locked")
    # Read before the password: a new password or role written meanwhile has a later
    # version, so a session made with the old ones is over as soon as it is made.
    version = credentials_version(r, advisor_id)
    try:
        account = check_password(session_factory, advisor_id, password)
    except Exception:
        script(r, _RELEASE)(keys=[keys.sign_in_failures(advisor_id)], client=r)
        raise
    if account is not None:
        r.delete(keys.sign_in_failures(advisor_id))  # a success forgets the failures
        return SignIn("ok", account, version)
    if place < MAX_FAILURES:
        return SignIn("wrong")
    _lock(r, advisor_id)
    return SignIn("locked")


def _lock(r: redis.Redis, advisor_id: str) -> None:
    """Lock the id for LOCK_SECONDS (its last place in the window has failed); the
    window's count starts again once the lock ends."""
    pipe = r.pipeline()
    pipe.set(keys.sign_in_lock(advisor_id), "1", ex=LOCK_SECONDS)
    pipe.delete(keys.sign_in_failures(advisor_id))
    pipe.execute()


def unlock(r: redis.Redis, advisor_id: str) -> None:
    """Lift a console lockout (a new password does it too)."""
    r.delete(keys.sign_in_lock(advisor_id), keys.sign_in_failures(advisor_id))
