"""What the line's database reads cost once a desk has years of cases and call logs,
with the indexes of migration 0005 and without them, side by side on one database.

    .venv/bin/python bench/db_growth.py                    # 200,000 cases, 1,000,000 logs
    .venv/bin/python bench/db_growth.py --cases 20000 --calls 100000

A SQLite file at head is filled (three years of a busy desk: 500 districts, 5,000
contacts, 40 advisors, 20,000 calling numbers, a thousand calls a day), each read is
timed (median of `--reps`, wall clock in milliseconds, in this process), then the
database is taken back to migration 0004 (the indexes dropped) and timed again, then
forward again.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from directory.call_logs import calls_answered_by, overall_answers, survey_history  # noqa: E402
from directory.case_numbers import allocate_case_number  # noqa: E402
from directory.db import (  # noqa: E402
    alembic_config,
    ensure_schema,
    make_engine,
    make_session_factory,
)
from routing.cases import case_for_call  # noqa: E402
from routing.stats import hourly, service_level  # noqa: E402

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
DAYS = 3 * 365


def fill(engine, cases: int, calls: int) -> None:  # type: ignore[no-untyped-def]
    """`cases` cases and `calls` call logs spread over the last three years."""
    rng = random.Random(1)
    start = NOW - timedelta(days=DAYS)

    def moment(i: int, n: int) -> str:
        return (start + timedelta(seconds=DAYS * 86400 * i / n)).strftime("%Y-%m-%d %H:%M:%S")

    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO districts (id, name, hosted) VALUES (?, ?, 1)",
                             [(f"D{d}", f"District {d}") for d in range(500)])
        # One case in a hundred is an unknown number's outage (no district).
        conn.exec_driver_sql(
            "INSERT INTO cases (number, district_id, status, priority, product, "
            "needs_handover, outage, created_at) VALUES (?, ?, ?, 'medium', 'campus', 0, ?, ?)",
            [(str(2_000_001 + i), None if i % 100 == 0 else f"D{rng.randrange(500)}",
              rng.choice(("new", "open", "resolved", "closed")),
              int(i % 100 == 0 or rng.random() < 0.1), moment(i, cases))
             for i in range(cases)])
        conn.exec_driver_sql(
            "INSERT INTO call_logs (call_sid, case_number, caller, contact_id, district_id, "
            "menu_path, outage, advisors_tried, answered_by, queue_wait_seconds, status, "
            "started_at, team, details) VALUES (?, ?, ?, ?, ?, '1', 0, '[]', ?, 3.0, ?, ?, "
            "'general', '{}')",
            [(f"CA{i:032x}", str(2_000_001 + rng.randrange(cases)),
              f"+1612555{rng.randrange(20000):04d}", str(5001 + rng.randrange(5000)),
              f"D{rng.randrange(500)}", f"A{rng.randrange(40)}",
              rng.choice(("answered", "answered", "abandoned", "voicemail")),
              moment(i, calls)) for i in range(calls)])


def reads(sessions: sessionmaker[Session]) -> dict[str, Callable[[], object]]:
    """The reads that grow with the tables, by who runs them."""

    def new_case_number() -> None:
        with sessions() as db:
            allocate_case_number(db)
            db.rollback()

    def outage(call: dict[str, str]) -> Callable[[], None]:
        def read() -> None:
            with sessions() as db:
                case_for_call(db, {"outage": "1", **call}, NOW)
                db.rollback()
        return read

    return {
        "a new case's number (worker, under the write lock)": new_case_number,
        "a district's outage case (worker)": outage({"district": "D7",
                                                     "caller": "+16125550107"}),
        "an unknown number's outage case (worker)": outage({"caller": "+16125550142"}),
        "a contact's surveys (webhook)": lambda: survey_history(
            sessions, "5042", NOW - timedelta(days=30)),
        "today's service level (console)": lambda: service_level(sessions, NOW),
        "today's calls by the hour (console)": lambda: hourly(sessions, NOW),
        "an advisor's calls today (console)": lambda: calls_answered_by(
            sessions, "A7", NOW - timedelta(hours=10), NOW),
        "the survey's answers of a week (console)": lambda: overall_answers(
            sessions, NOW - timedelta(days=7), NOW),
    }


def timed(read: Callable[[], object], reps: int) -> float:
    """The median wall time of `read`, in milliseconds."""
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        read()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200_000)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="caseline-db-growth-")) / "caseline.db"
    engine = make_engine(f"sqlite:///{path}")
    ensure_schema(engine)
    started = time.perf_counter()
    fill(engine, args.cases, args.calls)
    print(f"{args.cases:,} cases, {args.calls:,} call logs written in "
          f"{time.perf_counter() - started:.0f} s ({path})", flush=True)
    sessions = make_session_factory(engine)
    figures: dict[str, dict[str, float]] = {}
    for side, revision in (("with", "head"), ("without", "0004"), ("with, again", "head")):
        with engine.begin() as conn:
            started = time.perf_counter()
            if revision == "head":
                command.upgrade(alembic_config(conn), "head")
            else:
                command.downgrade(alembic_config(conn), revision)
            print(f"to {revision}: {time.perf_counter() - started:.1f} s", flush=True)
        for name, read in reads(sessions).items():
            figures.setdefault(name, {})[side] = timed(read, args.reps)
    print("\n| read | with the indexes, ms | without, ms | with, again, ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, sides in figures.items():
        print(f"| {name} | {sides['with']:.2f} | {sides['without']:.2f} | "
              f"{sides['with, again']:.2f} |")


if __name__ == "__main__":
    main()
