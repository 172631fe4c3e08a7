"""One directory record at a time, as the operators' API changes it.

A case or a contact put through the API is validated and upserted exactly as
`caseline directory load` does it (`directory.loading.apply_document` on a
document of that one record), written to the database and the Redis cache in
the same call, and audited (`AuditEntry`) in the same transaction as the
change. Closing a case and deactivating a contact change one field.

A change drops its records from the cache inside its transaction, before the commit,
and caches them again after it (`_changing`): Redis down or refusing writes (a replica
mid-failover) rolls it back, so a change answered as failed is nowhere; whatever
fails after the drop leaves only keys missing, which the calls read from the
database.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from sqlalchemy.orm import Session, sessionmaker

from config.hours import central_date
from directory.cache import Facts, keys_of, recache_if_lost, write_cache
from directory.loading import apply_document
from directory.models import AuditEntry, Case, Contact
from directory.validation import DirectoryError, JsonObject, Plan, record_id

log = logging.getLogger(__name__)

# The API's caller, as the audit names it: whoever holds CASELINE_API_TOKEN.
API_ACTOR = "api"

_LABEL_RE = re.compile(r"^(cases|contacts)\[0\](?: \((?:number|id) [^)]*\))?")


class RecordError(Exception):
    """A record the API refuses, with every problem (each naming its field)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Change:
    """What a put, close or deactivation did: the record after it, and what moved."""

    record: dict[str, Any]
    created: bool = False
    changes: dict[str, Any] = field(default_factory=dict)


def case_record(case: Case) -> dict[str, Any]:
    """A case as the directory document spells it."""
    return {
        "number": case.number,
        "district": case.district_id,
        "owner": case.owner_id,
        "status": case.status,
        "priority": case.priority,
        "product": case.product,
        "needs_handover": bool(case.needs_handover),
    }


def contact_record(contact: Contact) -> dict[str, Any]:
    """A contact as the directory document spells it (nothing of the PIN)."""
    return {
        "id": contact.id,
        "name": contact.name,
        "district": contact.district_id,
        "phone": contact.phone,
        "last_active": contact.last_active.isoformat() if contact.last_active else None,
        "last_verified_call": (contact.last_verified_call.isoformat()
                               if contact.last_verified_call else None),
        "deactivated": bool(contact.deactivated),
    }


