"""The directory: districts, authorized contacts, advisors and cases.

The database holds the directory; `load_directory` validates an operator's
JSON document and upserts it in one transaction, then writes the facts a call
needs into Redis so webhooks never query the database on the hot path:

* `keys.case(number)`: number, district, owner, team, status, priority, product
* `keys.contact_by_phone(e164)` and `keys.contact(id)`: id, name, district,
  phone, last_active, deactivated (never the PIN's hash: verification is rare
  and reads the database, `check_contact_pin`)
* `keys.district(id)`: id, name, hosted
* `keys.advisor(id)`: name, phone, teams (presence fields belong to
  `routing.presence` and are never overwritten here)

The `find_*` lookups read Redis in one round trip; on a miss they read the
database once and repopulate, and remember a miss that the database confirms
for `NEGATIVE_TTL_SECONDS` so a wrong number typed over and over cannot hammer
the database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import phonenumbers
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from routing import keys
from routing.models import Advisor, Case, Contact, District
from routing.pins import check_pin, dummy_hash, hash_pin, needs_rehash

GENERAL = "general"
HOSTING = "hosting"
# In the published policy's order: option 6's sub-menu keys 1-7.
ADDON_TEAMS = (
    "food-service",
    "fees",
    "fram",
    "online-payments",
    "finance",
    "school-store",
    "activity-registration",
)
ALL_TEAMS = (GENERAL, HOSTING, *ADDON_TEAMS)

CORE_PRODUCT = "campus"
CASE_STATUSES = ("new", "open", "pending", "on-hold", "resolved", "closed")
PRIORITIES = ("critical", "high", "medium", "low")
SECTIONS = ("districts", "contacts", "advisors", "cases")

# An authorized contact idle this long is flagged for deactivation (policy).
INACTIVE_AFTER_DAYS = 180
NEGATIVE_TTL_SECONDS = 60

_PIN_RE = re.compile(r"[0-9]{4,8}")
_DIGITS_RE = re.compile(r"[0-9]+")

_PRODUCT_NAMES: dict[str, str] = {CORE_PRODUCT: CORE_PRODUCT, HOSTING: HOSTING}
for _team in ADDON_TEAMS:
    _PRODUCT_NAMES[_team] = _team
    _PRODUCT_NAMES[_team.replace("-", " ")] = _team
    _PRODUCT_NAMES[_team.replace("-", "")] = _team


class DirectoryError(Exception):
    """A directory document that cannot be loaded, with every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the directory:\n" + "\n".join(problems))
        self.problems = problems


# --- products and teams -----------------------------------------------------


def canonical_product(product: str) -> str | None:
    """The product's stored name ("campus", "hosting" or an add-on team), None if unknown."""
    if not isinstance(product, str):
        return None
    spelled = " ".join(product.strip().lower().replace("_", " ").split())
    return _PRODUCT_NAMES.get(spelled) or _PRODUCT_NAMES.get(spelled.replace(" ", "-"))


def team_for_product(product: str) -> str | None:
    """The team serving a product: campus → general, an add-on → its team, else None."""
    canonical = canonical_product(product)
    if canonical is None:
        return None
    return GENERAL if canonical == CORE_PRODUCT else canonical


# --- phones and PINs --------------------------------------------------------


def normalize_phone(raw: str, region: str = "US") -> str | None:
    """The number in E.164, or None when it is not a phone number."""
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 64:
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    # is_possible rather than is_valid: 555-01xx numbers are fictional but real-shaped.
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- validation -------------------------------------------------------------


def read_document(path: str | Path) -> object:
    """Parse a directory file; DirectoryError when it is not readable JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DirectoryError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise DirectoryError([f"{path}: not valid JSON: {exc}"]) from exc


def _ident(value: object) -> str | None:
    """An id or case number as text: a non-empty string, or a whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _label(section: str, index: int, record: object) -> str:
    """How a problem names its record: `contacts[2] (id 5003)`."""
    field = "number" if section == "cases" else "id"
    if isinstance(record, dict):
        ident = _ident(record.get(field))
        if ident is not None:
            return f"{section}[{index}] ({field} {ident})"
    return f"{section}[{index}]"


