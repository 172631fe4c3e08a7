"""Service level per team, today in Central time: from the call logs (answered,
abandoned, speed of answer) and the live queues (who waits, for how long)."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.hours import CENTRAL, central_date
from directory import keys
from directory.models import CallLog
from routing import lockout, survey
from routing.desk import Desk
from routing.presence import BAND_WIDTH
from routing.waiting import team_names

SERVICE_LEVEL_SECONDS = 15.0


def day_bounds(now: datetime) -> tuple[datetime, datetime]:
    """Start and end of `now`'s day in Central time (aware datetimes)."""
    day = central_date(now)
    start = datetime.combine(day, time(0), tzinfo=CENTRAL)
    return start, datetime.combine(day + timedelta(days=1), time(0), tzinfo=CENTRAL)


def _empty() -> dict[str, float | int | None]:
    """A team's figures before any call."""
    return {"waiting": 0, "longest_wait_seconds": 0.0, "answered": 0, "abandoned": 0,
            "asa_seconds": None, "answered_within_15s": None, "abandonment_rate": None,
            "calls": 0}


def service_level(
    session_factory: sessionmaker[Session] | None, now: datetime
) -> dict[str, dict[str, float | int | None]]:
    """Answered, abandoned, average speed of answer and the 15-second share, per team."""
    figures: dict[str, dict[str, float | int | None]] = {}
    if session_factory is None:
        return figures
    start, end = day_bounds(now)
    with session_factory() as db:
        rows = db.execute(
            select(CallLog.team, CallLog.status, CallLog.queue_wait_seconds)
            .where(CallLog.started_at >= start, CallLog.started_at < end,
                   CallLog.team.is_not(None))
        ).all()
    waits: dict[str, list[float]] = {}
    for team, status, wait in rows:
        team_figures = figures.setdefault(team, _empty())
        team_figures["calls"] = int(team_figures["calls"] or 0) + 1
        if status == "answered":
            team_figures["answered"] = int(team_figures["answered"] or 0) + 1
            waits.setdefault(team, []).append(float(wait or 0.0))
        elif status == "abandoned":
            team_figures["abandoned"] = int(team_figures["abandoned"] or 0) + 1
    for team, team_figures in figures.items():
        answered_waits = waits.get(team, [])
        if answered_waits:
            team_figures["asa_seconds"] = round(sum(answered_waits) / len(answered_waits), 2)
            within = sum(1 for w in answered_waits if w <= SERVICE_LEVEL_SECONDS)
            team_figures["answered_within_15s"] = round(within / len(answered_waits), 4)
        offered = int(team_figures["answered"] or 0) + int(team_figures["abandoned"] or 0)
        if offered:
            team_figures["abandonment_rate"] = round(
                int(team_figures["abandoned"] or 0) / offered, 4)
    return figures


def hourly(
    session_factory: sessionmaker[Session] | None, now: datetime
) -> list[dict[str, float | int | None]]:
    """Today's calls by the hour they started, in Central time, every team together.

    Twenty-four dicts, one per hour 0 to 23 (`hour`: 9 is 09:00 to 09:59:59
    Central), each with `answered` and `abandoned` (numbers of calls), and
    `asa_seconds`, the average speed of answer of that hour's answered calls
    (seconds in the queue, rounded to 0.1 s; None without an answered call),
    to read against the promise of SERVICE_LEVEL_SECONDS (15 s). Hours still to
    come today read as zeros and None. A call counts in the hour it started.
    """
    hours: list[dict[str, float | int | None]] = [
        {"hour": hour, "answered": 0, "abandoned": 0, "asa_seconds": None}
        for hour in range(24)]
    if session_factory is None:
        return hours
    start, end = day_bounds(now)
    with session_factory() as db:
        rows = db.execute(
            select(CallLog.started_at, CallLog.status, CallLog.queue_wait_seconds)
            .where(CallLog.started_at >= start, CallLog.started_at < end,
                   CallLog.status.in_(("answered", "abandoned")))
        ).all()
    waits: list[list[float]] = [[] for _ in range(24)]
    for started_at, status, wait in rows:
        hour = started_at.astimezone(CENTRAL).hour
        figures = hours[hour]
        figures[status] = int(figures[status] or 0) + 1
        if status == "answered":
            waits[hour].append(float(wait or 0.0))
    for figures, answered_waits in zip(hours, waits, strict=True):
        if answered_waits:
            figures["asa_seconds"] = round(sum(answered_waits) / len(answered_waits), 1)
    return hours


def team_stats(desk: Desk, now: datetime) -> dict[str, dict[str, float | int | None]]:
    """Every team's service level today plus its live queue: every team of the
    directory (`routing.waiting.team_names`, the cache rebuilt if Redis lost it), and
    any other team with calls logged today, zeros where nothing happened.

    `failed_verifications_last_hour` is the whole line's (a caller verifies
    before choosing a team), repeated in each team's figures so that every
    top-level key stays a team, as the contract's shape promises.
    """
    figures = service_level(desk.session_factory, now)
    now_ms = int(now.timestamp() * 1000)
    for team in team_names(desk, now_ms):  # every team, after Redis came back empty too
        team_figures = figures.setdefault(team, _empty())
        waiting = desk.r.zrange(keys.team_waiting(team), 0, -1, withscores=True)
        team_figures["waiting"] = len(waiting)
        # Each score keeps the caller's first arrival (ms), a missed ring included.
        arrivals = [int(score) % BAND_WIDTH for _, score in waiting]
        longest = max((now_ms - arrived) / 1000 for arrived in arrivals) if arrivals else 0.0
        team_figures["longest_wait_seconds"] = round(max(0.0, longest), 1)
    failed = lockout.failures_last_hour(desk.r, now)
    for team_figures in figures.values():
        # A line-wide figure (no team took these calls), repeated in every team.
        team_figures["failed_verifications_last_hour"] = failed
    satisfaction = survey.overall_satisfaction_by_team(desk, now)
    for team, team_figures in figures.items():
        # The survey's "overall" over 30 days, against the desk's target.
        team_figures["survey_overall_satisfied_30d"] = satisfaction.get(team)
        team_figures["survey_target"] = survey.TARGET
    return dict(sorted(figures.items()))