def _changes(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """Each field that moved, with its old and new values."""
    old = before or {}
    return {
        name: {"old": old.get(name), "new": value}
        for name, value in after.items()
        if old.get(name) != value
    }


def _audit(db: Session, kind: str, ident: str, action: str, changes: dict[str, Any],
           now: datetime, actor: str) -> None:
    """Record one change in the audit table (inside the change's own transaction)."""
    db.add(AuditEntry(at=now, actor=actor, kind=kind, record_id=ident, action=action,
                      changes=changes))


def _relabel(problems: list[str], kind: str, ident: str) -> list[str]:
    """Problems named after the one record ("case 2024117: ...") rather than its index."""
    return [_LABEL_RE.sub(f"{kind} {ident}", problem, count=1) for problem in problems]


def _body(body: object, kind: str, ident: str, id_field: str) -> dict[str, Any]:
    """The request body as one record of the document, its id taken from the URL."""
    if not isinstance(body, dict):
        raise RecordError([f"{kind} {ident}: the body must be a JSON object"])
    if id_field in body and record_id(body[id_field]) != ident:
        raise RecordError([f'{kind} {ident}: "{id_field}" {body[id_field]!r} is not {ident}'])
    record = JsonObject({**body, id_field: ident})
    record.repeated = getattr(body, "repeated", ())  # a field named twice: still a problem
    return record


@dataclass
class _Pending:
    """What a change inside `_changing` will cache: the facts of the rows it changed."""

    facts: Facts = field(default_factory=Facts)


@contextmanager
def _changing(session_factory: sessionmaker[Session], r: redis.Redis,
              now: datetime) -> Iterator[tuple[Session, _Pending]]:
    """A transaction for one change, whose body sets `pending.facts`. The cache's keys of
    what it changes are dropped before the commit, and written again after it.

    Redis down or refusing writes (read-only, a replica mid-failover) fails the drop and
    rolls the change back: nothing changed anywhere (Redis's error is raised). A drop
    that reaches Redis late (a stall past the client's timeout: the change is refused,
    yet Redis runs what it had received), or a commit that fails after it, leaves only
    keys missing, which the lookups read from the database, the committed truth: a
    change answered as refused is never what calls route by. A rewrite after the commit
    that fails is logged, not raised (the change is saved; the lookups read it from the
    database meanwhile). When Redis lost the cache (`recache_if_lost`), it is rebuilt
    whole instead."""
    pending = _Pending()
    with session_factory() as db, db.begin():
        yield db, pending
        db.flush()  # the database's checks first: a refused row drops nothing
        if pending.facts.cases or pending.facts.contacts:
            r.delete(*keys_of(pending.facts))
    if not (pending.facts.cases or pending.facts.contacts):
        return
    try:
        if not recache_if_lost(session_factory, r, now):
            write_cache(r, pending.facts, now, mark_loaded=False)
    except redis.RedisError as error:
        log.warning("directory change saved, but not cached (%s): calls read it from the "
                    "database until it is", error)


def put_case(session_factory: sessionmaker[Session], r: redis.Redis, number: str,
             body: object, now: datetime, *, actor: str = API_ACTOR) -> Change:
    """Create or update one case as `directory load` would; RecordError when it is bad,
    Redis's or SQLAlchemy's error when either is down (then nothing changed)."""
    record = _body(body, "case", number, "number")
    with _changing(session_factory, r, now) as (db, pending):
        row = db.get(Case, number)
        before = case_record(row) if row is not None else None
        try:
            pending.facts, _ = apply_document(db, {"cases": [record]}, Plan(central_date(now)))
        except DirectoryError as error:
            raise RecordError(_relabel(error.problems, "case", number)) from None
        after = case_record(db.get(Case, number))  # type: ignore[arg-type]
        changes = _changes(before, after)
        if changes:
            _audit(db, "case", number, "created" if before is None else "updated", changes,
                   now, actor)
    return Change(after, before is None, changes)


def put_contact(session_factory: sessionmaker[Session], r: redis.Redis, contact_id: str,
                body: object, now: datetime, *, pepper: str | None = None,
                actor: str = API_ACTOR) -> Change:
    """Create or update one contact as `directory load` would (its PIN only ever hashed);
    RecordError when it is bad, Redis's or SQLAlchemy's error when either is down (then
    nothing changed)."""
    record = _body(body, "contact", contact_id, "id")
    with _changing(session_factory, r, now) as (db, pending):
        row = db.get(Contact, contact_id)
        before = contact_record(row) if row is not None else None
        old_hash = row.pin_hash if row is not None else None
        try:
            pending.facts, _ = apply_document(db, {"contacts": [record]},
                                              Plan(central_date(now)), pepper)
        except DirectoryError as error:
            raise RecordError(_relabel(error.problems, "contact", contact_id)) from None
        row = db.get(Contact, contact_id)
        assert row is not None
        after = contact_record(row)
        changes = _changes(before, after)
        if row.pin_hash != old_hash:
            changes["pin"] = {"changed": True}  # never the PIN nor its hash
        if changes:
            _audit(db, "contact", contact_id, "created" if before is None else "updated",
                   changes, now, actor)
    return Change(after, before is None, changes)


def close_case(session_factory: sessionmaker[Session], r: redis.Redis, number: str,
               now: datetime, *, actor: str = API_ACTOR) -> Change | None:
    """Close a case (status `closed`); None when there is no such case. Redis's or
    SQLAlchemy's error when either is down (then nothing changed)."""
    with _changing(session_factory, r, now) as (db, pending):
        case = db.get(Case, number)
        if case is None:
            return None
        before = case_record(case)
        case.status = "closed"
        after = case_record(case)
        changes = _changes(before, after)
        if changes:
            _audit(db, "case", number, "closed", changes, now, actor)
        pending.facts = Facts.of(cases=[case])
    return Change(after, False, changes)


def deactivate_contact(session_factory: sessionmaker[Session], r: redis.Redis,
                       contact_id: str, now: datetime, *,
                       actor: str = API_ACTOR) -> Change | None:
    """Deactivate a contact: their number and PIN identify nobody; None when unknown.
    Redis's or SQLAlchemy's error when either is down (then nothing changed)."""
    with _changing(session_factory, r, now) as (db, pending):
        contact = db.get(Contact, contact_id)
        if contact is None:
            return None
        before = contact_record(contact)
        contact.deactivated = True
        after = contact_record(contact)
        changes = _changes(before, after)
        if changes:
            _audit(db, "contact", contact_id, "deactivated", changes, now, actor)
        pending.facts = Facts.of(contacts=[contact])
    return Change(after, False, changes)
