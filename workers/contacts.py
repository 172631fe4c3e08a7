"""The 180-day rule: flag authorized-contact accounts inactive for 180 days.

The line already refuses such contacts by date (`contact_is_active`); this
daily job records the flag operators act on (the policy's "flagged for
deactivation"), and clears it for contacts active again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.hours import CENTRAL, central_date
from directory.activity import idle_too_long
from directory.models import Contact
from workers.context import current_desk


def flag_inactive_contacts(session_factory: sessionmaker[Session], now: datetime) -> list[str]:
    """Flag contacts past the 180-day rule on `now`'s Central date (`idle_too_long`);
    clear the flag of those active again. Returns the ids newly flagged."""
    today = central_date(now)
    flagged = []
    with session_factory() as db, db.begin():
        for contact in db.scalars(select(Contact).order_by(Contact.id)):
            last = contact.last_activity
            stale = last is not None and idle_too_long(last, today)
            if stale and contact.flagged_inactive_on is None:
                contact.flagged_inactive_on = today
                flagged.append(contact.id)
            elif not stale and contact.flagged_inactive_on is not None:
                contact.flagged_inactive_on = None
    return flagged


def flag_inactive() -> list[str]:
    """The daily job: flag inactive contacts now."""
    desk = current_desk()
    assert desk.session_factory is not None
    return flag_inactive_contacts(desk.session_factory, datetime.now(CENTRAL))