def _text(record: Mapping[str, Any], field: str, label: str, problems: list[str]) -> str | None:
    """A required non-empty string field, or None after noting the problem."""
    if field not in record or record[field] is None:
        problems.append(f'{label}: "{field}" is required')
        return None
    value = record[field]
    if not isinstance(value, str) or not value.strip():
        problems.append(f'{label}: "{field}" must be a non-empty string')
        return None
    return value.strip()


def _optional_bool(
    record: Mapping[str, Any], field: str, label: str, problems: list[str]
) -> None:
    """Check an optional true/false field."""
    if field in record and not isinstance(record[field], bool):
        problems.append(f'{label}: "{field}" must be true or false')


class _Plan:
    """What validation learned that loading reuses: normalized values by record."""

    def __init__(self) -> None:
        self.phones: dict[str, str] = {}  # contact id -> E.164
        self.advisor_phones: dict[str, str] = {}  # advisor id -> E.164
        self.existing_contacts: dict[str, str] = {}  # contact id in db -> phone


def validate_document(doc: object, session: Session) -> list[str]:
    """Every problem that stops the document from loading, each naming its record."""
    return _validate(doc, session, _Plan())


_RECORD_RE = re.compile(r"(districts|contacts|advisors|cases)\[(\d+)\]")


def _in_document_order(problems: list[str]) -> list[str]:
    """Problems sorted by the record they name (document-wide ones first)."""

    def position(problem: str) -> tuple[int, int]:
        match = _RECORD_RE.match(problem)
        if match is None:
            return (-1, 0)
        return (SECTIONS.index(match.group(1)), int(match.group(2)))

    return sorted(problems, key=position)


def _validate(doc: object, session: Session, plan: _Plan) -> list[str]:
    """Validate, filling `plan` with normalized values for the loader."""
    if not isinstance(doc, dict):
        return ["the directory document must be a JSON object"]
    problems: list[str] = []
    for key in doc:
        if key not in SECTIONS:
            problems.append(f'unknown section "{key}" (expected {", ".join(SECTIONS)})')
    sections: dict[str, list[Any]] = {}
    for name in SECTIONS:
        value = doc.get(name, [])
        if value is None:
            value = []
        if not isinstance(value, list):
            problems.append(f'"{name}" must be a list')
            value = []
        sections[name] = value
        for index, record in enumerate(value):
            if not isinstance(record, dict):
                problems.append(f"{_label(name, index, record)}: must be an object")

    db_districts = set(session.scalars(select(District.id)))
    db_advisors = set(session.scalars(select(Advisor.id)))
    plan.existing_contacts = {
        row.id: row.phone for row in session.execute(select(Contact.id, Contact.phone))
    }

    doc_ids = {name: _unique_ids(name, sections[name], problems) for name in SECTIONS}
    known_districts = db_districts | set(doc_ids["districts"])
    known_advisors = db_advisors | set(doc_ids["advisors"])

    for index, record in enumerate(sections["districts"]):
        if isinstance(record, dict):
            label = _label("districts", index, record)
            _text(record, "name", label, problems)
            _optional_bool(record, "hosted", label, problems)

    for index, record in enumerate(sections["advisors"]):
        if isinstance(record, dict):
            _check_advisor(record, _label("advisors", index, record), problems, plan)

    for index, record in enumerate(sections["contacts"]):
        if isinstance(record, dict):
            _check_contact(record, _label("contacts", index, record), known_districts,
                           problems, plan)
    _check_phone_conflicts(sections["contacts"], problems, plan)

    for index, record in enumerate(sections["cases"]):
        if isinstance(record, dict):
            _check_case(record, _label("cases", index, record), known_districts,
                        known_advisors, problems)
    return _in_document_order(problems)


