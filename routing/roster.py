"""The advisors as the console shows them: names, status, teams, current call."""

from __future__ import annotations

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from directory import keys
from directory.models import Advisor


def advisor_names(
    session_factory: sessionmaker[Session] | None, advisor_ids: set[str]
) -> dict[str, str]:
    """The directory's name of each of `advisor_ids` it knows, in one query."""
    if session_factory is None or not advisor_ids:
        return {}
    with session_factory() as db:
        rows = db.execute(select(Advisor.id, Advisor.name)
                          .where(Advisor.id.in_(sorted(advisor_ids)))).all()
    return {advisor_id: name for advisor_id, name in rows if name}


def advisor_roster(
    r: redis.Redis, now_ms: int, session_factory: sessionmaker[Session] | None = None
) -> list[dict[str, object]]:
    """One dict per advisor: id, name, status, `away` ("missed-rings" when the line set
    them offline after missed rings, else None), teams, idle/busy since.

    The directory (database) says who the advisors are, so the roster is
    whole even right after Redis lost its state (they show as offline).
    """
    known: dict[str, dict[str, str]] = {}
    if session_factory is not None:
        with session_factory() as db:
            for advisor in db.scalars(select(Advisor)):
                known[advisor.id] = {"name": advisor.name, "phone": advisor.phone,
                                     "teams": ",".join(advisor.teams)}
    ids = sorted(set(r.smembers(keys.advisors())) | set(known))
    pipe = r.pipeline(transaction=False)
    for advisor_id in ids:
        pipe.hgetall(keys.advisor(advisor_id))
    roster = []
    for advisor_id, live in zip(ids, pipe.execute(), strict=True):
        state = {**known.get(advisor_id, {}), **live}
        since = int(state.get("since") or 0)
        call, wrapup = state.get("call") or "", state.get("hold") == "wrapup"
        roster.append({
            "id": advisor_id,
            "name": state.get("name", ""),
            "phone": state.get("phone", ""),
            "status": state.get("status", "offline"),
            # Set offline by the line after missed rings (`presence.MISSED_RINGS_AWAY`).
            "away": state.get("away") or None,
            "teams": [t for t in (state.get("teams") or "").split(",") if t],
            "call_sid": call if call.startswith("CA") and not wrapup else None,
            "wrap_up": wrapup,
            "status_seconds": round(max(0, now_ms - since) / 1000, 1) if since else None,
        })
    return roster
