"""The callbacks promised and not logged yet, kept in the database (`PendingCallback`)
so that a Redis which comes back empty loses none of them.

A row is written when a waiting contact asks to be called back, before the desk
promises it; it is deleted in the transaction that writes the call's log
(`workers.call_log`), so at every moment the callback has a row, a log, or both.
`routing.redis_restarts` reads the rows when Redis has lost its state and puts each
callback whose call is gone back in its queue.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from directory.models import CallLog, PendingCallback


@dataclass(frozen=True)
class CallbackRequest:
    """One callback asked for: the call (`call`: its Redis hash as text fields), the
    queue it waits in (`team`) and its place there (`wait_score`: priority band x
    10^13 + first arrival, ms since the epoch), the number to dial (E.164)."""

    call_sid: str
    call: Mapping[str, str]
    team: str
    wait_score: int
    callback_number: str


def record_pending_callback(session_factory: sessionmaker[Session], request: CallbackRequest,
                            now: datetime) -> None:
    """Keep the callback `request` (asked at `now`, aware) in the database, in its own
    committed transaction. A row already there (Twilio repeating the key) is kept as it
    is. Raises what SQLAlchemy raises when the database cannot be written (down, locked,
    read-only): the caller must then not promise the callback."""
    call = request.call
    row = PendingCallback(
        call_sid=request.call_sid, contact_id=call.get("contact", ""),
        district_id=call.get("district") or None, case_number=call.get("case") or None,
        team=request.team, wait_score=request.wait_score, requested_at=now,
        caller=call.get("caller", ""), callback_number=request.callback_number,
        call={str(name): str(value) for name, value in call.items()})
    with session_factory() as db:
        db.add(row)
        try:
            db.commit()
        except IntegrityError:
            db.rollback()
            if db.get(PendingCallback, request.call_sid) is None:
                raise  # a constraint of its own, not the row of a repeat


def forget_pending_callback(session_factory: sessionmaker[Session], call_sid: str) -> None:
    """Delete the row of a callback that was not promised after all (the call ended, or
    was being connected, as it was asked). Best effort: a row left behind is harmless,
    for the call's log deletes it, and a call logged is never put back."""
    with contextlib.suppress(SQLAlchemyError), session_factory() as db:
        db.execute(delete(PendingCallback).where(PendingCallback.call_sid == call_sid))
        db.commit()


def drop_logged_callbacks(db: Session, call_sids: Iterable[str]) -> None:
    """Delete the rows of these calls, in the transaction `db` that writes their logs
    (not committed here)."""
    sids = sorted(set(call_sids))
    if sids:
        db.execute(delete(PendingCallback).where(PendingCallback.call_sid.in_(sids)))


def pending_callbacks(session_factory: sessionmaker[Session]) -> list[CallbackRequest]:
    """Every callback kept whose call has no log yet, in queue order (lowest score
    first); the rows of calls logged already (a row the log's transaction could not see:
    written as the call ended) are deleted on the way. Raises what SQLAlchemy raises when
    the database cannot be read."""
    with session_factory() as db:
        rows = [CallbackRequest(row.call_sid, dict(row.call or {}), row.team, row.wait_score,
                                row.callback_number)
                for row in db.scalars(select(PendingCallback).order_by(
                    PendingCallback.wait_score, PendingCallback.requested_at))]
        logged = set(db.scalars(select(CallLog.call_sid).where(
            CallLog.call_sid.in_([row.call_sid for row in rows])))) if rows else set()
        if logged:
            drop_logged_callbacks(db, logged)
            db.commit()
    return [row for row in rows if row.call_sid not in logged]