def _unique_ids(section: str, records: list[Any], problems: list[str]) -> dict[str, int]:
    """The section's ids (first occurrence), noting missing, malformed and repeated ones."""
    field = "number" if section == "cases" else "id"
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            continue
        label = _label(section, index, record)
        if record.get(field) is None:
            problems.append(f'{label}: "{field}" is required')
            continue
        ident = _ident(record[field])
        if ident is None:
            problems.append(f'{label}: "{field}" must be a non-empty string')
            continue
        if section == "cases" and not _DIGITS_RE.fullmatch(ident):
            problems.append(f'{label}: case number "{ident}" must be all digits')
        if section == "contacts" and not _DIGITS_RE.fullmatch(ident):
            # A caller keys their contact ID in on the phone's keypad.
            problems.append(f'{label}: contact id "{ident}" must be all digits')
        if ident in seen:
            problems.append(f'{label}: {field} "{ident}" repeats {section}[{seen[ident]}]')
            continue
        seen[ident] = index
    return seen


def _check_district(
    record: dict[str, Any], label: str, known_districts: set[str], problems: list[str]
) -> None:
    """Check that a record names a district of the document or the database."""
    if record.get("district") is None:
        problems.append(f'{label}: "district" is required')
        return
    district = _ident(record["district"])
    if district is None:
        problems.append(f'{label}: "district" must be a non-empty string')
    elif district not in known_districts:
        problems.append(f'{label}: district "{district}" does not exist')


def _check_advisor(record: dict[str, Any], label: str, problems: list[str], plan: _Plan) -> None:
    """Check one advisor record."""
    _text(record, "name", label, problems)
    phone = _text(record, "phone", label, problems)
    if phone is not None:
        e164 = normalize_phone(phone)
        if e164 is None:
            problems.append(f'{label}: phone "{phone}" is not a phone number')
        elif (ident := _ident(record.get("id"))) is not None:
            plan.advisor_phones[ident] = e164
    teams = record.get("teams")
    if not isinstance(teams, list) or not all(isinstance(t, str) for t in teams):
        problems.append(f'{label}: "teams" must be a list of team names')
        return
    if not teams:
        problems.append(f"{label}: an advisor needs at least one team")
    for team in teams:
        if team not in ALL_TEAMS:
            problems.append(f'{label}: team "{team}" is not one of {", ".join(ALL_TEAMS)}')


def _check_contact(
    record: dict[str, Any],
    label: str,
    known_districts: set[str],
    problems: list[str],
    plan: _Plan,
) -> None:
    """Check one contact record."""
    ident = _ident(record.get("id"))
    _text(record, "name", label, problems)
    _check_district(record, label, known_districts, problems)
    phone = _text(record, "phone", label, problems)
    if phone is not None:
        e164 = normalize_phone(phone)
        if e164 is None:
            problems.append(f'{label}: phone "{phone}" is not a phone number')
        elif ident is not None:
            plan.phones[ident] = e164
    pin = record.get("pin")
    if pin is None:
        if ident is not None and ident not in plan.existing_contacts:
            problems.append(f'{label}: "pin" is required for a new contact')
    elif isinstance(pin, bool) or not isinstance(pin, str | int) or not _PIN_RE.fullmatch(str(pin)):
        problems.append(f"{label}: pin must be 4 to 8 digits")
    last_active = record.get("last_active")
    if last_active not in (None, "") and _parse_date(last_active) is None:
        problems.append(f'{label}: last_active "{last_active}" is not a date (YYYY-MM-DD)')
    _optional_bool(record, "deactivated", label, problems)


