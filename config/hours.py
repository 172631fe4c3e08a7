"""The desk's calendar: business hours, holidays and maintenance windows.

Everything here is a pure function of its arguments. Time is a parameter: the
functions take an aware ``datetime`` (any zone; it is converted to Central
Time, America/Chicago) and never read the clock. Nothing is read from disk at
import; ``load_posted_windows`` reads the operators' file when called.

Business hours
    Monday to Friday, 06:00 to 18:00 Central: 06:00:00 is open, 17:59:59 is
    open, 18:00:00 is closed.

Holidays (decisions)
    The desk is closed on New Year's Day, Memorial Day, Juneteenth,
    Independence Day, Labor Day, Thanksgiving, the day after Thanksgiving,
    Christmas Eve and Christmas Day.

    * The federal ones come from the ``holidays`` library's US calendar with
      its observed dates: a fixed-date holiday on a Saturday is observed on the
      Friday before, on a Sunday on the Monday after, as US employers do. New
      Year's Day on a Saturday is therefore observed on Friday December 31 of
      the previous year (2027-12-31 for 2028), and ``holiday_name`` finds it.
      Juneteenth counts from 2021, when it became a federal holiday.
    * The day after Thanksgiving is the Friday after Thanksgiving.
    * Christmas Eve is observed on the last weekday before the day the desk
      is closed for Christmas. That is December 24 when it is a weekday and
      not itself the observed Christmas; Thursday Dec 23 when Christmas is a
      Saturday (Christmas observed Friday Dec 24); Friday Dec 23 when
      Christmas is a Sunday (Christmas observed Monday Dec 26); Friday Dec 22
      when Christmas is a Monday (Christmas Eve falls on the Sunday).
    * A "desk holiday" is a weekday on which the desk closes for a holiday.
      A holiday's own date on a weekend is not one (the desk is closed for the
      weekend anyway; its closure is the observed weekday), so ``is_holiday``
      implies a weekday and ``desk_holidays(2026)`` lists exactly the days
      the desk would otherwise open. Names are speakable, without
      "(observed)": Friday 2026-07-03 is "Independence Day".

Maintenance windows (decisions)
    The published calendar is every other Saturday from 2024-01-06 (the
    "cadence"): outage-risk maintenance 00:00-06:00 and no-outage maintenance
    06:00-18:00. Every week, hosted districts' automatic updates run Thursday
    02:00-06:00 and Windows security updates Wednesday 03:00-05:00.

    Posted windows (``config/maintenance.json``, operator data) win over the
    cadence: between the first and the last date the posted list covers
    (inclusive), the posted windows are authoritative and the cadence
    generates nothing, so an operator can move, skip or extend a Saturday;
    outside that span the cadence applies. Posted windows must be on a
    Saturday: one that is not is returned as a problem by
    ``load_posted_windows`` and not used. The weekly Wednesday and Thursday
    windows always apply.

    ``maintenance_notice`` speaks about the window under way, whatever its kind
    (outage-risk, automatic updates, Windows updates, then no-outage: in that
    order of importance, when two overlap), with when it ends; else about an
    outage-risk window starting within 24 hours. Operators' notes are not
    spoken: they are free text for people reading the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

CENTRAL = ZoneInfo("America/Chicago")
OPENS = time(6, 0)
CLOSES = time(18, 0)

POSTED_WINDOWS_PATH = Path(__file__).with_name("maintenance.json")
CADENCE_ANCHOR = date(2024, 1, 6)

OUTAGE_RISK = "outage-risk"
NO_OUTAGE = "no-outage"
AUTOMATIC_UPDATES = "automatic-updates"
WINDOWS_UPDATES = "windows-updates"
KINDS = (OUTAGE_RISK, NO_OUTAGE, AUTOMATIC_UPDATES, WINDOWS_UPDATES)

_SATURDAY = 5
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_WEDNESDAY = 2
_THURSDAY = 3

# The US federal calendar's name (en_US) -> what the desk calls it.
_FEDERAL = {
    "New Year's Day": "New Year's Day",
    "Memorial Day": "Memorial Day",
    "Juneteenth National Independence Day": "Juneteenth",
    "Independence Day": "Independence Day",
    "Labor Day": "Labor Day",
    "Thanksgiving Day": "Thanksgiving",
    "Christmas Day": "Christmas Day",
}
_OBSERVED = re.compile(r"^(?P<name>.+) \(observed\)$")


# --- holidays -------------------------------------------------------------


def _previous_weekday(day: date) -> date:
    """The last Monday-to-Friday date strictly before `day`."""
    day -= timedelta(days=1)
    while day.weekday() >= _SATURDAY:
        day -= timedelta(days=1)
    return day


@lru_cache(maxsize=64)
def _closures(year: int) -> Mapping[date, str]:
    """The desk's holiday closures of `year`, date -> name, in date order (read-only)."""
    # Neighbouring years too: New Year's Day of year+1 may be observed on Dec 31.
    federal = holidays.country_holidays(
        "US", years=[year - 1, year, year + 1], observed=True, language="en_US"
    )
    days: dict[date, str] = {}
    for day in sorted(federal):
        for label in federal.get_list(day):
            match = _OBSERVED.match(label)
            name = _FEDERAL.get(match["name"] if match else label)
            if name is not None and day.weekday() < _SATURDAY:
                days[day] = name
    for day, name in list(days.items()):
        if name == "Thanksgiving":
            days[day + timedelta(days=1)] = "the day after Thanksgiving"
        elif name == "Christmas Day":
            days[_previous_weekday(day)] = "Christmas Eve"
    return MappingProxyType({day: days[day] for day in sorted(days) if day.year == year})


