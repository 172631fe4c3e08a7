"""Lookups on the hot path: a call's facts from the directory cache.

The `find_*` lookups read Redis in one round trip; on a miss they read the
database once and repopulate, and remember a miss that the database confirms
for `NEGATIVE_TTL_SECONDS` so a wrong number typed over and over cannot hammer
the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from directory import keys
from directory.cache import (
    Facts,
    cacheable,
    case_facts,
    contact_facts,
    district_facts,
    hash_of,
    write_cache,
)
from directory.models import Advisor, Case, Contact, District
from directory.scripts import as_hash, script

NEGATIVE_TTL_SECONDS = 60

# Repopulating after a miss must not overwrite what a concurrent load wrote
# meanwhile (its read of the database may be older): write only into an empty key.
_FILL_IF_ABSENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""
_MARK_MISSING = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'missing', '1')
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


def _fill(redis_client: redis.Redis, key: str, facts: dict[str, str]) -> None:
    """Cache facts read from the database, unless the key was written meanwhile."""
    args: list[str] = []
    for field, value in cacheable(facts).items():
        args += [field, value]
    script(redis_client, _FILL_IF_ABSENT)(keys=[key], args=args, client=redis_client)


def _mark_missing(redis_client: redis.Redis, key: str) -> None:
    """Remember for a minute that the database has no such record."""
    script(redis_client, _MARK_MISSING)(
        keys=[key], args=[NEGATIVE_TTL_SECONDS], client=redis_client
    )


def _lookup(
    redis_client: redis.Redis,
    session_factory: sessionmaker[Session] | None,
    key: str,
    load: Any,
) -> dict[str, str] | None:
    """Redis first; on a miss, the database once (then cache the answer either way)."""
    cached = hash_of(redis_client.hgetall(key))  # type: ignore[arg-type]
    if cached:
        return None if cached.get("missing") == "1" else cached
    if session_factory is None:
        return None
    with session_factory() as db:
        facts = load(db)
    if facts is None:
        _mark_missing(redis_client, key)
        return None
    _fill(redis_client, key, facts)
    return facts


def find_case(
    redis_client: redis.Redis, session_factory: sessionmaker[Session] | None, number: str
) -> dict[str, str] | None:
    """A case's routing facts (number, district, owner, team, status, priority, product)."""
    number = str(number).strip()
    if not number:
        return None

    def load(db: Session) -> dict[str, str] | None:
        case = db.get(Case, number)
        return case_facts(case) if case else None

    return _lookup(redis_client, session_factory, keys.case(number), load)


def find_contact_by_phone(
    redis_client: redis.Redis, session_factory: sessionmaker[Session] | None, e164: str
) -> dict[str, str] | None:
    """The contact owning an E.164 phone (deactivated ones too: check contact_is_active)."""
    if not e164:
        return None

    def load(db: Session) -> dict[str, str] | None:
        contact = db.scalars(select(Contact).where(Contact.phone == e164)).first()
        return contact_facts(contact) if contact else None

    return _lookup(redis_client, session_factory, keys.contact_by_phone(e164), load)


def find_contact(
    redis_client: redis.Redis, session_factory: sessionmaker[Session] | None, contact_id: str
) -> dict[str, str] | None:
    """A contact by id (deactivated ones too: check contact_is_active)."""
    contact_id = str(contact_id).strip()
    if not contact_id:
        return None

    def load(db: Session) -> dict[str, str] | None:
        contact = db.get(Contact, contact_id)
        return contact_facts(contact) if contact else None

    return _lookup(redis_client, session_factory, keys.contact(contact_id), load)


# The caller's contact and that contact's district in one round trip (the district's
# key is known only once the contact's hash is read, hence a script). ARGV[1]: the
# districts' key prefix (`keys.district("")`).
_CONTACT_AND_DISTRICT = """
local contact = redis.call('HGETALL', KEYS[1])
local id = redis.call('HGET', KEYS[1], 'district')
if not id or id == '' then return {contact, {}} end
return {contact, redis.call('HGETALL', ARGV[1] .. id)}
"""


def find_contact_and_district_by_phone(
    redis_client: redis.Redis, session_factory: sessionmaker[Session] | None, e164: str
) -> tuple[dict[str, str] | None, dict[str, str] | None]:
    """The contact owning an E.164 phone and their district's facts, as
    `find_contact_by_phone` and `find_district` would give them (either None when
    unknown): one round trip when the cache holds both, the database otherwise."""
    if not e164:
        return None, None
    flat_contact, flat_district = script(redis_client, _CONTACT_AND_DISTRICT)(
        keys=[keys.contact_by_phone(e164)], args=[keys.district("")], client=redis_client)
    cached = as_hash(flat_contact)
    if not cached:
        contact = find_contact_by_phone(redis_client, session_factory, e164)
    else:
        contact = None if cached.get("missing") == "1" else cached
    if not contact:
        return None, None
    district = as_hash(flat_district)
    if district:
        return contact, None if district.get("missing") == "1" else district
    return contact, find_district(redis_client, session_factory, contact.get("district", ""))


def find_district(
    redis_client: redis.Redis, session_factory: sessionmaker[Session] | None, district_id: str
) -> dict[str, str] | None:
    """A district's facts (id, name, hosted "1"/"0")."""
    if not district_id:
        return None

    def load(db: Session) -> dict[str, str] | None:
        district = db.get(District, district_id)
        return district_facts(district) if district else None

    return _lookup(redis_client, session_factory, keys.district(district_id), load)


def advisor_facts(
    redis_client: redis.Redis,
    session_factory: sessionmaker[Session] | None,
    advisor_id: str,
    now: datetime | None = None,
) -> dict[str, str] | None:
    """An advisor's cached hash: name, phone, teams, plus presence fields when set.

    No negative marker here: the advisor hash is shared with presence, whose
    scripts take an existing key for a known advisor.
    """
    if not advisor_id:
        return None
    key = keys.advisor(advisor_id)
    cached = hash_of(redis_client.hgetall(key))  # type: ignore[arg-type]
    if cached.get("phone"):
        return cached
    if session_factory is None:
        return None
    with session_factory() as db:
        advisor = db.get(Advisor, advisor_id)
        if advisor is None:
            return None
        facts = Facts.of(advisors=[advisor])
    write_cache(redis_client, facts, now or datetime.now(UTC), mark_loaded=False)
    return hash_of(redis_client.hgetall(key))  # type: ignore[arg-type]