def _check_phone_conflicts(records: list[Any], problems: list[str], plan: _Plan) -> None:
    """Two contacts may not share a phone, counting the database as it will be after the load.

    The problem is reported on the record that takes the phone (new, or changing
    its phone), not on the contact that already has it.
    """
    final: dict[str, str] = dict(plan.existing_contacts)
    final.update(plan.phones)
    holders: dict[str, list[str]] = {}
    for contact_id, phone in final.items():
        holders.setdefault(phone, []).append(contact_id)
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            continue
        ident = _ident(record.get("id")) or ""
        phone = plan.phones.get(ident)
        if phone is None or plan.existing_contacts.get(ident) == phone:
            continue
        others = sorted(other for other in holders.get(phone, []) if other != ident)
        if others:
            problems.append(
                f"{_label('contacts', index, record)}: phone {phone} is already contact "
                f"{', '.join(others)}'s"
            )


def _check_case(
    record: dict[str, Any],
    label: str,
    known_districts: set[str],
    known_advisors: set[str],
    problems: list[str],
) -> None:
    """Check one case record."""
    _check_district(record, label, known_districts, problems)
    owner = record.get("owner")
    if owner not in (None, ""):
        owner_id = _ident(owner)
        if owner_id is None or owner_id not in known_advisors:
            problems.append(f'{label}: owner "{owner}" is not an advisor')
    status = _text(record, "status", label, problems)
    if status is not None and status.lower() not in CASE_STATUSES:
        problems.append(f'{label}: status "{status}" is not one of {", ".join(CASE_STATUSES)}')
    priority = _text(record, "priority", label, problems)
    if priority is not None and priority.lower() not in PRIORITIES:
        problems.append(f'{label}: priority "{priority}" is not one of {", ".join(PRIORITIES)}')
    product = _text(record, "product", label, problems)
    if product is not None and canonical_product(product) is None:
        problems.append(f'{label}: product "{product}" is not a known product')
    _optional_bool(record, "needs_handover", label, problems)


def _parse_date(value: object) -> date | None:
    """An ISO date (YYYY-MM-DD), or None."""
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


# --- loading ----------------------------------------------------------------


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
    """
    plan = _Plan()
    with session_factory() as session, session.begin():
        problems = _validate(doc, session, plan)
        if problems:
            raise DirectoryError(problems)
        assert isinstance(doc, dict)
        sections: dict[str, list[dict[str, Any]]] = {
            name: list(doc.get(name) or []) for name in SECTIONS
        }
        districts = _upsert_districts(session, sections["districts"])
        advisors = _upsert_advisors(session, sections["advisors"], plan)
        contacts, old_phones = _upsert_contacts(session, sections["contacts"], plan, pepper)
        cases = _upsert_cases(session, sections["cases"])
        # Facts are taken before commit: the rows may expire with it.
        facts = _Facts.of(districts, contacts, advisors, cases)

    if not redis_client.exists(keys.directory_loaded()):
        # Redis lost the cache since the last load: write all of it, not just this document.
        cache_directory(session_factory, redis_client, now)
    else:
        facts.stale_phone_keys = [
            keys.contact_by_phone(phone)
            for contact_id, phone in old_phones.items()
            if plan.phones.get(contact_id) != phone
        ]
        _write_cache(redis_client, facts, now)
    return {name: len(sections[name]) for name in SECTIONS}


def _by_id(session: Session, model: Any, column: Any, ids: Iterable[str]) -> dict[str, Any]:
    """Existing rows of a model keyed by id, fetched in chunks."""
    found: dict[str, Any] = {}
    wanted = list(dict.fromkeys(ids))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for row in session.scalars(select(model).where(column.in_(chunk))):
            found[getattr(row, column.key)] = row
    return found


def _ids(records: list[dict[str, Any]], field: str = "id") -> list[str]:
    """The (validated) ids of a section's records, as text."""
    return [_ident(record[field]) or "" for record in records]


def _upsert_districts(session: Session, records: list[dict[str, Any]]) -> list[District]:
    """Insert or update districts."""
    existing = _by_id(session, District, District.id, _ids(records))
    rows = []
    for record in records:
        ident = _ident(record["id"]) or ""
        district = existing.get(ident)
        if district is None:
            district = District(id=ident, hosted=False)
            session.add(district)
        district.name = record["name"].strip()
        if "hosted" in record:
            district.hosted = record["hosted"]
        rows.append(district)
    session.flush()
    return rows