def desk_holidays(year: int) -> dict[date, str]:
    """The weekdays of `year` on which the desk is closed for a holiday, with names."""
    return dict(_closures(year))


def holiday_name(day: date) -> str | None:
    """The holiday the desk is closed for on `day`, or None."""
    return _closures(day.year).get(day)


def is_holiday(day: date) -> bool:
    """Whether the desk is closed on `day` (a weekday) for a holiday."""
    return holiday_name(day) is not None


def is_business_day(day: date) -> bool:
    """Whether the desk opens on `day`: a weekday that is not a desk holiday."""
    return day.weekday() < _SATURDAY and not is_holiday(day)


# --- business hours -------------------------------------------------------


def _central(now: datetime) -> datetime:
    """`now` in Central Time; a naive datetime is a programming error."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"need an aware datetime, got naive {now.isoformat()}")
    return now.astimezone(CENTRAL)


def central_date(now: datetime) -> date:
    """The desk's calendar date of the aware moment `now` (Central Time): every
    "per day" rule (callbacks a day, the 180-day rule, today's stats) counts these.
    Raises ValueError for a naive datetime."""
    return _central(now).date()


def is_open(now: datetime) -> bool:
    """Whether the desk is open at the aware datetime `now`."""
    local = _central(now)
    return is_business_day(local.date()) and OPENS <= local.time() < CLOSES


def next_opening(now: datetime) -> datetime:
    """The first opening (06:00 Central of a business day) at or after `now`."""
    local = _central(now)
    day = local.date()
    for _ in range(370):
        opening = datetime.combine(day, OPENS, tzinfo=CENTRAL)
        if opening.astimezone(UTC) >= now.astimezone(UTC) and is_business_day(day):
            return opening
        day += timedelta(days=1)
    raise RuntimeError(f"no opening within a year of {now.isoformat()}")  # pragma: no cover


def _spoken_time(moment: time) -> str:
    """A time of day as a caller hears it: "6 AM", "5:30 PM", "noon", "midnight"."""
    if moment.hour == 0 and moment.minute == 0:
        return "midnight"
    if moment.hour == 12 and moment.minute == 0:
        return "noon"
    hour = moment.hour % 12 or 12
    minutes = f":{moment.minute:02d}" if moment.minute else ""
    return f"{hour}{minutes} {'AM' if moment.hour < 12 else 'PM'}"


def hours_sentence() -> str:
    """The desk's hours as one short speakable sentence."""
    return (
        f"Monday to Friday, {_spoken_time(OPENS)} to {_spoken_time(CLOSES)} "
        "Central Time, except holidays."
    )


# --- maintenance windows --------------------------------------------------


@dataclass(frozen=True)
class MaintenanceWindow:
    """A span of maintenance: aware start (inclusive) and end (exclusive)."""

    start: datetime
    end: datetime
    kind: str
    note: str = ""

    def __post_init__(self) -> None:
        """Refuse naive times, empty spans and unknown kinds."""
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("maintenance window times must be aware datetimes")
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} is not after start")
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")

    def contains(self, now: datetime) -> bool:
        """Whether `now` falls inside the window."""
        # In UTC: comparing two datetimes of one zone compares wall clocks, not instants.
        instant = now.astimezone(UTC)
        return self.start.astimezone(UTC) <= instant < self.end.astimezone(UTC)

    @property
    def day(self) -> date:
        """The Central date the window starts on."""
        return self.start.astimezone(CENTRAL).date()


