"""Validation of an operator's directory document: every problem, each naming its record.

A document either loads whole or not at all, so validation finds every
problem first (`DirectoryError` carries them all). `check_for_load` is the
walk itself, filling a `Plan` with the normalized values (E.164 phones, the
contacts already in the database) that `directory.loading` reuses;
`validate_document` is the same check on its own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from directory.case_numbers import LARGEST_CASE_NUMBER
from directory.catalog import ALL_TEAMS, CASE_STATUSES, PRIORITIES, canonical_product
from directory.models import Advisor, Contact, District
from directory.phones import has_extension, normalize_phone, undialable_for_advisor

log = logging.getLogger(__name__)

SECTIONS = ("districts", "contacts", "advisors", "cases")
# The fields of each section's records (docs/contract.md, "The directory document").
FIELDS = {
    "districts": frozenset({"id", "name", "hosted"}),
    "contacts": frozenset({"id", "name", "district", "phone", "pin", "last_active",
                           "deactivated"}),
    "advisors": frozenset({"id", "name", "phone", "teams"}),
    "cases": frozenset({"number", "district", "owner", "status", "priority", "product",
                        "needs_handover"}),
}
# Text with a control character (a NUL above all, which PostgreSQL cannot store) is a
# bad record, named as such, rather than a database error at the commit. Tabs and line
# ends are not: a spreadsheet's export leaves them in cells, and the loader strips
# them around a value.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Python reads at most 4,300 digits as a number; a case number is at most 19.
_CASE_NUMBER_DIGITS = len(str(LARGEST_CASE_NUMBER))
# The longest contact ID a caller can key in (`routing.verification` keeps no more): a
# longer one would load and never verify on the phone.
CONTACT_ID_DIGITS = 20

# An advisor id: the call log keeps "advisors tried" comma-joined and the survey's
# per-advisor figures space-joined, so an id with a comma or a space would come back
# as other advisors; the contract's examples ("A7") fit.
ADVISOR_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_PIN_RE = re.compile(r"[0-9]{4,8}")
_DIGITS_RE = re.compile(r"[0-9]+")
# How a problem begins when it is a record's (`_label`): `contacts[2]`.
_RECORD_RE = re.compile(r"(?:districts|contacts|advisors|cases)\[[0-9]+\]")


class JsonObject(dict):
    """A JSON object as `json_object` reads it: a dict, with the keys named more than once."""

    repeated: tuple[str, ...] = ()


def json_object(pairs: list[tuple[str, Any]]) -> JsonObject:
    """`json.loads`' `object_pairs_hook`: the object, noting each key named twice (the
    plain parser keeps the last silently: "hosted": true, "hosted": false would load
    false unseen); validation names them as problems of their record."""
    obj = JsonObject(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        obj.repeated = tuple(dict.fromkeys(k for k, _ in pairs if k in seen or seen.add(k)))
    return obj


def _repeated_fields(record: Mapping[str, Any], label: str, problems: list[str]) -> None:
    """Note each field a record names more than once (`json_object`)."""
    for field in getattr(record, "repeated", ()):
        problems.append(f'{label}: field "{str(field)[:40]}" is named more than once')


class DirectoryError(Exception):
    """A directory document that cannot be loaded, with every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the directory:\n" + "\n".join(problems))
        self.problems = problems

    @property
    def bad_records(self) -> int:
        """How many records the problems name (one record may have several problems; a
        problem of the document itself names none)."""
        return len({m.group(0) for p in self.problems if (m := _RECORD_RE.match(p))})


def record_id(value: object) -> str | None:
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
        ident = record_id(record.get(field))
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


def _control_characters(section: str, record: Mapping[str, Any], label: str,
                        problems: list[str]) -> None:
    """Note each text field of the format (or text in a list field) holding a control
    character other than a tab or a line end; fields the format does not have are
    never stored, so they are only warned about (`_unknown_fields`)."""
    for field, value in record.items():
        if field not in FIELDS[section]:
            continue
        texts = value if isinstance(value, list) else [value]
        for text in texts:
            if isinstance(text, str) and (found := _CONTROL_RE.search(text)):
                problems.append(f'{label}: "{field}" contains a control character '
                                f"(U+{ord(found.group()):04X})")
                break


def _unknown_fields(section: str, record: Mapping[str, Any], label: str) -> None:
    """Warn (the record still loads) about each field the document format does not have:
    a misspelt optional field ("deactivate") would otherwise be ignored unseen."""
    for field in record:
        if field not in FIELDS[section]:
            log.warning("%s: unknown field %r ignored (%s has %s)", label, str(field)[:40],
                        section, ", ".join(sorted(FIELDS[section])))


class Plan:
    """What validation learned that loading reuses: normalized values by record, and
    the Central date the load happens on (`today`; None: dates are not checked
    against the calendar)."""

    def __init__(self, today: date | None = None) -> None:
        self.phones: dict[str, str] = {}  # contact id -> E.164
        self.advisor_phones: dict[str, str] = {}  # advisor id -> E.164
        self.existing_contacts: dict[str, str] = {}  # contact id in db -> phone
        self.existing_advisors: dict[str, str] = {}  # advisor id in db -> phone
        self.today = today