def _upsert_advisors(
    session: Session, records: list[dict[str, Any]], plan: _Plan
) -> list[Advisor]:
    """Insert or update advisors."""
    existing = _by_id(session, Advisor, Advisor.id, _ids(records))
    rows = []
    for record in records:
        ident = _ident(record["id"]) or ""
        advisor = existing.get(ident)
        if advisor is None:
            advisor = Advisor(id=ident)
            session.add(advisor)
        advisor.name = record["name"].strip()
        advisor.phone = plan.advisor_phones[ident]
        teams = list(dict.fromkeys(record["teams"]))
        if advisor.teams != teams:
            advisor.teams = teams
        rows.append(advisor)
    session.flush()
    return rows


def _upsert_contacts(
    session: Session, records: list[dict[str, Any]], plan: _Plan, pepper: str | None = None
) -> tuple[list[Contact], dict[str, str]]:
    """Insert or update contacts; also returns the old phone of each updated contact."""
    existing = _by_id(session, Contact, Contact.id, _ids(records))
    old_phones = {ident: contact.phone for ident, contact in existing.items()}
    # Phones may move between contacts in one load (a swap): park the moving
    # ones first so the unique index never sees two rows with one phone.
    moving = [c for ident, c in existing.items() if c.phone != plan.phones[ident]]
    for contact in moving:
        contact.phone = f"~moving~{contact.id}"
    if moving:
        session.flush()
    rows = []
    for record in records:
        ident = _ident(record["id"]) or ""
        contact = existing.get(ident)
        if contact is None:
            contact = Contact(id=ident, deactivated=False)
            session.add(contact)
        contact.name = record["name"].strip()
        contact.district_id = _ident(record["district"]) or ""
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
        if "last_active" in record:
            contact.last_active = _parse_date(record["last_active"])
        if "deactivated" in record:
            contact.deactivated = record["deactivated"]
        rows.append(contact)
    session.flush()
    return rows, old_phones


def _upsert_cases(session: Session, records: list[dict[str, Any]]) -> list[Case]:
    """Insert or update cases."""
    existing = _by_id(session, Case, Case.number, _ids(records, "number"))
    rows = []
    for record in records:
        number = _ident(record["number"]) or ""
        case = existing.get(number)
        if case is None:
            case = Case(number=number, needs_handover=False)
            session.add(case)
        case.district_id = _ident(record["district"]) or ""
        if "owner" in record:
            case.owner_id = _ident(record["owner"]) if record["owner"] not in (None, "") else None
        case.status = record["status"].strip().lower()
        case.priority = record["priority"].strip().lower()
        case.product = canonical_product(record["product"]) or record["product"]
        if "needs_handover" in record:
            case.needs_handover = record["needs_handover"]
        rows.append(case)
    session.flush()
    return rows


# --- the Redis cache ----------------------------------------------------------


def case_facts(case: Case) -> dict[str, str]:
    """The routing facts of a case, as cached in Redis."""
    return {
        "number": case.number,
        # An outage case opened for an unknown caller has no district (yet).
        "district": case.district_id or "",
        "owner": case.owner_id or "",
        "team": team_for_product(case.product) or GENERAL,
        "status": case.status,
        "priority": case.priority,
        "product": case.product,
    }


# Contact fields an earlier release cached and this one must not leave behind.
RETIRED_CONTACT_FIELDS = ("pin_hash",)


def contact_facts(contact: Contact) -> dict[str, str]:
    """A contact's facts, as cached in Redis (nothing of the PIN, not even its hash)."""
    return {
        "id": contact.id,
        "name": contact.name,
        "district": contact.district_id,
        "phone": contact.phone,
        "last_active": contact.last_active.isoformat() if contact.last_active else "",
        "deactivated": "1" if contact.deactivated else "0",
    }


