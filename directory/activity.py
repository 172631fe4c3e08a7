"""Contacts' activity and the 180-day rule.

An authorized contact idle for `INACTIVE_AFTER_DAYS` is no longer treated as
authorized on the phone (and the daily job flags them for deactivation). A
verified call counts as activity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.hours import central_date
from directory.cache import contact_facts
from directory.models import Contact
from directory.validation import parse_date

# An authorized contact idle this long is flagged for deactivation (policy).
INACTIVE_AFTER_DAYS = 180


def idle_too_long(last_active: date, today: date) -> bool:
    """The 180-day rule itself (the desk's policy): a contact last active on
    `last_active` is inactive on `today` (both Central dates) once 180 days
    have passed. The one place the rule is counted."""
    return (today - last_active) >= timedelta(days=INACTIVE_AFTER_DAYS)


def contact_is_active(contact: Mapping[str, Any], now: datetime) -> bool:
    """Not deactivated, and active within the last 180 days, counted in Central dates
    (the desk's policy); no date counts as active. `now` is an aware datetime."""
    if str(contact.get("deactivated", "0")).lower() in ("1", "true"):
        return False
    last_active = contact.get("last_active") or ""
    if isinstance(last_active, date):
        day: date | None = last_active
    else:
        day = parse_date(str(last_active))
        if day is None:
            return True
    assert day is not None
    # The desk counts dates in Central time: 23:00 in Chicago is still "today".
    return not idle_too_long(day, central_date(now))


def district_contacts(
    session_factory: sessionmaker[Session], district_id: str, now: datetime | None = None
) -> list[dict[str, str]]:
    """Names of a district's authorized contacts (to tell an unverified caller whom to reach).

    Deactivated contacts are left out; with `now`, so are those past the 180-day rule.
    Only names: ids are half of a caller's credentials and phones are private.
    """
    with session_factory() as db:
        rows = db.scalars(
            select(Contact)
            .where(Contact.district_id == district_id, Contact.deactivated.is_(False))
            .order_by(Contact.name)
        ).all()
    return [
        {"name": c.name}
        for c in rows
        if now is None or contact_is_active(contact_facts(c), now)
    ]


def touch_contacts(db: Session, contact_ids: Iterable[str], day: date) -> list[dict[str, str]]:
    """Verified calls count as activity: move each contact's last verified call forward
    to `day` (a Central date), in the caller's transaction; the contacts' facts, for the
    cache once it is committed."""
    facts = []
    for contact_id in sorted(contact_ids):
        contact = db.get(Contact, contact_id)
        if contact is None:
            continue
        if contact.last_verified_call is None or contact.last_verified_call < day:
            contact.last_verified_call = day
        facts.append(contact_facts(contact))
    return facts
