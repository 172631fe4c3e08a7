"""What the console's two pages show, read from Redis and the call logs:
an advisor's own board (presence, the call they ring or talk on, today's
calls) and the supervisors' wallboard (queues, advisors, service level)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from config.hours import CENTRAL, MaintenanceWindow
from directory.call_logs import calls_answered_by, calls_on_case
from directory.lookups import find_district
from routing import conference, presence
from routing.announcement import current_announcement
from routing.call_state import get_call
from routing.desk import Desk
from routing.maintenance import upcoming_windows
from routing.roster import advisor_names, advisor_roster
from routing.stats import SERVICE_LEVEL_SECONDS, day_bounds, hourly, team_stats
from routing.survey import advisor_satisfaction
from routing.waiting import queue_heads
from routing.whisper import call_facts

# The case's earlier calls on the card, newest first.
PREVIOUS_CALLS = 5
# Waiting callers a wallboard lists per team, from the head of the queue; the
# count covers the rest (an outage storm queues thousands).
WALLBOARD_HEAD = 25
# What an advisor's hold on a call reads as on the console.
HOLD_LABELS = {"ringing": "ringing", "talking": "on a call", "wrapup": "wrap-up"}


def presence_label(state: dict[str, str]) -> str:
    """available, away (busy by their own choice), ringing, on a call, wrap-up or offline."""
    hold = state.get("hold") or ""
    if state.get("call") and hold in HOLD_LABELS:
        return HOLD_LABELS[hold]
    status = state.get("status") or "offline"
    return "away" if status == "busy" else status


def seconds_since(state: dict[str, str], now_ms: int) -> int | None:
    """Whole seconds in the current state (None when never set)."""
    since = int(state.get("since") or 0)
    return max(0, (now_ms - since) // 1000) if since else None


def advisor_board(desk: Desk, advisor_id: str, now: datetime) -> dict[str, Any]:
    """An advisor's page: presence and time in it, the current call's card (with its
    colleague, if any), today's calls and their own 30-day survey figure."""
    now_ms = int(now.timestamp() * 1000)
    state = presence.advisor_state(desk.r, advisor_id)
    label = presence_label(state)
    call_sid = state.get("call") or ""
    card = None
    if call_sid and state.get("hold") in ("ringing", "talking"):
        call = get_call(desk.r, call_sid)
        if call:
            card = asdict(call_facts(call))
            earlier = calls_on_case(desk.session_factory, card["case"]) if card["case"] else []
            card["previous_calls"] = earlier_calls(desk, earlier[::-1][:PREVIOUS_CALLS], now)
            # On the call (not ringing): a colleague may be added, or is on it.
            card["talking"] = state.get("hold") == "talking" and call.get("callback") != "1"
            leg = call.get("colleague_leg") or ""
            card["colleague"] = next(
                (c for c in conference.colleagues(call) if c["leg"] == leg), None)
    start, end = day_bounds(now)
    today = calls_answered_by(desk.session_factory, advisor_id, start, end)
    return {
        "id": advisor_id,
        "presence": label,
        # The switch: on while available, off otherwise (busy on a call is not "away").
        "available": label == "available",
        "on_call": label in HOLD_LABELS.values(),
        # On a call: whether they chose to be away once it ends (else they take the next).
        "away_after": state.get("chosen") in ("busy", "offline"),
        # Set offline by the line after missed rings (`presence.MISSED_RINGS_AWAY`).
        "missed_rings": state.get("away") == "missed-rings",
        "seconds": seconds_since(state, now_ms),
        "card": card,
        "calls_today": todays_calls(desk, today, now),
        "survey": advisor_satisfaction(desk, advisor_id, now),
    }


def central_time(started_at: str, now: datetime) -> str:
    """When a call started, in Central time (the desk's) as a person reads it: "09:41"
    on `now`'s day, "Nov 24 09:41" on another day of its year, "Nov 24, 2025 09:41"
    in an earlier year."""
    started = datetime.fromisoformat(started_at).astimezone(CENTRAL)
    today = now.astimezone(CENTRAL).date()
    if started.date() == today:
        return f"{started:%H:%M}"
    if started.year == today.year:
        return f"{started:%b} {started.day} {started:%H:%M}"
    return f"{started:%b} {started.day}, {started.year} {started:%H:%M}"


def earlier_calls(desk: Desk, calls: list[dict[str, Any]],
                  now: datetime) -> list[dict[str, Any]]:
    """The case's earlier calls on the card as a person reads them: when each started
    in Central time (`started_central`, with its date when not today) and the name of
    the advisor who answered (`answered_by_name`; the id when the directory does not
    know them), the names read in one query."""
    names = advisor_names(desk.session_factory,
                          {call["answered_by"] for call in calls if call.get("answered_by")})
    return [{**call, "started_central": central_time(call["started_at"], now),
             "answered_by_name": names.get(call.get("answered_by") or "")
             or call.get("answered_by") or ""}
            for call in calls]


def todays_calls(desk: Desk, calls: list[dict[str, Any]],
                 now: datetime) -> list[dict[str, Any]]:
    """The advisor's calls of the day as a person reads them: when each started in
    Central time (`started_central`, "09:41": the desk works in Central) and its
    district's name (`district_name`; its id when the directory does not know it).
    Each district is looked up once, however many of the day's calls it made."""
    names: dict[str, str] = {}
    for district_id in {call.get("district") or "" for call in calls} - {""}:
        district = find_district(desk.r, desk.session_factory, district_id)
        names[district_id] = (district or {}).get("name") or district_id
    return [{**call, "started_central": central_time(call["started_at"], now),
             "district_name": names.get(call.get("district") or "", "")}
            for call in calls]


def wallboard(desk: Desk, now: datetime,
              windows: list[MaintenanceWindow] | None = None) -> dict[str, Any]:
    """The supervisors' wallboard: each team's queue (how many wait and the first
    `WALLBOARD_HEAD` in serving order, `routing.waiting.queue_heads`), each advisor's
    state, service level, today's figures by the hour (`hourly`, against the
    `promise_seconds` of the speed of answer), the known-incident announcement, the
    posted maintenance windows not yet over and the next four outage-risk windows
    (posted or the cadence's)."""
    now_ms = int(now.timestamp() * 1000)
    advisors = advisor_roster(desk.r, now_ms, desk.session_factory)
    for advisor in advisors:
        state = presence.advisor_state(desk.r, str(advisor["id"]))
        advisor["presence"] = presence_label(state) if state else "offline"
        advisor["seconds"] = seconds_since(state, now_ms)
    return {"queues": queue_heads(desk, now_ms, WALLBOARD_HEAD), "advisors": advisors,
            "stats": team_stats(desk, now), "hourly": hourly(desk.session_factory, now),
            "promise_seconds": SERVICE_LEVEL_SECONDS, "announcement": current_announcement(desk.r),
            "maintenance": sorted((w for w in windows or [] if w.end > now),
                                  key=lambda w: w.start),
            "upcoming": upcoming_windows(windows or [], now)}