def district_facts(district: District) -> dict[str, str]:
    """A district's facts, as cached in Redis."""
    return {"id": district.id, "name": district.name, "hosted": "1" if district.hosted else "0"}


class _Facts:
    """Directory facts to cache, copied out of ORM rows while their session is open."""

    def __init__(self) -> None:
        self.districts: list[dict[str, str]] = []
        self.contacts: list[dict[str, str]] = []
        self.advisors: list[tuple[str, str, str, list[str]]] = []  # id, name, phone, teams
        self.cases: list[dict[str, str]] = []
        self.stale_phone_keys: list[str] = []

    @classmethod
    def of(
        cls,
        districts: Iterable[District] = (),
        contacts: Iterable[Contact] = (),
        advisors: Iterable[Advisor] = (),
        cases: Iterable[Case] = (),
    ) -> _Facts:
        """Copy the facts of some rows."""
        facts = cls()
        facts.districts = [district_facts(d) for d in districts]
        facts.contacts = [contact_facts(c) for c in contacts]
        facts.advisors = [(a.id, a.name, a.phone, list(a.teams or [])) for a in advisors]
        facts.cases = [case_facts(c) for c in cases]
        return facts


def _cacheable(facts: Mapping[str, Any]) -> dict[str, str]:
    """Facts as Redis hash fields: text only, a missing value as "".

    Whatever a call wrote into the database (a case without a district, a
    contact without a date) must never stop the cache from being rebuilt.
    """
    return {name: "" if value is None else str(value) for name, value in facts.items()}


def _put(pipe: Any, key: str, mapping: dict[str, str], drop: Iterable[str] = ()) -> None:
    """Write a cached entry, replacing any negative marker (and its expiry) and
    removing the `drop` fields."""
    pipe.hset(key, mapping=_cacheable(mapping))
    pipe.hdel(key, "missing", *drop)
    pipe.persist(key)


def _write_cache(
    redis_client: redis.Redis, facts: _Facts, now: datetime, *, mark_loaded: bool = True
) -> None:
    """Write directory facts into the cache (then, by default, mark the directory loaded)."""
    pipe = redis_client.pipeline(transaction=False)
    # Old phone keys go first: a phone that moved to another contact is rewritten below.
    for key in facts.stale_phone_keys:
        pipe.delete(key)
    for district in facts.districts:
        _put(pipe, keys.district(district["id"]), district)
    for contact in facts.contacts:
        _put(pipe, keys.contact(contact["id"]), contact, RETIRED_CONTACT_FIELDS)
        _put(pipe, keys.contact_by_phone(contact["phone"]), contact, RETIRED_CONTACT_FIELDS)
    for case in facts.cases:
        _put(pipe, keys.case(case["number"]), case)
    for advisor_id, name, phone, _teams in facts.advisors:
        # Directory fields only: status, since, call and lease are presence's.
        pipe.hset(keys.advisor(advisor_id), mapping={"name": name, "phone": phone})
        pipe.hsetnx(keys.advisor(advisor_id), "status", "offline")
        pipe.sadd(keys.advisors(), advisor_id)
    pipe.execute()
    if facts.advisors:
        # Teams go through presence, which moves an available advisor between
        # teams' available sets in the same script that writes the field.
        from routing import presence

        now_ms = int(now.timestamp() * 1000)
        for advisor_id, _name, _phone, teams in facts.advisors:
            presence.update_advisor_teams(redis_client, advisor_id, teams, now_ms)
    if mark_loaded:
        redis_client.set(keys.directory_loaded(), "1")


def cache_directory(
    session_factory: sessionmaker[Session], redis_client: redis.Redis, now: datetime
) -> None:
    """Rewrite the whole directory cache from the database (service start, Redis restart)."""
    with session_factory() as session:
        facts = _Facts.of(
            session.scalars(select(District)),
            session.scalars(select(Contact)),
            session.scalars(select(Advisor)),
            session.scalars(select(Case)),
        )
    current = {keys.contact_by_phone(c["phone"]) for c in facts.contacts}
    pattern = keys.contact_by_phone("*")
    facts.stale_phone_keys = [
        key
        for key in map(_text_of, redis_client.scan_iter(match=pattern, count=1000))
        if key not in current
    ]
    _write_cache(redis_client, facts, now)
    _drop_retired_contact_fields(redis_client)