def cadence_saturdays(start: date, end: date, anchor: date = CADENCE_ANCHOR) -> list[date]:
    """Every other Saturday counted from `anchor` (either way), between `start` and `end`."""
    if anchor.weekday() != _SATURDAY:
        raise ValueError(f"cadence anchor {anchor.isoformat()} is not a Saturday")
    first = start + timedelta(days=(anchor - start).days % 14)
    return [first + timedelta(days=14 * n) for n in range(max(0, (end - first).days // 14 + 1))]


def _window(day: date, start: time, end: time, kind: str, note: str = "") -> MaintenanceWindow:
    """A same-day window in Central Time."""
    return MaintenanceWindow(
        datetime.combine(day, start, tzinfo=CENTRAL),
        datetime.combine(day, end, tzinfo=CENTRAL),
        kind,
        note,
    )


def _recurring_windows(day: date, posted: list[MaintenanceWindow]) -> list[MaintenanceWindow]:
    """The cadence's and the weekly windows of one Central date."""
    windows = []
    covered = bool(posted) and min(w.day for w in posted) <= day <= max(w.day for w in posted)
    if not covered and cadence_saturdays(day, day):
        windows.append(_window(day, time(0), time(6), OUTAGE_RISK, "release cadence"))
        windows.append(_window(day, time(6), time(18), NO_OUTAGE, "release cadence"))
    if day.weekday() == _THURSDAY:
        windows.append(_window(day, time(2), time(6), AUTOMATIC_UPDATES, "weekly"))
    if day.weekday() == _WEDNESDAY:
        windows.append(_window(day, time(3), time(5), WINDOWS_UPDATES, "weekly"))
    return windows


def maintenance_windows(
    now: datetime, posted: list[MaintenanceWindow] | None = None
) -> list[MaintenanceWindow]:
    """The maintenance windows active at `now`: posted or cadence, plus weekly ones."""
    local = _central(now)
    posted = list(posted or [])
    candidates = posted + _recurring_windows(local.date(), posted)
    return sorted((w for w in candidates if w.contains(local)), key=lambda w: (w.start, w.kind))


_NOTICES = {
    OUTAGE_RISK: "Scheduled maintenance is under way until {end} Central; "
    "service may be interrupted.",
    AUTOMATIC_UPDATES: "Automatic updates for hosted districts are under way until {end} "
    "Central; service may be briefly interrupted.",
    WINDOWS_UPDATES: "Windows security updates are under way on hosted servers until {end} "
    "Central; service may be briefly interrupted.",
    # Last: it interrupts nothing, so any window that may is the one to hear of. Still
    # said (PRODUCT.md: option 8 callers during a posted window hear about it), so a
    # caller knows the desk is working on the system and their report is news.
    NO_OUTAGE: "Scheduled maintenance is under way until {end} Central; it is not expected "
    "to interrupt service.",
}


def maintenance_notice(now: datetime, posted: list[MaintenanceWindow] | None = None) -> str | None:
    """A short speakable notice of the maintenance under way at `now` (any kind, the
    one that may interrupt service most when several are; with its end, Central
    time), else of an outage-risk window starting within 24 hours (the desk's
    policy), else None."""
    active = maintenance_windows(now, posted)
    for kind in _NOTICES:
        ends = [w.end for w in active if w.kind == kind]
        if ends:
            return _NOTICES[kind].format(end=_spoken_time(max(ends).astimezone(CENTRAL).time()))
    local, posted = _central(now), list(posted or [])
    days = (local.date(), local.date() + timedelta(days=1))
    soon = sorted((w for w in [*posted, *(x for d in days for x in _recurring_windows(d, posted))]
                   if w.kind == OUTAGE_RISK and local < w.start <= local + timedelta(hours=24)),
                  key=lambda w: w.start)
    if not soon:
        return None
    start, end = soon[0].start.astimezone(CENTRAL), soon[0].end.astimezone(CENTRAL)
    return (f"Scheduled maintenance begins {start.strftime('%A')} at "
            f"{_spoken_time(start.time())} Central and runs until {_spoken_time(end.time())}; "
            "service may be interrupted then.")


# --- the operators' posted windows ----------------------------------------

_FIELDS = {"date", "start", "end", "kind", "note"}


def _clock(value: object) -> time:
    """An "HH:MM" string as a time; "24:00" is not accepted (windows end the same day)."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{2}:\d{2}", value):
        raise ValueError(f"{value!r} is not HH:MM")
    return time.fromisoformat(value)


def _posted_window(entry: object, zone: ZoneInfo) -> MaintenanceWindow:
    """One entry of the file's "windows" list, or ValueError saying what is wrong."""
    if not isinstance(entry, dict):
        raise ValueError("not an object")
    missing = sorted(key for key in ("date", "start", "end", "kind") if key not in entry)
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    unknown = sorted(k for k in entry if k not in _FIELDS and not str(k).startswith("_"))
    if unknown:
        raise ValueError(f"unknown field {', '.join(unknown)}")
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise ValueError("note is not text")
    if not isinstance(entry["date"], str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry["date"]):
        raise ValueError(f"date {entry['date']!r} is not YYYY-MM-DD")
    day = date.fromisoformat(entry["date"])
    start, end = _clock(entry["start"]), _clock(entry["end"])
    if end <= start:
        raise ValueError(f"end {entry['end']} is not after start {entry['start']}")
    return MaintenanceWindow(
        datetime.combine(day, start, tzinfo=zone),
        datetime.combine(day, end, tzinfo=zone),
        entry["kind"],
        note,
    )


def load_posted_windows(
    path: Path = POSTED_WINDOWS_PATH,
) -> tuple[list[MaintenanceWindow], list[str]]:
    """The usable posted windows in `path`, and a problem line for each one that is not."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return [], [f"{path}: cannot read maintenance windows: {error}"]
    if not isinstance(document, dict) or not isinstance(document.get("windows"), list):
        return [], [f'{path}: expected an object with a "windows" list']
    try:
        zone = ZoneInfo(str(document.get("timezone", "America/Chicago")))
    except (ZoneInfoNotFoundError, ValueError) as error:
        return [], [f"{path}: unknown timezone {document.get('timezone')!r} ({error})"]

    windows: list[MaintenanceWindow] = []
    problems: list[str] = []
    for index, entry in enumerate(document["windows"]):
        label = f"windows[{index}]"
        if isinstance(entry, dict) and isinstance(entry.get("date"), str):
            label += f" {entry['date']}"
        try:
            window = _posted_window(entry, zone)
        except (ValueError, TypeError) as error:
            problems.append(f"{label}: {error}; not used")
            continue
        if window.start.weekday() != _SATURDAY:
            weekday = _WEEKDAYS[window.start.weekday()]
            problems.append(f"{label}: not a Saturday ({weekday}); not used")
            continue
        windows.append(window)
    return windows, problems
