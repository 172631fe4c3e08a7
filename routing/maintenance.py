"""The posted maintenance windows operators read and replace through the API.

Until the first replacement, the posted windows are config/maintenance.json's
(read when the service starts); after it, those stored by
`directory.windows` (the database, cached in Redis), which every web process
reads on each call. The rule for what may be posted: a window starts and ends
on one Saturday, Central Time; `outage` true is the outage-risk kind (the
00:00-06:00 one), false the no-outage kind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from config.hours import CENTRAL, NO_OUTAGE, OUTAGE_RISK, MaintenanceWindow, cadence_saturdays
from directory.windows import change_windows, stored_windows
from routing.desk import Desk

log = logging.getLogger(__name__)

_SATURDAY = 5
_FIELDS = {"start", "end", "outage", "note"}


class WindowsRefused(Exception):
    """A replacement that cannot be posted, with a problem naming each bad window."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _stored(window: MaintenanceWindow) -> dict[str, Any]:
    """A window as `directory.windows` stores it."""
    return {"start": window.start.isoformat(), "end": window.end.isoformat(),
            "kind": window.kind, "note": window.note}


def _window(stored: dict[str, Any]) -> MaintenanceWindow:
    """A stored window back as the calendar's."""
    return MaintenanceWindow(datetime.fromisoformat(stored["start"]),
                             datetime.fromisoformat(stored["end"]),
                             stored["kind"], stored.get("note", ""))


def posted_windows(desk: Desk, initial: list[MaintenanceWindow], *,
                   file_if_database_down: bool = True) -> list[MaintenanceWindow]:
    """The posted windows now: those stored through the API, else `initial` (the file's).

    A call never waits on the database for a notice: when Redis has not cached
    the windows and the database is down, the file's are used for this call.
    An operator asking what is posted is told the truth or nothing: with
    `file_if_database_down=False` that case raises SQLAlchemy's error instead.
    """
    try:
        stored = stored_windows(desk.session_factory, desk.r)  # type: ignore[arg-type]
    except SQLAlchemyError:
        if not file_if_database_down:
            raise
        log.warning("posted maintenance windows unreadable (database down): using the file's")
        return list(initial)
    return list(initial) if stored is None else [_window(w) for w in stored]


def as_api(windows: list[MaintenanceWindow]) -> list[dict[str, Any]]:
    """Windows as the API shows them: start and end in Central Time, whether an outage,
    and the operators' note ("" for none): all that PUT takes, so a GET put back
    changes nothing."""
    return [
        {"start": w.start.astimezone(CENTRAL).isoformat(),
         "end": w.end.astimezone(CENTRAL).isoformat(),
         "outage": w.kind == OUTAGE_RISK, "note": w.note}
        for w in sorted(windows, key=lambda w: (w.start, w.end))
    ]


def _moment(value: object, name: str) -> datetime:
    """An ISO 8601 time with its offset, or ValueError."""
    if not isinstance(value, str):
        raise ValueError(f'"{name}" must be an ISO 8601 time with offset')
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f'"{name}" {value!r} is not an ISO 8601 time') from None
    if moment.utcoffset() is None:
        raise ValueError(f'"{name}" {value!r} has no UTC offset')
    return moment


def _parse(item: object) -> MaintenanceWindow:
    """One posted window, or ValueError saying what is wrong with it."""
    if not isinstance(item, dict):
        raise ValueError("must be an object")
    unknown = sorted(str(k) for k in item if k not in _FIELDS)
    if unknown:
        raise ValueError(f"unknown field {', '.join(unknown)}")
    start, end = _moment(item.get("start"), "start"), _moment(item.get("end"), "end")
    if not isinstance(item.get("outage"), bool):
        raise ValueError('"outage" must be true or false')
    note = item.get("note", "")
    if not isinstance(note, str):
        raise ValueError('"note" must be text')
    if end <= start:
        raise ValueError("end is not after start")
    day = start.astimezone(CENTRAL)
    if day.weekday() != _SATURDAY:
        raise ValueError(f"not a Saturday in Central Time ({day:%A %Y-%m-%d})")
    if end.astimezone(CENTRAL).date() != day.date():
        raise ValueError("must end on the Saturday it starts (Central Time)")
    return MaintenanceWindow(start, end, OUTAGE_RISK if item["outage"] else NO_OUTAGE, note)


def _validated(body: object) -> list[MaintenanceWindow]:
    """`body` (as `PUT /api/maintenance` takes it) as windows; WindowsRefused naming
    each bad one."""
    if not isinstance(body, list):
        raise WindowsRefused(["the body must be a JSON list of windows"])
    windows: list[MaintenanceWindow] = []
    problems: list[str] = []
    for index, item in enumerate(body):
        label = f"windows[{index}]"
        if isinstance(item, dict) and isinstance(item.get("start"), str):
            label += f" ({item['start']})"
        try:
            windows.append(_parse(item))
        except ValueError as error:
            problems.append(f"{label}: {error}")
    if problems:
        raise WindowsRefused(problems)
    return windows


