"""The waiting side of the ACD: who waits where, in serving order, and how
long a caller can expect to wait."""

from __future__ import annotations

from routing import keys
from routing.desk import Desk
from routing.presence import BANDS

_BAND_NAMES = {band: name for name, band in BANDS.items()}
_BAND_WIDTH = 10**13


def waiting_position(desk: Desk, call_sid: str) -> tuple[int | None, float | None]:
    """The caller's 1-based place in their team's queue and an estimated wait (s)."""
    team = desk.r.hget(keys.call(call_sid), "waiting_team")
    if not team:
        return None, None
    pipe = desk.r.pipeline(transaction=False)
    pipe.zrank(keys.team_waiting(team), call_sid)
    pipe.lrange(keys.team_waits(team), 0, 19)
    pipe.zcard(keys.team_available(team))
    rank, recent, _ = pipe.execute()
    if rank is None:
        return None, None
    waits = [float(w) for w in recent]
    average = sum(waits) / len(waits) if waits else 30.0
    return rank + 1, average * (rank + 1) / max(1, _serving_advisors(desk, team))


def _serving_advisors(desk: Desk, team: str) -> int:
    """How many advisors of a team are working (available or busy)."""
    advisor_ids = list(desk.r.smembers(keys.advisors()))
    pipe = desk.r.pipeline(transaction=False)
    for advisor_id in advisor_ids:
        pipe.hmget(keys.advisor(advisor_id), "status", "teams")
    return sum(
        1
        for status, teams in pipe.execute()
        if status in ("available", "busy") and team in (teams or "").split(",")
    )


def waiting_callers(desk: Desk, now_ms: int) -> dict[str, list[dict[str, object]]]:
    """Every team's waiting callers in the order they will be served."""
    queues: dict[str, list[dict[str, object]]] = {}
    for team in sorted(desk.r.smembers(keys.teams())):
        entries = desk.r.zrange(keys.team_waiting(team), 0, -1, withscores=True)
        callers = []
        for call_sid, score in entries:
            session = desk.r.hmget(keys.call(call_sid), "enqueued_at", "case", "caller", "district")
            enqueued = int(session[0] or now_ms)
            band = int(score // _BAND_WIDTH)
            callers.append({
                "call_sid": call_sid,
                "priority": _BAND_NAMES.get(band, "medium"),
                "waiting_seconds": round(max(0, now_ms - enqueued) / 1000, 1),
                "case_number": session[1] or None,
                "caller": session[2] or None,
                "district": session[3] or None,
            })
        queues[team] = callers
    return queues
