"""PIN hashes: how a contact's PIN is stored and checked.

The stored hash names its format in its first field, so formats coexist and a
hash loaded by an older release keeps working:

* `scrypt$salt$digest`: scrypt of the PIN itself (every hash before the pepper).
* `scrypt-hmac$salt$digest`: scrypt of HMAC-SHA256(pepper, PIN), where the
  pepper is `CASELINE_PIN_PEPPER`. It lives only in the service's environment,
  so a copy of the database (a backup, a leaked dump) is not enough to try the
  ten thousand 4-digit PINs offline.

A 4-8 digit PIN cannot resist offline guessing whatever scrypt's cost; the
lockouts in `routing.lockout` are what stop guessing on the phone.

`check_contact_pin` checks a typed PIN against the database (never the cache,
which holds nothing of the PIN); `stored_pin` then `check_stored_pin` do the same
in two steps, for a caller that must count the attempt in between.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from directory.cache import contact_facts
from directory.models import Contact

log = logging.getLogger(__name__)

PLAIN = "scrypt"
PEPPERED = "scrypt-hmac"

# scrypt cost: a few milliseconds per PIN check, since it runs in a webhook.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**11, 8, 1


def hash_pin(pin: str, pepper: str | None = None) -> str:
    """A salted scrypt hash of a PIN, peppered when a pepper is configured."""
    salt = secrets.token_bytes(16)
    scheme = PEPPERED if pepper else PLAIN
    return f"{scheme}${salt.hex()}${_digest(scheme, pin, salt, pepper).hex()}"


def check_pin(pin: str, pin_hash: str, pepper: str | None = None) -> bool:
    """Whether the PIN matches the hash (constant time; False for a malformed hash)."""
    try:
        scheme, salt_hex, digest_hex = pin_hash.split("$")
        salt, expected = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
    except (AttributeError, ValueError):
        return False
    if scheme not in (PLAIN, PEPPERED) or not salt or not expected or not isinstance(pin, str):
        return False
    if scheme == PEPPERED and not pepper:
        log.error("a peppered PIN hash cannot be checked: CASELINE_PIN_PEPPER is not set")
        return False
    return hmac.compare_digest(_digest(scheme, pin, salt, pepper), expected)


def needs_rehash(pin_hash: str, pepper: str | None) -> bool:
    """Whether a stored hash is older than the format new PINs get (unpeppered, pepper set)."""
    return bool(pepper) and not pin_hash.startswith(PEPPERED + "$")


def dummy_hash(pepper: str | None) -> str:
    """A hash of no one's PIN, in the current format: checked when a contact ID is unknown,
    so an unknown ID costs the same scrypt as a known one."""
    return _dummy_hash(pepper or "")


@functools.lru_cache(maxsize=4)
def _dummy_hash(pepper: str) -> str:
    """Made once per pepper, on first use (never at import)."""
    return hash_pin(secrets.token_hex(8), pepper or None)


def _digest(scheme: str, pin: str, salt: bytes, pepper: str | None) -> bytes:
    """The raw digest a scheme stores for a PIN and salt."""
    secret = pin.encode("utf-8")
    if scheme == PEPPERED:
        secret = hmac.new((pepper or "").encode("utf-8"), secret, hashlib.sha256).digest()
    return hashlib.scrypt(secret, salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)


@dataclass(frozen=True)
class StoredPin:
    """A contact ID as the database knows it: the contact's facts and PIN hash
    (None and "" when the ID is no contact's)."""

    contact: dict[str, str] | None
    pin_hash: str = ""


@dataclass(frozen=True)
class PinCheck:
    """A contact ID and PIN checked against the database."""

    contact: dict[str, str] | None  # the contact's facts, when the ID exists
    matched: bool = False


def stored_pin(session_factory: sessionmaker[Session] | None, contact_id: str) -> StoredPin:
    """Read a contact and its PIN hash from the database (never the cache), without
    checking anything: the caller counts the attempt before the check."""
    if session_factory is None or not contact_id:
        return StoredPin(None)
    with session_factory() as db:
        row = db.get(Contact, contact_id)
        if row is None:
            return StoredPin(None)
        return StoredPin(contact_facts(row), row.pin_hash)


def check_stored_pin(
    session_factory: sessionmaker[Session] | None,
    contact_id: str,
    pin_hash: str,
    pin: str,
    pepper: str | None = None,
) -> bool:
    """Check a typed PIN against a hash `stored_pin` read, or, when `pin_hash` is ""
    (an unknown ID, or one that may not be checked), against a dummy hash: the same
    scrypt either way, so the time a check takes tells nothing. A right PIN under a
    hash older than the pepper is re-hashed with it."""
    matched = check_pin(pin, pin_hash or dummy_hash(pepper), pepper) and bool(pin_hash)
    if matched and session_factory is not None and needs_rehash(pin_hash, pepper):
        with session_factory() as db:
            row = db.get(Contact, contact_id)
            if row is not None and row.pin_hash == pin_hash:  # not changed meanwhile
                row.pin_hash = hash_pin(pin, pepper)
                db.commit()
    return matched


def check_contact_pin(
    session_factory: sessionmaker[Session] | None,
    contact_id: str,
    pin: str,
    pepper: str | None = None,
) -> PinCheck:
    """Check a typed PIN against the contact's hash in the database (never the cache).

    An unknown ID costs the same scrypt, against a dummy hash, so the time a
    check takes does not tell which IDs exist. A right PIN under a hash older
    than the pepper is re-hashed with it.
    """
    stored = stored_pin(session_factory, contact_id)
    matched = check_stored_pin(session_factory, contact_id, stored.pin_hash, pin, pepper)
    return PinCheck(stored.contact, matched)