def _change(desk: Desk, change: Callable[[list[MaintenanceWindow]], list[MaintenanceWindow]],
            initial: list[MaintenanceWindow], now: datetime,
            actor: str) -> list[MaintenanceWindow]:
    """Replace the posted windows with `change(the windows posted now)`, one change at a
    time across every web process (`directory.windows.change_windows`): a change never
    starts from windows another one is replacing, so none is lost."""
    stored = change_windows(
        desk.session_factory,  # type: ignore[arg-type]
        desk.r, lambda current: [_stored(w) for w in change([_window(w) for w in current])],
        now, initial=[_stored(w) for w in initial], actor=actor)
    return [_window(w) for w in stored]


def replace_windows(desk: Desk, body: object, initial: list[MaintenanceWindow],
                    now: datetime, *, actor: str) -> list[MaintenanceWindow]:
    """Replace every posted window with `body`'s; WindowsRefused (nothing changed) if any is bad."""
    windows = _validated(body)
    return _change(desk, lambda _current: windows, initial, now, actor)


def _as_body(window: MaintenanceWindow) -> dict[str, Any]:
    """A posted window as `PUT /api/maintenance` takes it (note included)."""
    return {"start": window.start.isoformat(), "end": window.end.isoformat(),
            "outage": window.kind == OUTAGE_RISK, "note": window.note}


def post_window(desk: Desk, item: dict[str, Any], initial: list[MaintenanceWindow],
                now: datetime, *, actor: str) -> list[MaintenanceWindow]:
    """Post one more window (`item` as one entry of `PUT /api/maintenance`), keeping
    the others, those posted meanwhile by someone else included; WindowsRefused
    (nothing changed) when it breaks the rule."""
    try:
        _parse(item)
    except ValueError as error:
        raise WindowsRefused([f"the new window ({item.get('start')}): {error}"]) from None
    return _change(desk, lambda current: _validated([_as_body(w) for w in current] + [item]),
                   initial, now, actor)


def withdraw_window(desk: Desk, start: str, initial: list[MaintenanceWindow],
                    now: datetime, *, actor: str) -> list[MaintenanceWindow]:
    """Withdraw the posted window(s) starting at `start` (ISO 8601); the others stay."""
    return _change(desk, lambda current: [w for w in current if w.start.isoformat() != start],
                   initial, now, actor)


def upcoming_windows(posted: list[MaintenanceWindow], now: datetime,
                     count: int = 4) -> list[MaintenanceWindow]:
    """The next `count` outage-risk windows not yet over, soonest first: the posted
    ones between the first and last posted dates (the operators' calendar is
    authoritative there), the every-other-Saturday cadence (00:00-06:00 Central)
    outside them, as the line's notices use them; times in Central."""
    days = [w.day for w in posted]
    first, last = (min(days), max(days)) if days else (None, None)
    found = [w for w in posted if w.kind == OUTAGE_RISK and w.end > now]
    today = now.astimezone(CENTRAL).date()
    for day in cadence_saturdays(today, today + timedelta(days=14 * (count + 1))):
        if first is not None and last is not None and first <= day <= last:
            continue
        found.append(MaintenanceWindow(datetime.combine(day, time(0), tzinfo=CENTRAL),
                                       datetime.combine(day, time(6), tzinfo=CENTRAL),
                                       OUTAGE_RISK, "release cadence"))
    soonest = sorted((w for w in found if w.end > now), key=lambda w: w.start)[:count]
    return [MaintenanceWindow(w.start.astimezone(CENTRAL), w.end.astimezone(CENTRAL), w.kind,
                              w.note) for w in soonest]


def window_from_form(day: str, start: str, end: str, outage: bool, note: str) -> dict[str, Any]:
    """A window typed on the wallboard (a date, two Central clock times) as one entry
    of `PUT /api/maintenance`; WindowsRefused saying which field is unreadable."""
    try:
        when = date.fromisoformat(day.strip())
    except ValueError:
        raise WindowsRefused([f"the date {day!r} is not YYYY-MM-DD"]) from None
    moments = []
    for name, value in (("start", start), ("end", end)):
        try:
            clock = time.fromisoformat(value.strip())
        except ValueError:
            raise WindowsRefused([f"the {name} time {value!r} is not HH:MM"]) from None
        moments.append(datetime.combine(when, clock, tzinfo=CENTRAL).isoformat())
    return {"start": moments[0], "end": moments[1], "outage": outage, "note": note[:200]}
