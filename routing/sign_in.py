"""Signing in to the web console: the password check and the lockout after
repeated failures (5 failed sign-ins lock the account id for 15 minutes).

The counter is kept per typed account id, known or not, so the answer never
tells whether an id exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy.orm import Session, sessionmaker

from directory import keys
from directory.accounts import Account, check_password

MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: "ok" (with the account), "wrong" or "locked"."""

    outcome: str
    account: Account | None = None


def is_locked(r: redis.Redis, advisor_id: str) -> bool:
    """Whether the account id is locked out right now."""
    return bool(r.exists(keys.sign_in_lock(advisor_id)))


def sign_in(r: redis.Redis, session_factory: sessionmaker[Session], advisor_id: str,
            password: str) -> SignIn:
    """Check a password, counting failures; a locked id is refused without a check."""
    advisor_id = advisor_id.strip()[:40]
    if not advisor_id or is_locked(r, advisor_id):
        return SignIn("locked" if advisor_id else "wrong")
    account = check_password(session_factory, advisor_id, password)
    if account is not None:
        r.delete(keys.sign_in_failures(advisor_id))
        return SignIn("ok", account)
    return SignIn("locked" if _count_failure(r, advisor_id) else "wrong")


def _count_failure(r: redis.Redis, advisor_id: str) -> bool:
    """Count one failed sign-in; True when it is the one that locks the id."""
    failures_key = keys.sign_in_failures(advisor_id)
    pipe = r.pipeline()
    # The window opens at the first failure (INCR keeps the expiry SET NX gave it).
    pipe.set(failures_key, 0, ex=LOCK_SECONDS, nx=True)
    pipe.incr(failures_key)
    failures = int(pipe.execute()[1])
    if failures < MAX_FAILURES:
        return False
    pipe = r.pipeline()
    pipe.set(keys.sign_in_lock(advisor_id), "1", ex=LOCK_SECONDS)
    pipe.delete(failures_key)
    pipe.execute()
    return True


def unlock(r: redis.Redis, advisor_id: str) -> None:
    """Lift a console lockout (a new password does it too)."""
    r.delete(keys.sign_in_lock(advisor_id), keys.sign_in_failures(advisor_id))