def validate_document(doc: object, db: Session, today: date | None = None) -> list[str]:
    """Every problem that stops the document from loading, each naming its record;
    `today` (a Central date) warns of `last_active` dates after tomorrow."""
    return check_for_load(doc, db, Plan(today))


_RECORD_RE = re.compile(r"(districts|contacts|advisors|cases)\[(\d+)\]")


def _in_document_order(problems: list[str]) -> list[str]:
    """Problems sorted by the record they name (document-wide ones first)."""

    def position(problem: str) -> tuple[int, int]:
        match = _RECORD_RE.match(problem)
        if match is None:
            return (-1, 0)
        return (SECTIONS.index(match.group(1)), int(match.group(2)))

    return sorted(problems, key=position)


def check_for_load(doc: object, db: Session, plan: Plan) -> list[str]:
    """Validate, filling `plan` with normalized values for the loader."""
    if not isinstance(doc, dict):
        return ["the directory document must be a JSON object"]
    problems: list[str] = []
    for key in getattr(doc, "repeated", ()):
        problems.append(f'section "{str(key)[:40]}" is named more than once')
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
                continue
            _repeated_fields(record, _label(name, index, record), problems)
            _control_characters(name, record, _label(name, index, record), problems)
            _unknown_fields(name, record, _label(name, index, record))

    db_districts = set(db.scalars(select(District.id)))
    plan.existing_advisors = {
        row.id: row.phone for row in db.execute(select(Advisor.id, Advisor.phone))
    }
    db_advisors = set(plan.existing_advisors)
    plan.existing_contacts = {
        row.id: row.phone for row in db.execute(select(Contact.id, Contact.phone))
    }

    doc_ids = {name: _unique_ids(name, sections[name], problems) for name in SECTIONS}
    known_districts = db_districts | set(doc_ids["districts"])
    known_advisors = db_advisors | set(doc_ids["advisors"])

    for index, record in enumerate(sections["districts"]):
        if isinstance(record, dict):
            label = _label("districts", index, record)
            _text(record, "name", label, problems)
            _optional_bool(record, "hosted", label, problems)

    # Each record's own phone, by its place in the section: a repeated id (itself a
    # problem) must not hide, or misplace, the phone clash of a record after it.
    advisor_phones: dict[int, str] = {}
    for index, record in enumerate(sections["advisors"]):
        if isinstance(record, dict):
            phone = _check_advisor(record, _label("advisors", index, record), problems, plan)
            if phone is not None:
                advisor_phones[index] = phone
    # Two advisors on one phone would be claimed for two callers and both dialed at it.
    _check_phone_conflicts("advisors", sections["advisors"], advisor_phones,
                           plan.existing_advisors, problems)

    phones: dict[int, str] = {}
    for index, record in enumerate(sections["contacts"]):
        if isinstance(record, dict):
            phone = _check_contact(record, _label("contacts", index, record),
                                   known_districts, problems, plan)
            if phone is not None:
                phones[index] = phone
    _check_phone_conflicts("contacts", sections["contacts"], phones, plan.existing_contacts,
                           problems)

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
        ident = record_id(record[field])
        if ident is None:
            problems.append(f'{label}: "{field}" must be a non-empty string')
            continue
        if section == "cases" and not _DIGITS_RE.fullmatch(ident):
            problems.append(f'{label}: case number "{ident}" must be all digits')
        elif section == "cases" and (len(ident.lstrip("0")) > _CASE_NUMBER_DIGITS
                                     or int(ident) >= LARGEST_CASE_NUMBER):
            # New cases are numbered after the highest (`directory.case_numbers`), in a
            # 64-bit counter: a larger number would leave no number for the next case.
            problems.append(f'{label}: case number "{ident[:24]}" is too large (at most '
                            f"{LARGEST_CASE_NUMBER - 1})")
        if section == "contacts" and not _DIGITS_RE.fullmatch(ident):
            # A caller keys their contact ID in on the phone's keypad.
            problems.append(f'{label}: contact id "{ident}" must be all digits')
        elif section == "contacts" and len(ident) > CONTACT_ID_DIGITS:
            problems.append(f'{label}: contact id "{ident[:40]}" is longer than the '
                            f"{CONTACT_ID_DIGITS} digits a caller can key in")
        if section == "advisors" and not ADVISOR_ID_RE.fullmatch(ident):
            problems.append(f'{label}: advisor id "{ident[:40]}" must be 1 to 64 letters, '
                            "digits, '_', '.' or '-' (no commas or spaces)")
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
    district = record_id(record["district"])
    if district is None:
        problems.append(f'{label}: "district" must be a non-empty string')
    elif district not in known_districts:
        problems.append(f'{label}: district "{district}" does not exist')


