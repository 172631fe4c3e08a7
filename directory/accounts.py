"""Console accounts: an advisor's password (Argon2id, argon2-cffi) and role.

Accounts come from the directory: only an advisor the directory knows can
have one, set by `caseline advisors set-password ID`.

Each account has a credentials version in Redis, beside the console's sessions:
a session holds the version it signed in under and stands only while it is the
account's, so a new password or role (or `caseline advisors sign-out ID`) ends
every session of the advisor at once, for the price of one Redis read per
request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session, sessionmaker

from directory import keys
from directory.models import Advisor, ConsoleAccount, utcnow

MIN_PASSWORD_LENGTH = 12

_HASHER = PasswordHasher()  # argon2-cffi's defaults: Argon2id, RFC 9106 "low memory"


@cache
def _dummy_hash() -> str:
    """Verified against when the account does not exist, so an unknown id costs the
    same time as a wrong password (made on first use: nothing runs at import)."""
    return _HASHER.hash("not a password of anyone's")


@dataclass(frozen=True)
class Account:
    """Who signed in: the advisor's id and name, and whether they supervise."""

    advisor_id: str
    name: str
    supervisor: bool


def credentials_version(r: redis.Redis, advisor_id: str) -> int:
    """The account's credentials version now (0 until its first change)."""
    return int(r.get(keys.console_credentials(advisor_id)) or 0)


def end_sessions(r: redis.Redis, advisor_id: str) -> None:
    """End every console session of the advisor at once: each was made under an older
    credentials version, so its next request (or its open event stream) finds it over."""
    r.incr(keys.console_credentials(advisor_id))


def is_advisor(session_factory: sessionmaker[Session], advisor_id: str) -> bool:
    """Whether the directory has this advisor (who may be given a console password)."""
    with session_factory() as db:
        return db.get(Advisor, advisor_id) is not None


def set_password(session_factory: sessionmaker[Session], r: redis.Redis, advisor_id: str,
                 password: str, *, supervisor: bool) -> bool:
    """Create or replace an advisor's console password and role, ending every session
    they have (`r`: the sessions' Redis); False if no such advisor. The database is
    written first: should Redis fail then, the password is set, the sessions not yet
    ended, and the error says so to the caller."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    with session_factory() as db, db.begin():
        if db.get(Advisor, advisor_id) is None:
            return False
        account = db.get(ConsoleAccount, advisor_id)
        if account is None:
            account = ConsoleAccount(advisor_id=advisor_id)
            db.add(account)
        account.password_hash = _HASHER.hash(password)
        account.supervisor = supervisor
        account.updated_at = utcnow()
    end_sessions(r, advisor_id)
    return True


# Password checks a web process runs at once. Each is Argon2id (about a quarter of a
# second of a core and 64 MiB): sign-ins sent by the dozen, with ids that change to get
# round the lockout, would otherwise take the core from Twilio's webhooks. A sign-in
# that finds the check taken is refused as busy at once rather than waiting for it: a
# waiting sign-in holds one of the process's few threads, and a flood of them left
# Twilio's webhooks waiting seconds behind them (a reviewer measured a 5.9 s median
# with a 5 s wait, 38 ms with none).
CONCURRENT_CHECKS = 1
_checks = threading.BoundedSemaphore(CONCURRENT_CHECKS)


class PasswordChecksBusy(Exception):
    """This process was checking another password: nothing was checked (try again in a
    moment)."""


def check_password(session_factory: sessionmaker[Session], advisor_id: str,
                   password: str) -> Account | None:
    """The account when the password is right, else None (unknown id or wrong password).
    Runs one check at a time per process (`CONCURRENT_CHECKS`); raises
    `PasswordChecksBusy`, at once, while another is being checked."""
    if not _checks.acquire(blocking=False):
        raise PasswordChecksBusy
    try:
        return _check_password(session_factory, advisor_id, password)
    finally:
        _checks.release()


def _check_password(session_factory: sessionmaker[Session], advisor_id: str,
                    password: str) -> Account | None:
    """`check_password`'s check itself."""
    with session_factory() as db, db.begin():
        account = db.get(ConsoleAccount, advisor_id)
        try:
            _HASHER.verify(account.password_hash if account else _dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            return None
        if account is None:
            return None
        if _HASHER.check_needs_rehash(account.password_hash):
            account.password_hash = _HASHER.hash(password)
        advisor = db.get(Advisor, advisor_id)
        return Account(advisor_id, advisor.name if advisor else advisor_id,
                       bool(account.supervisor))


def find_account(session_factory: sessionmaker[Session], advisor_id: str) -> Account | None:
    """An account by advisor id (no password involved), or None."""
    with session_factory() as db:
        account = db.get(ConsoleAccount, advisor_id)
        if account is None:
            return None
        advisor = db.get(Advisor, advisor_id)
        return Account(advisor_id, advisor.name if advisor else advisor_id,
                       bool(account.supervisor))
