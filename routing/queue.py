"""The waiting side of the ACD: who waits where, in serving order, and how
long a caller can expect to wait."""

from __future__ import annotations

from routing import keys
from routing.desk import Desk
from routing.presence import BAND_WIDTH, BANDS

_BAND_NAMES = {band: name for name, band in BANDS.items()}


def estimate(
    desk: Desk, team: str, rank: int | None, recent: list[str], working: str | None
) -> tuple[int | None, float | None]:
    """Place in line and estimated wait: recent average wait x place / advisors working."""
    if rank is None:
        return None, None
    waits = [float(w) for w in recent]
    average = sum(waits) / len(waits) if waits else 30.0
    serving = int(working) if working is not None else _serving_advisors(desk, team)
    return rank + 1, average * (rank + 1) / max(1, serving)


def _serving_advisors(desk: Desk, team: str) -> int:
    """How many advisors of a team are working (available or busy), cached a few seconds.

    Only the estimate uses it, so a count up to five seconds old is fine and
    spares every hold cycle a read of every advisor.
    """
    advisor_ids = list(desk.r.smembers(keys.advisors()))
    pipe = desk.r.pipeline(transaction=False)
    for advisor_id in advisor_ids:
        pipe.hmget(keys.advisor(advisor_id), "status", "teams")
    count = sum(
        1
        for status, teams in pipe.execute()
        if status in ("available", "busy") and team in (teams or "").split(",")
    )
    desk.r.set(keys.team_working(team), count, ex=5)
    return count


def waiting_callers(desk: Desk, now_ms: int) -> dict[str, list[dict[str, object]]]:
    """Every team's waiting callers in the order they will be served."""
    queues: dict[str, list[dict[str, object]]] = {}
    for team in sorted(desk.r.smembers(keys.teams())):
        entries = desk.r.zrange(keys.team_waiting(team), 0, -1, withscores=True)
        callers = []
        for call_sid, score in entries:
            call = desk.r.hmget(keys.call(call_sid), "enqueued_at", "case", "caller", "district")
            enqueued = int(call[0] or now_ms)
            band = int(score // BAND_WIDTH)
            callers.append({
                "call_sid": call_sid,
                "priority": _BAND_NAMES.get(band, "medium"),
                "waiting_seconds": round(max(0, now_ms - enqueued) / 1000, 1),
                "case_number": call[1] or None,
                "caller": call[2] or None,
                "district": call[3] or None,
            })
        queues[team] = callers
    return queues
