"""The numbers of the cases the line opens: after the directory's highest, and never
the same number twice when workers open cases at the same moment (SQLite and
PostgreSQL, real threads on real connections)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from directory import DirectoryError
from directory.case_numbers import CaseNumberError
from directory.models import Case
from routing.cases import case_for_call

pytestmark = pytest.mark.databases

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
# A call that ends with a new case for Lakeview (option 2).
NEW_CASE_CALL = {"new_case": "1", "district": "D100", "caller": "+16125550101"}


@pytest.fixture
def lakeview(directory):
    directory.district()
    directory.advisor("A7", ["general"])
    directory.case("2024117", owner="A7")
    directory.load()


def _open_case(desk) -> str:
    """What the call-log job does for a new case: open it and commit."""
    with desk.session_factory() as db:
        case = case_for_call(db, NEW_CASE_CALL, NOW)
        assert case is not None
        db.commit()
        return case.number


def test_workers_opening_cases_at_once_never_share_a_number(desk, lakeview):
    workers, cases_each = 6, 5
    barrier = threading.Barrier(workers)
    opened: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        for _ in range(cases_each):
            try:
                opened.append(_open_case(desk))
            except BaseException as exc:  # noqa: BLE001  (reported below)
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []  # no collision, so no job would have needed a retry
    assert sorted(opened) == [str(2024118 + i) for i in range(workers * cases_each)]
    with desk.session_factory() as db:
        assert db.query(Case).count() == 1 + workers * cases_each


def test_a_new_case_is_numbered_after_the_highest_case_in_the_directory(desk, directory,
                                                                        lakeview):
    assert _open_case(desk) == "2024118"
    directory.case("9", owner="A7")  # a lower number changes nothing
    directory.case("31000000", owner="A7")  # an operator loaded a higher one since
    directory.load()
    assert _open_case(desk) == "31000001"
    assert _open_case(desk) == "31000002"


def test_an_empty_directory_numbers_from_2000001(desk, directory):
    directory.district()
    directory.load()
    assert [_open_case(desk), _open_case(desk)] == ["2000001", "2000002"]


def test_a_case_number_too_large_to_follow_is_refused_by_the_load(desk, directory, lakeview):
    directory.case("12345678901234567890", owner="A7")
    with pytest.raises(DirectoryError,
                       match='case number "12345678901234567890" is too large'):
        directory.load()
    with desk.session_factory() as db:
        assert db.get(Case, "12345678901234567890") is None
    assert _open_case(desk) == "2024118"  # numbering goes on after the highest


def test_the_largest_case_number_a_load_takes_still_leaves_one_to_follow(
        desk, directory, lakeview):
    directory.case("9223372036854775806", owner="A7")
    directory.load()
    assert _open_case(desk) == "9223372036854775807"


def test_a_case_number_too_large_to_follow_is_named(desk, lakeview):
    """A case written past the load's check (by hand, or by an older release)."""
    with desk.session_factory() as db:
        db.add(Case(number="12345678901234567890", district_id="D100", owner_id="A7",
                    status="open", priority="medium", product="campus"))
        db.commit()
    with pytest.raises(CaseNumberError, match="case 12345678901234567890 "):
        _open_case(desk)