def _drop_retired_contact_fields(redis_client: redis.Redis) -> None:
    """Remove what an earlier release cached on any contact key (PIN hashes above all),
    including keys the rewrite above did not touch (a negative marker, say)."""
    pipe = redis_client.pipeline(transaction=False)
    # Every key under keys.contact("*") is a contact hash (by id or by phone).
    for key in redis_client.scan_iter(match=keys.contact("*"), count=1000):
        pipe.hdel(key, *RETIRED_CONTACT_FIELDS)
    pipe.execute()


def cache_case(redis_client: redis.Redis, case: Case) -> None:
    """Write one case's routing facts (after a worker opens or changes a case)."""
    pipe = redis_client.pipeline(transaction=False)
    _put(pipe, keys.case(case.number), case_facts(case))
    pipe.execute()


def _cache_contact(redis_client: redis.Redis, facts: dict[str, str]) -> None:
    """Write one contact's facts under its id and its phone."""
    pipe = redis_client.pipeline(transaction=False)
    _put(pipe, keys.contact(facts["id"]), facts, RETIRED_CONTACT_FIELDS)
    _put(pipe, keys.contact_by_phone(facts["phone"]), facts, RETIRED_CONTACT_FIELDS)
    pipe.execute()


def record_contact_activity(
    session_factory: sessionmaker[Session],
    redis_client: redis.Redis,
    contact_id: str,
    day: date,
) -> None:
    """A verified call counts as activity: move the contact's last_active to `day`."""
    with session_factory() as session, session.begin():
        contact = session.get(Contact, contact_id)
        if contact is None:
            return
        if contact.last_active is None or contact.last_active < day:
            contact.last_active = day
        facts = contact_facts(contact)
    _cache_contact(redis_client, facts)


# --- lookups on the hot path ----------------------------------------------------

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


def _text_of(value: Any) -> str:
    """A Redis reply as text, whether or not the client decodes responses."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _hash_of(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A Redis hash reply as a dict of text."""
    return {_text_of(k): _text_of(v) for k, v in raw.items()}


_scripts: dict[str, Any] = {}


def _run_script(redis_client: redis.Redis, source: str, key: str, *args: str | int) -> None:
    """Run one of the small scripts above by its SHA (loaded on first use)."""
    script = _scripts.get(source)
    if script is None:
        script = _scripts[source] = redis_client.register_script(source)
    script(keys=[key], args=list(args), client=redis_client)


def _fill(redis_client: redis.Redis, key: str, facts: dict[str, str]) -> None:
    """Cache facts read from the database, unless the key was written meanwhile."""
    args: list[str] = []
    for field, value in _cacheable(facts).items():
        args += [field, value]
    _run_script(redis_client, _FILL_IF_ABSENT, key, *args)


def _mark_missing(redis_client: redis.Redis, key: str) -> None:
    """Remember for a minute that the database has no such record."""
    _run_script(redis_client, _MARK_MISSING, key, NEGATIVE_TTL_SECONDS)


def _lookup(
    redis_client: redis.Redis,
    session_factory: sessionmaker[Session] | None,
    key: str,
    load: Any,
) -> dict[str, str] | None:
    """Redis first; on a miss, the database once (then cache the answer either way)."""
    cached = _hash_of(redis_client.hgetall(key))  # type: ignore[arg-type]
    if cached:
        return None if cached.get("missing") == "1" else cached
    if session_factory is None:
        return None
    with session_factory() as session:
        facts = load(session)
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

    def load(session: Session) -> dict[str, str] | None:
        case = session.get(Case, number)
        return case_facts(case) if case else None

    return _lookup(redis_client, session_factory, keys.case(number), load)


