"""Numbers for the cases the line opens: after the highest case number in the
directory, never the same number twice, however many workers open cases at once.

The counter row (`case_number_counter`, id 1) is updated first thing: on
PostgreSQL that takes the row's lock, on SQLite the database's write lock, so
a second worker opening a case waits there until the first one's transaction
ends, then counts on from the number it took. The highest number loaded by
operators (`directory load`, `PUT /api/cases`) is read under that lock, so a
new case is still numbered after it.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from directory.models import CASE_NUMBER_ORDER, Case, CaseNumberCounter

# The first number the line opens on an empty directory.
FIRST_CASE_NUMBER = 2_000_001
# The counter is a signed 64-bit integer on every backend.
LARGEST_CASE_NUMBER = 2**63 - 1


class CaseNumberError(RuntimeError):
    """No number can follow the directory's highest case number (the message names it)."""


def allocate_case_number(db: Session) -> str:
    """The next case number (digits, as text), taken for `db`'s transaction.

    Holds the counter's lock until `db` commits or rolls back (a rollback gives
    the number back). Raises `CaseNumberError` when the highest case number in
    the directory is too large to count on from (over 19 digits).
    """
    taken = db.execute(
        update(CaseNumberCounter)
        .where(CaseNumberCounter.id == 1)
        .values(last_number=CaseNumberCounter.last_number + 1)
    )
    if taken.rowcount == 0:  # type: ignore[attr-defined]  # the row was deleted by hand
        db.add(CaseNumberCounter(id=1, last_number=FIRST_CASE_NUMBER))
        db.flush()
    number = db.scalar(select(CaseNumberCounter.last_number).where(CaseNumberCounter.id == 1))
    assert number is not None
    highest = _highest_case_number(db)
    if highest is not None and highest >= number:
        if highest >= LARGEST_CASE_NUMBER:
            raise CaseNumberError(
                f"case {highest} has the highest number in the directory, too large to "
                f"number new cases after it (at most {LARGEST_CASE_NUMBER - 1})"
            )
        number = highest + 1
        db.execute(
            update(CaseNumberCounter).where(CaseNumberCounter.id == 1).values(last_number=number)
        )
    return str(number)


def _highest_case_number(db: Session) -> int | None:
    """The directory's highest case number as a number (all cases are digits), or None."""
    # Compared as text without leading zeros, longest first: no cast that could
    # overflow on a 20-digit number an operator loaded. Read through its index
    # (`ix_cases_number_magnitude`): this runs under the counter's lock.
    length, digits = CASE_NUMBER_ORDER
    highest = db.scalar(select(Case.number).order_by(length.desc(), digits.desc()).limit(1))
    return int(highest) if highest is not None and highest.isdigit() else None
