"""The desk's calendar: hours, holidays, next opening and maintenance windows."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st

from config.hours import (
    CENTRAL,
    POSTED_WINDOWS_PATH,
    MaintenanceWindow,
    cadence_saturdays,
    desk_holidays,
    holiday_name,
    hours_sentence,
    is_business_day,
    is_holiday,
    is_open,
    load_posted_windows,
    maintenance_notice,
    maintenance_windows,
    next_opening,
)

NEW_YORK = ZoneInfo("America/New_York")


def central(*args: int) -> datetime:
    """A Central Time datetime."""
    return datetime(*args, tzinfo=CENTRAL)


def utc(*args: int) -> datetime:
    """A UTC datetime."""
    return datetime(*args, tzinfo=UTC)


# --- business hours -------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # Tuesday 14 July 2026, CDT (UTC-5)
        (central(2026, 7, 14, 5, 59, 59), False),
        (central(2026, 7, 14, 6, 0), True),
        (central(2026, 7, 14, 17, 59, 59), True),
        (central(2026, 7, 14, 18, 0), False),
        (utc(2026, 7, 14, 10, 59), False),
        (utc(2026, 7, 14, 11, 0), True),
        (utc(2026, 7, 14, 22, 59, 59), True),
        (utc(2026, 7, 14, 23, 0), False),
        # Wednesday 14 January 2026, CST (UTC-6)
        (central(2026, 1, 14, 5, 59), False),
        (central(2026, 1, 14, 6, 0), True),
        (central(2026, 1, 14, 17, 59), True),
        (central(2026, 1, 14, 18, 0), False),
        (utc(2026, 1, 14, 11, 59), False),
        (utc(2026, 1, 14, 12, 0), True),
        (utc(2026, 1, 14, 23, 59), True),
        (utc(2026, 1, 15, 0, 0), False),
        # another zone: 07:00 Eastern is 06:00 Central
        (datetime(2026, 1, 14, 6, 59, tzinfo=NEW_YORK), False),
        (datetime(2026, 1, 14, 7, 0, tzinfo=NEW_YORK), True),
    ],
)
def test_opening_and_closing_edges(now: datetime, expected: bool) -> None:
    assert is_open(now) is expected


@pytest.mark.parametrize(
    "now",
    [
        central(2026, 7, 11, 10, 0),  # Saturday
        central(2026, 7, 12, 10, 0),  # Sunday
        central(2026, 1, 17, 12, 0),  # Saturday
        central(2026, 1, 18, 12, 0),  # Sunday
        utc(2026, 1, 17, 0, 30),  # Friday 18:30 Central, Saturday in UTC
    ],
)
def test_closed_at_weekends(now: datetime) -> None:
    assert is_open(now) is False


def test_friday_evening_utc_is_still_friday_in_chicago() -> None:
    # Friday 16 January 2026 at 23:30 UTC is 17:30 CST: open.
    assert is_open(utc(2026, 1, 16, 23, 30)) is True
    # Monday 19 Jan 2026 at 03:00 UTC is Sunday 21:00 CST, closed.
    assert is_open(utc(2026, 1, 19, 3, 0)) is False


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        is_open(datetime(2026, 7, 14, 10, 0))


def test_hours_sentence() -> None:
    assert hours_sentence() == "Monday to Friday, 6 AM to 6 PM Central Time, except holidays."


def test_functions_do_not_read_the_clock() -> None:
    # Frozen on a Sunday night: a Monday-morning `now` is still open, and vice versa.
    with time_machine.travel(central(2026, 7, 12, 23, 0), tick=False):
        assert is_open(central(2026, 7, 13, 10, 0)) is True
        assert is_open(central(2026, 7, 12, 10, 0)) is False
        assert next_opening(central(2026, 7, 13, 10, 0)) == central(2026, 7, 14, 6, 0)


# --- holidays -------------------------------------------------------------

HOLIDAYS_2026 = {
    date(2026, 1, 1): "New Year's Day",
    date(2026, 5, 25): "Memorial Day",
    date(2026, 6, 19): "Juneteenth",
    date(2026, 7, 3): "Independence Day",  # observed: 4 July is a Saturday
    date(2026, 9, 7): "Labor Day",
    date(2026, 11, 26): "Thanksgiving",
    date(2026, 11, 27): "the day after Thanksgiving",
    date(2026, 12, 24): "Christmas Eve",
    date(2026, 12, 25): "Christmas Day",
}

HOLIDAYS_2027 = {
    date(2027, 1, 1): "New Year's Day",
    date(2027, 5, 31): "Memorial Day",
    date(2027, 6, 18): "Juneteenth",  # observed: 19 June is a Saturday
    date(2027, 7, 5): "Independence Day",  # observed: 4 July is a Sunday
    date(2027, 9, 6): "Labor Day",
    date(2027, 11, 25): "Thanksgiving",
    date(2027, 11, 26): "the day after Thanksgiving",
    date(2027, 12, 23): "Christmas Eve",  # weekday before Christmas' observed Friday
    date(2027, 12, 24): "Christmas Day",  # observed: 25 December is a Saturday
    date(2027, 12, 31): "New Year's Day",  # 1 January 2028 is a Saturday
}


@pytest.mark.parametrize(("year", "expected"), [(2026, HOLIDAYS_2026), (2027, HOLIDAYS_2027)])
def test_desk_holidays(year: int, expected: dict[date, str]) -> None:
    assert desk_holidays(year) == expected


@pytest.mark.parametrize(
    ("day", "name"), sorted(HOLIDAYS_2026.items()) + sorted(HOLIDAYS_2027.items())
)
def test_closed_on_each_holiday_at_ten(day: date, name: str) -> None:
    assert holiday_name(day) == name
    assert is_holiday(day) is True
    assert is_business_day(day) is False
    assert is_open(datetime(day.year, day.month, day.day, 10, 0, tzinfo=CENTRAL)) is False


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 1, 2),  # Friday after New Year's Day
        date(2026, 7, 2),  # Thursday before the observed Independence Day
        date(2026, 7, 6),  # Monday after
        date(2026, 11, 25),  # Wednesday before Thanksgiving
        date(2026, 11, 30),  # Monday after Thanksgiving
        date(2026, 12, 23),  # Wednesday before Christmas Eve
        date(2026, 12, 28),  # Monday after Christmas
        date(2027, 6, 21),  # Monday after the observed Juneteenth
        date(2027, 12, 22),  # Wednesday before Christmas Eve (observed)
        date(2027, 12, 30),  # Thursday before New Year's Day (observed)
        date(2027, 1, 18),  # Martin Luther King Jr. Day: federal, not a desk holiday
        date(2026, 11, 11),  # Veterans Day: federal, not a desk holiday
    ],
)
def test_open_on_days_next_to_holidays(day: date) -> None:
    assert holiday_name(day) is None
    assert is_open(datetime(day.year, day.month, day.day, 10, 0, tzinfo=CENTRAL)) is True


def test_new_years_day_on_saturday_is_observed_on_the_previous_friday() -> None:
    assert holiday_name(date(2021, 12, 31)) == "New Year's Day"
    assert date(2021, 12, 31) in desk_holidays(2021)
    assert date(2022, 1, 1) not in desk_holidays(2022)  # its closure is in 2021
    assert is_open(central(2021, 12, 31, 10, 0)) is False


def test_new_years_day_on_sunday_is_observed_on_monday() -> None:
    assert holiday_name(date(2023, 1, 2)) == "New Year's Day"
    assert holiday_name(date(2023, 1, 1)) is None  # a Sunday: closed for the weekend


def test_weekend_holiday_dates_are_not_desk_holidays() -> None:
    assert holiday_name(date(2026, 7, 4)) is None
    assert holiday_name(date(2027, 12, 25)) is None
    assert is_open(central(2026, 7, 4, 10, 0)) is False


@pytest.mark.parametrize(
    ("year", "christmas_eve", "christmas"),
    [
        (2021, date(2021, 12, 23), date(2021, 12, 24)),  # Christmas on a Saturday
        (2022, date(2022, 12, 23), date(2022, 12, 26)),  # Christmas on a Sunday
        (2023, date(2023, 12, 22), date(2023, 12, 25)),  # Christmas on a Monday
        (2024, date(2024, 12, 24), date(2024, 12, 25)),  # Christmas on a Wednesday
        (2026, date(2026, 12, 24), date(2026, 12, 25)),  # Christmas on a Friday
    ],
)
def test_christmas_eve_is_the_weekday_before_christmas_closure(
    year: int, christmas_eve: date, christmas: date
) -> None:
    december = {
        name: day for day, name in desk_holidays(year).items() if day.month == 12 and day.day > 1
    }
    assert december.get("Christmas Eve") == christmas_eve
    assert december.get("Christmas Day") == christmas


def test_juneteenth_counts_from_2021() -> None:
    assert "Juneteenth" not in desk_holidays(2020).values()
    assert holiday_name(date(2021, 6, 18)) == "Juneteenth"  # 19 June 2021 was a Saturday


def test_desk_holidays_returns_a_copy() -> None:
    holidays_2026 = desk_holidays(2026)
    holidays_2026[date(2026, 3, 3)] = "Invented Day"
    assert holiday_name(date(2026, 3, 3)) is None


@pytest.mark.parametrize("year", range(2021, 2101))
def test_every_year_has_each_closure_once_on_weekdays(year: int) -> None:
    closures = desk_holidays(year)
    assert all(day.weekday() < 5 and day.year == year for day in closures)
    names = sorted(name for name in closures.values() if name != "New Year's Day")
    assert names == sorted(
        [
            "Memorial Day",
            "Juneteenth",
            "Independence Day",
            "Labor Day",
            "Thanksgiving",
            "the day after Thanksgiving",
            "Christmas Eve",
            "Christmas Day",
        ]
    )
    new_year = [day for day, name in closures.items() if name == "New Year's Day"]
    jan_1 = date(year, 1, 1)
    expected = {5: [], 6: [date(year, 1, 2)]}.get(jan_1.weekday(), [jan_1])
    if date(year + 1, 1, 1).weekday() == 5:
        expected = [*expected, date(year, 12, 31)]
    assert new_year == expected
    by_name = {name: day for day, name in closures.items()}
    eve, christmas = by_name["Christmas Eve"], by_name["Christmas Day"]
    assert date(year, 12, 22) <= eve < christmas
    assert all((eve + timedelta(days=n)).weekday() >= 5 for n in range(1, (christmas - eve).days))
    assert by_name["the day after Thanksgiving"] == by_name["Thanksgiving"] + timedelta(days=1)


# --- next opening ---------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (central(2026, 7, 14, 5, 59), central(2026, 7, 14, 6, 0)),  # before opening
        (central(2026, 7, 14, 6, 0), central(2026, 7, 14, 6, 0)),  # at opening
        (central(2026, 7, 14, 10, 0), central(2026, 7, 15, 6, 0)),  # open: the next one
        (central(2026, 7, 2, 18, 0), central(2026, 7, 6, 6, 0)),  # Independence Day weekend
        (central(2026, 11, 25, 18, 0), central(2026, 11, 30, 6, 0)),  # Thanksgiving
        (central(2026, 12, 23, 19, 0), central(2026, 12, 28, 6, 0)),  # Christmas 2026
        (central(2027, 12, 22, 17, 0), central(2027, 12, 27, 6, 0)),  # Christmas 2027
        (central(2027, 12, 30, 18, 0), central(2028, 1, 3, 6, 0)),  # New Year 2028
        (utc(2026, 1, 17, 0, 30), central(2026, 1, 19, 6, 0)),  # Friday night, given in UTC
    ],
)
def test_next_opening(now: datetime, expected: datetime) -> None:
    opening = next_opening(now)
    assert opening == expected
    assert opening.tzinfo is CENTRAL
    assert (opening.hour, opening.minute) == (6, 0)


def test_next_opening_across_spring_forward() -> None:
    # Saturday 7 March 2026 20:00 CST; clocks go forward on Sunday 8 March.
    opening = next_opening(central(2026, 3, 7, 20, 0))
    assert opening == utc(2026, 3, 9, 11, 0)  # Monday 06:00 CDT
    assert opening.utcoffset() == timedelta(hours=-5)
    # Elapsed time (in UTC: subtracting two Chicago times ignores the DST change).
    assert opening.astimezone(UTC) - central(2026, 3, 7, 20, 0).astimezone(UTC) == timedelta(
        hours=33
    )


def test_next_opening_across_fall_back() -> None:
    # Saturday 31 October 2026 20:00 CDT; clocks go back on Sunday 1 November.
    opening = next_opening(central(2026, 10, 31, 20, 0))
    assert opening == utc(2026, 11, 2, 12, 0)  # Monday 06:00 CST
    assert opening.astimezone(UTC) - central(2026, 10, 31, 20, 0).astimezone(UTC) == timedelta(
        hours=35
    )


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2026, 3, 9, 10, 59), False),  # Monday after spring forward: 05:59 CDT
        (utc(2026, 3, 9, 11, 0), True),  # 06:00 CDT
        (utc(2026, 3, 9, 22, 59), True),
        (utc(2026, 3, 9, 23, 0), False),  # 18:00 CDT
        (utc(2026, 11, 2, 11, 59), False),  # Monday after fall back: 05:59 CST
        (utc(2026, 11, 2, 12, 0), True),  # 06:00 CST
        (utc(2026, 3, 8, 15, 0), False),  # the Sunday of the change itself
        (utc(2026, 11, 1, 15, 0), False),
    ],
)
def test_dst_transition_days(now: datetime, expected: bool) -> None:
    assert is_open(now) is expected


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(2021, 1, 1), max_value=datetime(2035, 12, 31)))
def test_next_opening_is_the_first_open_moment(naive: datetime) -> None:
    now = naive.replace(tzinfo=UTC)
    opening = next_opening(now)
    assert opening >= now
    assert is_open(opening)
    assert opening - now < timedelta(days=6)
    if not is_open(now):
        # The desk opens for 12 hours at a time: hourly samples cannot miss an opening.
        probe = now
        while probe < opening:
            assert not is_open(probe), probe
            probe += timedelta(hours=1)


# --- maintenance: cadence -------------------------------------------------

CADENCE_2024 = [
    date(2024, 1, 6), date(2024, 1, 20), date(2024, 2, 3), date(2024, 2, 17),
    date(2024, 3, 2), date(2024, 3, 16), date(2024, 3, 30), date(2024, 4, 13),
    date(2024, 4, 27), date(2024, 5, 11), date(2024, 5, 25), date(2024, 6, 8),
    date(2024, 6, 22), date(2024, 7, 6), date(2024, 7, 20), date(2024, 8, 3),
    date(2024, 8, 17), date(2024, 8, 31), date(2024, 9, 14), date(2024, 9, 28),
    date(2024, 10, 12), date(2024, 10, 26), date(2024, 11, 9), date(2024, 11, 23),
    date(2024, 12, 7), date(2024, 12, 21),
]  # fmt: skip


def test_cadence_2024() -> None:
    saturdays = cadence_saturdays(date(2024, 1, 1), date(2024, 12, 31))
    assert saturdays == CADENCE_2024
    assert date(2024, 2, 3) in saturdays and date(2024, 2, 5) not in saturdays
    assert date(2024, 4, 13) in saturdays and date(2024, 4, 15) not in saturdays
    assert all(day.weekday() == 5 for day in saturdays)


def test_cadence_runs_both_ways_and_bounds_are_inclusive() -> None:
    assert cadence_saturdays(date(2023, 12, 1), date(2024, 1, 6)) == [
        date(2023, 12, 9),
        date(2023, 12, 23),
        date(2024, 1, 6),
    ]
    assert cadence_saturdays(date(2026, 12, 5), date(2026, 12, 5)) == [date(2026, 12, 5)]
    assert cadence_saturdays(date(2026, 12, 12), date(2026, 12, 12)) == []
    assert cadence_saturdays(date(2026, 12, 31), date(2026, 12, 1)) == []


def test_cadence_with_another_anchor() -> None:
    assert cadence_saturdays(date(2024, 1, 1), date(2024, 1, 31), anchor=date(2024, 1, 13)) == [
        date(2024, 1, 13),
        date(2024, 1, 27),
    ]
    with pytest.raises(ValueError, match="not a Saturday"):
        cadence_saturdays(date(2024, 1, 1), date(2024, 1, 31), anchor=date(2024, 1, 8))


# --- maintenance: posted windows file -------------------------------------


def write(tmp_path: Path, document: object) -> Path:
    """A posted-windows file holding `document` as JSON."""
    path = tmp_path / "maintenance.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def entry(day: str, start: str = "00:00", end: str = "06:00", kind: str = "outage-risk") -> dict:
    """One window of the posted file."""
    return {"date": day, "start": start, "end": end, "kind": kind, "note": "release"}


def test_shipped_file_is_clean_and_on_the_cadence() -> None:
    windows, problems = load_posted_windows(POSTED_WINDOWS_PATH)
    assert problems == []
    days = sorted({window.day for window in windows})
    assert days[0] <= date(2026, 12, 5) and days[-1] >= date(2027, 3, 27)
    assert days == cadence_saturdays(days[0], days[-1])
    outage = [w for w in windows if w.kind == "outage-risk"]
    assert len(outage) == len(days)
    assert all((w.start.hour, w.end.hour, w.start.tzinfo) == (0, 6, CENTRAL) for w in outage)


def test_missing_file_means_no_posted_windows(tmp_path: Path) -> None:
    assert load_posted_windows(tmp_path / "absent.json") == ([], [])


def test_non_saturday_is_reported_and_not_used(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "timezone": "America/Chicago",
            "windows": [
                entry("2024-01-06"),
                entry("2024-01-20"),
                entry("2024-02-03", "06:00", "18:00", "no-outage"),
                entry("2024-02-05"),
                entry("2024-04-15"),
            ],
        },
    )
    windows, problems = load_posted_windows(path)
    assert problems == [
        "windows[3] 2024-02-05: not a Saturday (Monday); not used",
        "windows[4] 2024-04-15: not a Saturday (Monday); not used",
    ]
    assert [(w.day, w.kind) for w in windows] == [
        (date(2024, 1, 6), "outage-risk"),
        (date(2024, 1, 20), "outage-risk"),
        (date(2024, 2, 3), "no-outage"),
    ]
    assert windows[0].start == central(2024, 1, 6, 0, 0)
    assert windows[0].end == central(2024, 1, 6, 6, 0)
    assert windows[0].note == "release"
    # Monday 5 February 2024 at 01:00 is not a maintenance window.
    assert maintenance_windows(central(2024, 2, 5, 1, 0), windows) == []


def test_malformed_entries_are_problems_not_exceptions(tmp_path: Path) -> None:
    good = entry("2026-12-05")
    path = write(
        tmp_path,
        {
            "windows": [
                "2026-12-05",
                {"date": "2026-12-05", "start": "00:00", "end": "06:00"},
                entry("2026-12-05", "6am", "12:00"),
                entry("2026-12-05", "06:00", "05:00"),
                entry("2026-12-05", kind="outage"),
                entry("05/12/2026"),
                entry("2026-02-30"),
                {**good, "nots": "typo"},
                {**good, "note": 7},
                {"date": 20261205, "start": "00:00", "end": "06:00", "kind": "outage-risk"},
                {**good, "_comment": "fine"},
            ]
        },
    )
    windows, problems = load_posted_windows(path)
    assert [w.start for w in windows] == [central(2026, 12, 5, 0, 0)]
    assert [problem.split(":")[0] for problem in problems] == [
        "windows[0]",
        "windows[1] 2026-12-05",
        "windows[2] 2026-12-05",
        "windows[3] 2026-12-05",
        "windows[4] 2026-12-05",
        "windows[5] 05/12/2026",
        "windows[6] 2026-02-30",
        "windows[7] 2026-12-05",
        "windows[8] 2026-12-05",
        "windows[9]",
    ]
    assert all(problem.endswith("; not used") for problem in problems)
    assert "missing kind" in problems[1]
    assert "not after start" in problems[3]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"windows": {}}',
        '{"timezone": "Mars/Olympus", "windows": []}',
        '{"timezone": "", "windows": []}',
    ],
)
def test_broken_file_is_one_problem(tmp_path: Path, content: str) -> None:
    path = tmp_path / "maintenance.json"
    path.write_text(content, encoding="utf-8")
    windows, problems = load_posted_windows(path)
    assert windows == []
    assert len(problems) == 1 and problems[0].startswith(str(path))


def test_file_timezone_is_used(tmp_path: Path) -> None:
    path = write(tmp_path, {"timezone": "UTC", "windows": [entry("2026-12-05", "06:00", "12:00")]})
    windows, problems = load_posted_windows(path)
    assert problems == []
    assert windows[0].start == central(2026, 12, 5, 0, 0)


def test_window_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        MaintenanceWindow(datetime(2026, 12, 5), datetime(2026, 12, 5, 6), "outage-risk", "")
    with pytest.raises(ValueError):
        MaintenanceWindow(central(2026, 12, 5, 6), central(2026, 12, 5, 6), "outage-risk", "")
    with pytest.raises(ValueError):
        MaintenanceWindow(central(2026, 12, 5, 0), central(2026, 12, 5, 6), "outage", "")


# --- maintenance: windows and notices -------------------------------------

OUTAGE_NOTICE = "Scheduled maintenance is under way until 6 AM Central; service may be interrupted."
# PRODUCT.md: callers to option 8 during a posted window hear about it, the no-outage
# kind included (06:00-18:00 on the maintenance Saturdays).
NO_OUTAGE_NOTICE = ("Scheduled maintenance is under way until 6 PM Central; it is not expected "
                    "to interrupt service.")


@pytest.fixture
def posted() -> list[MaintenanceWindow]:
    """The shipped posted windows (Saturdays from 5 December 2026)."""
    windows, problems = load_posted_windows(POSTED_WINDOWS_PATH)
    assert problems == []
    return windows


UPCOMING_NOTICE = ("Scheduled maintenance begins Saturday at midnight Central and runs until "
                   "6 AM; service may be interrupted then.")


def test_option_8_hears_of_a_window_starting_within_24_hours(
    posted: list[MaintenanceWindow],
) -> None:
    # Twelve hours before the posted Saturday 00:00-06:00 window; not 25 hours before.
    assert maintenance_notice(central(2026, 12, 4, 12, 0), posted) == UPCOMING_NOTICE
    assert maintenance_notice(central(2026, 12, 3, 23, 0), posted) is None


@pytest.mark.parametrize(
    ("now", "notice", "kinds"),
    [
        (central(2026, 12, 4, 23, 59), UPCOMING_NOTICE, []),  # Friday night: it is close
        (central(2026, 12, 5, 0, 0), OUTAGE_NOTICE, ["outage-risk"]),
        (central(2026, 12, 5, 5, 59), OUTAGE_NOTICE, ["outage-risk"]),
        (central(2026, 12, 5, 6, 0), NO_OUTAGE_NOTICE, ["no-outage"]),
        (central(2026, 12, 5, 17, 59), NO_OUTAGE_NOTICE, ["no-outage"]),
        (central(2026, 12, 5, 18, 0), None, []),
        (utc(2026, 12, 5, 6, 30), OUTAGE_NOTICE, ["outage-risk"]),  # 00:30 CST
        (utc(2026, 12, 5, 12, 0), NO_OUTAGE_NOTICE, ["no-outage"]),  # 06:00 CST
        (central(2026, 12, 12, 1, 0), None, []),  # the Saturday between two cadence ones
    ],
)
def test_notice_on_a_posted_saturday(
    posted: list[MaintenanceWindow], now: datetime, notice: str | None, kinds: list[str]
) -> None:
    assert maintenance_notice(now, posted) == notice
    assert [w.kind for w in maintenance_windows(now, posted)] == kinds


def test_posted_windows_are_authoritative_within_their_span() -> None:
    moved = [
        MaintenanceWindow(central(2026, 12, 5, 0), central(2026, 12, 5, 6), "outage-risk", ""),
        # 19 December is skipped; 26 December (off-cadence) is posted, longer.
        MaintenanceWindow(central(2026, 12, 26, 0), central(2026, 12, 26, 8), "outage-risk", ""),
        MaintenanceWindow(central(2027, 1, 2, 0), central(2027, 1, 2, 6), "outage-risk", ""),
    ]
    assert maintenance_notice(central(2026, 12, 19, 1, 0), moved) is None
    assert maintenance_windows(central(2026, 12, 19, 10, 0), moved) == []
    assert maintenance_notice(central(2026, 12, 26, 7, 0), moved) == (
        "Scheduled maintenance is under way until 8 AM Central; service may be interrupted."
    )
    # Without posted windows, 19 December is a cadence Saturday.
    assert maintenance_notice(central(2026, 12, 19, 1, 0), None) == OUTAGE_NOTICE
    assert maintenance_notice(central(2026, 12, 19, 1, 0), []) == OUTAGE_NOTICE
    # After the posted span the cadence resumes (16 January 2027).
    assert maintenance_notice(central(2027, 1, 16, 1, 0), moved) == OUTAGE_NOTICE
    assert [w.note for w in maintenance_windows(central(2027, 1, 16, 1, 0), moved)] == [
        "release cadence"
    ]


def test_cadence_outside_the_shipped_span(posted: list[MaintenanceWindow]) -> None:
    assert maintenance_notice(central(2024, 2, 3, 3, 0), posted) == OUTAGE_NOTICE
    assert maintenance_notice(central(2024, 2, 5, 3, 0), posted) is None  # Monday
    assert maintenance_notice(central(2027, 4, 10, 3, 0), posted) == OUTAGE_NOTICE
    assert maintenance_notice(central(2027, 4, 17, 3, 0), posted) is None


@pytest.mark.parametrize(
    ("now", "notice"),
    [
        (central(2026, 12, 10, 1, 59), None),  # Thursday
        (
            central(2026, 12, 10, 2, 0),
            "Automatic updates for hosted districts are under way until 6 AM Central; "
            "service may be briefly interrupted.",
        ),
        (
            central(2026, 12, 10, 5, 59),
            "Automatic updates for hosted districts are under way until 6 AM Central; "
            "service may be briefly interrupted.",
        ),
        (central(2026, 12, 10, 6, 0), None),
        (central(2026, 12, 9, 2, 59), None),  # Wednesday
        (
            central(2026, 12, 9, 3, 0),
            "Windows security updates are under way on hosted servers until 5 AM Central; "
            "service may be briefly interrupted.",
        ),
        (central(2026, 12, 9, 5, 0), None),
        (central(2026, 12, 8, 3, 0), None),  # Tuesday
        (utc(2026, 7, 16, 3, 0), None),  # Thursday 03:00 UTC is Wednesday 22:00 CDT...
        (utc(2026, 7, 16, 8, 0), "Automatic updates for hosted districts are under way until "
         "6 AM Central; service may be briefly interrupted."),  # ...08:00 UTC is 03:00 CDT
    ],
)  # fmt: skip
def test_weekly_windows(posted: list[MaintenanceWindow], now: datetime, notice: str | None) -> None:
    assert maintenance_notice(now, posted) == notice
