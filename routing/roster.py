"""The advisors as supervisors see them: status, teams, current call."""

from __future__ import annotations

import redis

from routing import keys


def advisor_roster(r: redis.Redis, now_ms: int) -> list[dict[str, object]]:
    """One dict per advisor: id, name, status, teams, idle/busy since."""
    ids = sorted(r.smembers(keys.advisors()))
    pipe = r.pipeline(transaction=False)
    for advisor_id in ids:
        pipe.hgetall(keys.advisor(advisor_id))
    roster = []
    for advisor_id, state in zip(ids, pipe.execute(), strict=True):
        since = int(state.get("since") or 0)
        call = state.get("call") or ""
        roster.append({
            "id": advisor_id,
            "name": state.get("name", ""),
            "phone": state.get("phone", ""),
            "status": state.get("status", "offline"),
            "teams": [t for t in (state.get("teams") or "").split(",") if t],
            "call_sid": call if call.startswith("CA") else None,
            "wrap_up": call.startswith("wrapup-"),
            "status_seconds": round(max(0, now_ms - since) / 1000, 1) if since else None,
        })
    return roster
