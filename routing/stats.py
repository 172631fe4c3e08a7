"""Service level per team, today in Central time: from the call logs (answered,
abandoned, speed of answer, callbacks) and the live queues (who waits on hold, for
how long; the callbacks pending).

A callback's wait, for the service level, is the contact's time on hold before they
asked for it (the call log's `details.callback_hold_seconds`), as call centres count
it: the hours until the desk called back are the callback's own figure
(`callback_wait_seconds`), never the line's average speed of answer."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.hours import CENTRAL, central_date
from directory import keys
from directory.models import CallLog
from directory.scripts import script
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
    return {"waiting": 0, "longest_wait_seconds": 0.0, "callbacks_waiting": 0,
            "oldest_callback_seconds": 0.0, "answered": 0, "abandoned": 0,
            "asa_seconds": None, "answered_within_15s": None, "abandonment_rate": None,
            "calls": 0, "callbacks_answered": 0, "callback_wait_seconds": None}


def _is_callback(details: dict[str, Any] | None) -> bool:
    """Whether a call log is a callback's (`details.callback`, written since it exists)."""
    return bool(details and details.get("callback"))


def _answer_wait(wait: float | None, details: dict[str, Any] | None) -> float | None:
    """The seconds an answered call counts for the speed of answer: its time in the
    queue; for a callback, the contact's time on hold before asking
    (`details.callback_hold_seconds`), None when a callback's log does not say it (a
    callback asked for before the hold time was kept: left out of the averages, never
    counted as its hours until the call back)."""
    if not _is_callback(details):
        return float(wait or 0.0)
    held = (details or {}).get("callback_hold_seconds")
    return float(held) if isinstance(held, int | float) else None


def _callback_delay(wait: float | None, details: dict[str, Any] | None) -> float | None:
    """A callback's seconds from the contact's asking to an advisor taking it up: its
    whole time in the queue less its time on hold; None when either is not known."""
    held = (details or {}).get("callback_hold_seconds")
    if wait is None or not isinstance(held, int | float):
        return None
    return max(0.0, float(wait) - float(held))


def service_level(
    session_factory: sessionmaker[Session] | None, now: datetime
) -> dict[str, dict[str, float | int | None]]:
    """Answered, abandoned, average speed of answer and the 15-second share, per team;
    with the callbacks answered and their average delay (`callback_wait_seconds`,
    seconds from asking to an advisor taking it up). A callback counts in `answered`,
    and in `asa_seconds` and `answered_within_15s` with its time on hold before asking
    (`_answer_wait`)."""
    figures: dict[str, dict[str, float | int | None]] = {}
    if session_factory is None:
        return figures
    start, end = day_bounds(now)
    with session_factory() as db:
        rows = db.execute(
            select(CallLog.team, CallLog.status, CallLog.queue_wait_seconds, CallLog.details)
            .where(CallLog.started_at >= start, CallLog.started_at < end,
                   CallLog.team.is_not(None))
        ).all()
    waits: dict[str, list[float]] = {}
    delays: dict[str, list[float]] = {}
    for team, status, wait, details in rows:
        team_figures = figures.setdefault(team, _empty())
        team_figures["calls"] = int(team_figures["calls"] or 0) + 1
        if status == "answered":
            team_figures["answered"] = int(team_figures["answered"] or 0) + 1
            answer_wait = _answer_wait(wait, details)
            if answer_wait is not None:
                waits.setdefault(team, []).append(answer_wait)
            if _is_callback(details):
                team_figures["callbacks_answered"] = (
                    int(team_figures["callbacks_answered"] or 0) + 1)
                delay = _callback_delay(wait, details)
                if delay is not None:
                    delays.setdefault(team, []).append(delay)
        elif status == "abandoned":
            team_figures["abandoned"] = int(team_figures["abandoned"] or 0) + 1
    for team, team_figures in figures.items():
        if delays.get(team):
            team_figures["callback_wait_seconds"] = round(
                sum(delays[team]) / len(delays[team]), 2)
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
    (seconds in the queue, a callback's its time on hold before asking as in
    `service_level`; rounded to 0.1 s; None without an answered call),
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
            select(CallLog.started_at, CallLog.status, CallLog.queue_wait_seconds,
                   CallLog.details)
            .where(CallLog.started_at >= start, CallLog.started_at < end,
                   CallLog.status.in_(("answered", "abandoned")))
        ).all()
    waits: list[list[float]] = [[] for _ in range(24)]
    for started_at, status, wait, details in rows:
        hour = started_at.astimezone(CENTRAL).hour
        figures = hours[hour]
        figures[status] = int(figures[status] or 0) + 1
        answer_wait = _answer_wait(wait, details) if status == "answered" else None
        if answer_wait is not None:
            waits[hour].append(answer_wait)
    for figures, answered_waits in zip(hours, waits, strict=True):
        if answered_waits:
            figures["asa_seconds"] = round(sum(answered_waits) / len(answered_waits), 1)
    return hours