def _phone(phone: str, label: str, problems: list[str]) -> str | None:
    """A record's phone in E.164, or None after noting the problem."""
    e164 = normalize_phone(phone)
    if e164 is None:
        why = ("has an extension, which a callback or a caller-ID match cannot use"
               if has_extension(phone) else "is not a phone number")
        problems.append(f'{label}: phone "{phone}" {why}')
    return e164


def _check_advisor(record: dict[str, Any], label: str, problems: list[str],
                   plan: Plan) -> str | None:
    """Check one advisor record; its phone in E.164 (None: missing or bad, noted). The
    line dials that phone for every call routed to the advisor, so a number it must
    never dial (`directory.phones.undialable_for_advisor`) is a bad record."""
    _text(record, "name", label, problems)
    phone = _text(record, "phone", label, problems)
    e164 = _phone(phone, label, problems) if phone is not None else None
    if e164 is not None and (why := undialable_for_advisor(e164)) is not None:
        problems.append(f'{label}: phone "{phone}" {why}: the line never dials it')
        e164 = None
    if e164 is not None and (ident := record_id(record.get("id"))) is not None:
        plan.advisor_phones[ident] = e164
    teams = record.get("teams")
    if not isinstance(teams, list) or not all(isinstance(t, str) for t in teams):
        problems.append(f'{label}: "teams" must be a list of team names')
        return e164
    if not teams:
        problems.append(f"{label}: an advisor needs at least one team")
    for team in teams:
        if team not in ALL_TEAMS:
            problems.append(f'{label}: team "{team}" is not one of {", ".join(ALL_TEAMS)}')
    return e164


def _check_contact(
    record: dict[str, Any],
    label: str,
    known_districts: set[str],
    problems: list[str],
    plan: Plan,
) -> str | None:
    """Check one contact record; its phone in E.164 (None: missing or bad, noted)."""
    ident = record_id(record.get("id"))
    _text(record, "name", label, problems)
    _check_district(record, label, known_districts, problems)
    phone = _text(record, "phone", label, problems)
    e164 = _phone(phone, label, problems) if phone is not None else None
    if e164 is not None and ident is not None:
        plan.phones[ident] = e164
    pin = record.get("pin")
    if pin is None:
        if ident is not None and ident not in plan.existing_contacts:
            problems.append(f'{label}: "pin" is required for a new contact')
    elif isinstance(pin, bool) or not isinstance(pin, str | int) or not _PIN_RE.fullmatch(str(pin)):
        problems.append(f"{label}: pin must be 4 to 8 digits")
    last_active = record.get("last_active")
    day = parse_date(last_active)
    if last_active not in (None, "") and day is None:
        problems.append(f'{label}: last_active "{last_active}" is not a date (YYYY-MM-DD)')
    elif day is not None and plan.today is not None and day > plan.today + timedelta(days=1):
        # A mistyped year would keep the contact active past the 180-day rule: said now.
        log.warning('%s: last_active "%s" is in the future (today is %s in Central time): '
                    "the contact counts as active until 180 days after it", label,
                    last_active, plan.today.isoformat())
    _optional_bool(record, "deactivated", label, problems)
    return e164


def _check_phone_conflicts(section: str, records: list[Any], phones: dict[int, str],
                           existing: dict[str, str], problems: list[str]) -> None:
    """Two contacts, or two advisors, may not share a phone, counting the database as it
    will be after the load.

    `phones` is each record's E.164 phone by its index in `records`; `existing` the
    section's records in the database (id -> phone). Every record of the document
    holds its phone, a repeated id's and an id-less one's too (each is named: `7104`,
    or `contacts[4]` without an id), so one run names every clash; a database record
    the document does not mention keeps its phone. The problem is reported on the
    record that takes the phone (new, or changing its phone), not on the one that
    already has it.
    """
    noun = section[:-1]
    mentioned = {record_id(r.get("id")) for r in records if isinstance(r, dict)}
    holders: dict[str, list[tuple[int | None, str]]] = {}  # phone -> (index, name)
    for ident, phone in existing.items():
        if ident not in mentioned:
            holders.setdefault(phone, []).append((None, ident))
    for index, phone in phones.items():
        name = record_id(records[index].get("id")) or f"{section}[{index}]"
        holders.setdefault(phone, []).append((index, name))
    for index, phone in phones.items():
        record = records[index]
        ident = record_id(record.get("id"))
        if ident is not None and existing.get(ident) == phone:
            continue
        # Not the record itself, nor another record of its id (that repeat is its own problem).
        others = sorted({name for at, name in holders[phone]
                         if at != index and (ident is None or name != ident)})
        if others:
            problems.append(
                f"{_label(section, index, record)}: phone {phone} is already {noun} "
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
        owner_id = record_id(owner)
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


def parse_date(value: object) -> date | None:
    """An ISO date (YYYY-MM-DD), or None."""
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None