def find_contact_by_phone(
    redis_client: redis.Redis, session_factory: sessionmaker[Session] | None, e164: str
) -> dict[str, str] | None:
    """The contact owning an E.164 phone (deactivated ones too: check contact_is_active)."""
    if not e164:
        return None

    def load(session: Session) -> dict[str, str] | None:
        contact = session.scalars(select(Contact).where(Contact.phone == e164)).first()
        return contact_facts(contact) if contact else None

    return _lookup(redis_client, session_factory, keys.contact_by_phone(e164), load)


def find_contact(
    redis_client: redis.Redis, session_factory: sessionmaker[Session] | None, contact_id: str
) -> dict[str, str] | None:
    """A contact by id (deactivated ones too: check contact_is_active)."""
    contact_id = str(contact_id).strip()
    if not contact_id:
        return None

    def load(session: Session) -> dict[str, str] | None:
        contact = session.get(Contact, contact_id)
        return contact_facts(contact) if contact else None

    return _lookup(redis_client, session_factory, keys.contact(contact_id), load)


@dataclass(frozen=True)
class PinCheck:
    """A contact ID and PIN checked against the database."""

    contact: dict[str, str] | None  # the contact's facts, when the ID exists
    matched: bool = False


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
    if session_factory is None:
        check_pin(pin, dummy_hash(pepper), pepper)
        return PinCheck(None)
    with session_factory() as session:
        row = session.get(Contact, contact_id)
        matched = check_pin(pin, row.pin_hash if row else dummy_hash(pepper), pepper)
        if row is None:
            return PinCheck(None)
        facts = contact_facts(row)
        if matched and needs_rehash(row.pin_hash, pepper):
            row.pin_hash = hash_pin(pin, pepper)
            session.commit()
    return PinCheck(facts, matched)


def find_district(
    redis_client: redis.Redis, session_factory: sessionmaker[Session] | None, district_id: str
) -> dict[str, str] | None:
    """A district's facts (id, name, hosted "1"/"0")."""
    if not district_id:
        return None

    def load(session: Session) -> dict[str, str] | None:
        district = session.get(District, district_id)
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
    cached = _hash_of(redis_client.hgetall(key))  # type: ignore[arg-type]
    if cached.get("phone"):
        return cached
    if session_factory is None:
        return None
    with session_factory() as session:
        advisor = session.get(Advisor, advisor_id)
        if advisor is None:
            return None
        facts = _Facts.of(advisors=[advisor])
    _write_cache(redis_client, facts, now or datetime.now(UTC), mark_loaded=False)
    return _hash_of(redis_client.hgetall(key))  # type: ignore[arg-type]


# --- the 180-day rule ------------------------------------------------------------


def contact_is_active(contact: Mapping[str, Any], now: datetime) -> bool:
    """Not deactivated, and active within the last 180 days (no date counts as active)."""
    if str(contact.get("deactivated", "0")).lower() in ("1", "true"):
        return False
    last_active = contact.get("last_active") or ""
    if isinstance(last_active, date):
        day: date | None = last_active
    else:
        day = _parse_date(str(last_active))
        if day is None:
            return True
    assert day is not None
    return (now.date() - day) < timedelta(days=INACTIVE_AFTER_DAYS)


def district_contacts(
    session_factory: sessionmaker[Session], district_id: str, now: datetime | None = None
) -> list[dict[str, str]]:
    """Names of a district's authorized contacts (to tell an unverified caller whom to reach).

    Deactivated contacts are left out; with `now`, so are those past the 180-day rule.
    Only names: ids are half of a caller's credentials and phones are private.
    """
    with session_factory() as session:
        rows = session.scalars(
            select(Contact)
            .where(Contact.district_id == district_id, Contact.deactivated.is_(False))
            .order_by(Contact.name)
        ).all()
    return [
        {"name": c.name}
        for c in rows
        if now is None or contact_is_active(contact_facts(c), now)
    ]
