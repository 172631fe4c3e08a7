"""What the line reads from years of cases and call logs stays cheap as they grow: each
query the worker, the webhooks and the console run on `cases` and `call_logs` reads
through an index, never every row (SQLite's plan; `bench/db_growth.py` measures the
same queries at a million call logs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from directory.call_logs import calls_answered_by, overall_answers, survey_history
from directory.case_numbers import allocate_case_number
from directory.db import make_session_factory
from routing.cases import case_for_call
from routing.stats import hourly, service_level

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def _statements(engine: Engine, read: Callable[[], object]) -> list[tuple[str, tuple]]:
    """The SELECTs `read` sends to the database, with their parameters."""
    sent: list[tuple[str, tuple]] = []

    def note(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, tuple(parameters or ())))

    event.listen(engine, "before_cursor_execute", note)
    try:
        read()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return sent


def _full_scans(engine: Engine, statements: list[tuple[str, tuple]]) -> Iterator[str]:
    """Each plan step that reads every row of `cases` or `call_logs`."""
    with engine.connect() as conn:
        for statement, parameters in statements:
            plan = [step[-1] for step in conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {statement}", parameters).all()]
            # A SCAN reads every row (through an index or not), except an index read in
            # the query's order that stops at its LIMIT; SEARCH is a lookup.
            stops_early = "LIMIT" in statement and not any("TEMP B-TREE" in d for d in plan)
            for detail in plan:
                if detail.startswith(("SCAN cases", "SCAN call_logs")) and not (
                        stops_early and "USING INDEX" in detail):
                    yield f"{detail}  <-  {statement.split()[:12]}"


def _opening_a_case(sessions: sessionmaker[Session]) -> None:
    with sessions() as db:
        allocate_case_number(db)
        db.rollback()


def _an_unknown_numbers_outage(sessions: sessionmaker[Session]) -> None:
    with sessions() as db:
        case_for_call(db, {"outage": "1", "caller": "+16125550142"}, NOW)
        db.rollback()


READS: dict[str, Callable[[sessionmaker[Session]], object]] = {
    "a new case's number (the worker, under the counter's lock)": _opening_a_case,
    "an unknown number's outage case (the worker)": _an_unknown_numbers_outage,
    "a contact's surveys (a webhook)": lambda s: survey_history(s, "5001",
                                                                NOW - timedelta(days=30)),
    "today's service level (the console)": lambda s: service_level(s, NOW),
    "today's calls by the hour (the console)": lambda s: hourly(s, NOW),
    "an advisor's calls today (the console)": lambda s: calls_answered_by(
        s, "A7", NOW - timedelta(hours=10), NOW),
    "the survey's answers of a week": lambda s: overall_answers(s, NOW - timedelta(days=7),
                                                                NOW),
}


@pytest.mark.parametrize("read", list(READS))
def test_what_the_line_reads_from_cases_and_call_logs_uses_an_index(engine, sessions, read):
    with engine.begin() as conn:  # a few rows, so the planner sees real tables
        conn.execute(text("INSERT INTO cases (number, status, priority, product, "
                          "needs_handover, outage, created_at) VALUES "
                          "('2024117', 'new', 'medium', 'campus', 0, 0, '2026-11-24 10:00:00')"))
    statements = _statements(engine, lambda: READS[read](sessions))
    assert statements, "the read sent no query"
    assert list(_full_scans(engine, statements)) == []