# A team's waiting set (KEYS[1]) told apart, in one step: callers on hold, and callbacks
# pending (their call's hash, ARGV[1] with {} for the CallSid, has `callback` 1): for
# each, how many and the earliest first arrival (ms; -1 for none), each score's
# arrival being the score modulo ARGV[2] (its priority band's width). One script, not
# a round trip per caller: 5,000 may wait.
_WAITING_KINDS = """
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local width = tonumber(ARGV[2])
local held, held_first, callbacks, callback_first = 0, -1, 0, -1
for i = 1, #entries, 2 do
  local key = string.gsub(ARGV[1], '{}', function() return entries[i] end, 1)
  local arrived = math.fmod(tonumber(entries[i + 1]), width)
  if redis.call('HGET', key, 'callback') == '1' then
    callbacks = callbacks + 1
    if callback_first < 0 or arrived < callback_first then callback_first = arrived end
  else
    held = held + 1
    if held_first < 0 or arrived < held_first then held_first = arrived end
  end
end
return {held, string.format('%.0f', held_first), callbacks,
        string.format('%.0f', callback_first)}
"""


def _seconds_since(arrived: int, now_ms: int) -> float:
    """Seconds from an arrival (ms since the epoch; -1 for none) to `now_ms`,
    rounded to 0.1 s; 0.0 for none."""
    first = float(arrived)
    return round(max(0.0, (now_ms - first) / 1000), 1) if first >= 0 else 0.0


def queue_kinds(desk: Desk, team: str) -> tuple[int, int, int, int]:
    """Who is in the team's queue, in one script: (callers on hold, the first arrival
    among them in ms since the epoch or -1, pending callbacks, the first arrival among
    them or -1). Each score keeps the caller's first arrival, a missed ring included."""
    held, held_first, callbacks, callback_first = script(desk.r, _WAITING_KINDS)(
        keys=[keys.team_waiting(team)], args=[keys.call("{}"), BAND_WIDTH], client=desk.r)
    return int(held), int(held_first), int(callbacks), int(callback_first)


def team_stats(desk: Desk, now: datetime) -> dict[str, dict[str, float | int | None]]:
    """Every team's service level today plus its live queue: every team of the
    directory (`routing.waiting.team_names`, the cache rebuilt if Redis lost it), and
    any other team with calls logged today, zeros where nothing happened.

    `waiting` and `longest_wait_seconds` are the callers on hold only (since their
    first arrival, a missed ring included); a contact who asked for a callback and
    hung up keeps their place but is not on hold: `callbacks_waiting` counts them and
    `oldest_callback_seconds` is the earliest one's time since first arrival.

    `failed_verifications_last_hour` is the whole line's (a caller verifies
    before choosing a team), repeated in each team's figures so that every
    top-level key stays a team, as the contract's shape promises.
    """
    figures = service_level(desk.session_factory, now)
    now_ms = int(now.timestamp() * 1000)
    for team in team_names(desk, now_ms):  # every team, after Redis came back empty too
        team_figures = figures.setdefault(team, _empty())
        held, held_first, callbacks, callback_first = queue_kinds(desk, team)
        team_figures["waiting"] = int(held)
        team_figures["longest_wait_seconds"] = _seconds_since(held_first, now_ms)
        team_figures["callbacks_waiting"] = int(callbacks)
        team_figures["oldest_callback_seconds"] = _seconds_since(callback_first, now_ms)
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
