"""Loading an operator's directory document into the database, then the cache.

`load_directory` validates the whole document (`directory.validation`) and
upserts it in one transaction; records absent from the document are kept.
It then writes what changed into the Redis cache (`directory.cache`), or the
whole cache when Redis lost it since the last load.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.hours import central_date
from directory import keys
from directory.cache import Facts, keys_of, recache_if_lost, write_cache
from directory.catalog import canonical_product
from directory.models import Advisor, Case, Contact, District
from directory.pins import check_pin, hash_pin, needs_rehash
from directory.validation import (
    SECTIONS,
    DirectoryError,
    Plan,
    check_for_load,
    parse_date,
    record_id,
)

log = logging.getLogger(__name__)


def load_directory(
    doc: object,
    session_factory: sessionmaker[Session],
    redis_client: redis.Redis,
    now: datetime,
    *,
    pepper: str | None = None,
) -> dict[str, int]:
    """Validate and upsert a directory document in one transaction, then cache it.

    Raises DirectoryError (and changes nothing) when the document has problems.
    Records absent from the document are kept. Returns how many records of
    each kind the document held. PINs are hashed with `pepper` (CASELINE_PIN_PEPPER).

    The records it changes are dropped from the cache before the commit (as the API's
    writes do, `directory.records`): Redis down or refusing writes raises Redis's error
    and rolls the load back, so nothing changed; whatever reached Redis left only keys
    missing, which calls read from the database. The cache is written after the commit;
    a failure then is logged, not raised (the load is saved, and calls read it from
    the database until it is cached).
    """
    plan = Plan(central_date(now))
    with session_factory() as db, db.begin():
        facts, counts = apply_document(db, doc, plan, pepper)
        dropped = keys_of(facts)
        if dropped:
            redis_client.delete(*dropped)
    try:
        refresh_cache(session_factory, redis_client, facts, now)
    except redis.RedisError as error:
        log.warning("directory saved, but not cached (%s): calls read it from the database "
                    "until it is", error)
    return counts


def apply_document(
    db: Session, doc: object, plan: Plan, pepper: str | None = None
) -> tuple[Facts, dict[str, int]]:
    """Validate and upsert a document inside the caller's transaction.

    Raises DirectoryError (the caller's transaction then rolls back) when the
    document has problems. Returns the facts to cache and how many records of
    each kind the document held.
    """
    problems = check_for_load(doc, db, plan)
    if problems:
        raise DirectoryError(problems)
    assert isinstance(doc, dict)
    sections: dict[str, list[dict[str, Any]]] = {
        name: list(doc.get(name) or []) for name in SECTIONS
    }
    districts = _upsert_districts(db, sections["districts"])
    advisors = _upsert_advisors(db, sections["advisors"], plan)
    contacts, old_phones = _upsert_contacts(db, sections["contacts"], plan, pepper)
    cases = _upsert_cases(db, sections["cases"])
    # Facts are taken before commit: the rows may expire with it.
    facts = Facts.of(districts, contacts, advisors, cases)
    facts.stale_phone_keys = [
        keys.contact_by_phone(phone)
        for contact_id, phone in old_phones.items()
        if plan.phones.get(contact_id) != phone
    ]
    return facts, {name: len(sections[name]) for name in SECTIONS}


def refresh_cache(
    session_factory: sessionmaker[Session], redis_client: redis.Redis, facts: Facts, now: datetime
) -> None:
    """Write what a load changed into the cache, or all of it when Redis lost the cache."""
    # Redis lost the cache since the last load: write all of it, not just this document.
    if not recache_if_lost(session_factory, redis_client, now):
        write_cache(redis_client, facts, now)


def _by_id(db: Session, model: Any, column: Any, ids: Iterable[str]) -> dict[str, Any]:
    """Existing rows of a model keyed by id, fetched in chunks."""
    found: dict[str, Any] = {}
    wanted = list(dict.fromkeys(ids))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for row in db.scalars(select(model).where(column.in_(chunk))):
            found[getattr(row, column.key)] = row
    return found


def _ids(records: list[dict[str, Any]], field: str = "id") -> list[str]:
    """The (validated) ids of a section's records, as text."""
    return [record_id(record[field]) or "" for record in records]


def _upsert_districts(db: Session, records: list[dict[str, Any]]) -> list[District]:
    """Insert or update districts."""
    existing = _by_id(db, District, District.id, _ids(records))
    rows = []
    for record in records:
        ident = record_id(record["id"]) or ""
        district = existing.get(ident)
        if district is None:
            district = District(id=ident, hosted=False)
            db.add(district)
        district.name = record["name"].strip()
        if "hosted" in record:
            district.hosted = record["hosted"]
        rows.append(district)
    db.flush()
    return rows


def _upsert_advisors(
    db: Session, records: list[dict[str, Any]], plan: Plan
) -> list[Advisor]:
    """Insert or update advisors."""
    existing = _by_id(db, Advisor, Advisor.id, _ids(records))
    rows = []
    for record in records:
        ident = record_id(record["id"]) or ""
        advisor = existing.get(ident)
        if advisor is None:
            advisor = Advisor(id=ident)
            db.add(advisor)
        advisor.name = record["name"].strip()
        advisor.phone = plan.advisor_phones[ident]
        teams = list(dict.fromkeys(record["teams"]))
        if advisor.teams != teams:
            advisor.teams = teams
        rows.append(advisor)
    db.flush()
    return rows


def _upsert_contacts(
    db: Session, records: list[dict[str, Any]], plan: Plan, pepper: str | None = None
) -> tuple[list[Contact], dict[str, str]]:
    """Insert or update contacts; also returns the old phone of each updated contact."""
    existing = _by_id(db, Contact, Contact.id, _ids(records))
    old_phones = {ident: contact.phone for ident, contact in existing.items()}
    # Phones may move between contacts in one load (a swap): park the moving
    # ones first so the unique index never sees two rows with one phone.
    moving = [c for ident, c in existing.items() if c.phone != plan.phones[ident]]
    for contact in moving:
        contact.phone = f"~moving~{contact.id}"
    if moving:
        db.flush()
    rows = []
    for record in records:
        ident = record_id(record["id"]) or ""
        contact = existing.get(ident)
        if contact is None:
            contact = Contact(id=ident, deactivated=False)
            db.add(contact)
        contact.name = record["name"].strip()
        contact.district_id = record_id(record["district"]) or ""
        contact.phone = plan.phones[ident]
        pin = record.get("pin")
        # Re-hash only a changed PIN (or one stored before the pepper), so reloading
        # the same file changes nothing.
        if pin is not None and not (
            contact.pin_hash
            and not needs_rehash(contact.pin_hash, pepper)
            and check_pin(str(pin), contact.pin_hash, pepper)
        ):
            contact.pin_hash = hash_pin(str(pin), pepper)
        # The operators' date, as loaded: a reload of an older file moves it back, but
        # never the contact's last verified call, kept apart (`Contact.last_activity`).
        if "last_active" in record:
            contact.last_active = parse_date(record["last_active"])
        if "deactivated" in record:
            contact.deactivated = record["deactivated"]
        rows.append(contact)
    db.flush()
    return rows, old_phones


def _upsert_cases(db: Session, records: list[dict[str, Any]]) -> list[Case]:
    """Insert or update cases."""
    existing = _by_id(db, Case, Case.number, _ids(records, "number"))
    rows = []
    for record in records:
        number = record_id(record["number"]) or ""
        case = existing.get(number)
        if case is None:
            case = Case(number=number, needs_handover=False)
            db.add(case)
        case.district_id = record_id(record["district"]) or ""
        if "owner" in record:
            owner = record["owner"]
            case.owner_id = record_id(owner) if owner not in (None, "") else None
        case.status = record["status"].strip().lower()
        case.priority = record["priority"].strip().lower()
        case.product = canonical_product(record["product"]) or record["product"]
        if "needs_handover" in record:
            case.needs_handover = record["needs_handover"]
        rows.append(case)
    db.flush()
    return rows
