"""Two complete instances of the line on one database and one Redis: two
`caseline serve` (each its own gunicorn master, port and instance folder) and two
`caseline worker`, as two hosts behind a load balancer. A hundred callers at
once, half through each: no advisor is ever on two calls, every call has exactly
one call log, and both instances served calls.

Run on both of the suite's databases (the `databases` mark): SQLite, and
PostgreSQL, the production database two hosts share.
"""

from __future__ import annotations

import threading

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.live import new_line, wait_for
from tests.test_drills import call_logs
from tests.test_failover import Advisors
from twilio_side import CallResult

CALLERS = 100
ADVISORS = [f"A{n}" for n in range(20, 40)]

pytestmark = pytest.mark.slow


def calls_counted(url: str) -> float:
    """Calls the instance at `url` saw end (its own /metrics, all its web processes)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "caseline_calls" for sample in family.samples
               if sample.name == "caseline_calls_total")


@pytest.mark.databases
def test_two_instances_share_the_desk_without_double_booking(
        settings, emulator, directory, desk, tmp_path, database_url):
    directory.district()
    for n in range(CALLERS):
        directory.contact(id=str(7000 + n), phone=f"+1612555{2000 + n:04d}",
                          name=f"Contact {n}")
    for advisor in ADVISORS:
        directory.advisor(advisor, ["general"])
    for n in range(CALLERS):
        directory.case(str(4000000 + n), owner=ADVISORS[n % len(ADVISORS)])
    directory.load()

    line = new_line(settings, emulator, tmp_path)
    advisors = Advisors()
    results: dict[int, CallResult] = {}
    try:
        first = line.start_web()
        port = free_port()
        env = {**line.env, "PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
               "CASELINE_INSTANCE_PATH": str(tmp_path / "instance-2")}
        second = line.serve(port, env)
        urls = [line.url, f"http://127.0.0.1:{port}"]
        line.start_worker()
        line.start_worker()
        for advisor in ADVISORS:
            line.set_status(advisor, "available")

        start = threading.Barrier(CALLERS)

        def place(n: int) -> None:
            # Two in three call about their case (its owner first), one opens a new case.
            keys = f"1 {4000000 + n}#" if n % 3 else "2"
            caller = line.caller(f"+1612555{2000 + n:04d}", keys, url=urls[n % 2],
                                 max_wait_seconds=60)
            caller.on_event = advisors.watch(caller.call_sid, talk=0.2)
            start.wait()
            results[n] = caller.run()

        threads = [threading.Thread(target=place, args=(n,)) for n in range(CALLERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

        assert len(results) == CALLERS
        assert advisors.double_booked == []
        for n, result in results.items():
            assert result.error is None, (n, result.summary())
            assert result.outcome == "advisor", (n, result.summary())
        # The claims really raced: every advisor was busy while callers kept coming.
        assert sum(r.queued for r in results.values()) >= len(ADVISORS)
        # Both instances served calls (each counts the calls that ended on it).
        counted = [calls_counted(url) for url in urls]
        assert all(c > 0 for c in counted) and sum(counted) == CALLERS, counted

        sids = [r.call_sid for r in results.values()]
        wait_for("every call log", lambda: len(call_logs(desk, sids)) == CALLERS, timeout=60)
        assert call_logs(desk, sids) == dict.fromkeys(sids, 1)
        states = {a["id"]: a["status"] for a in line.api("GET", "/advisors").json()}
        assert set(states.values()) == {"available"}
        assert first.alive() and second.alive()
    except AssertionError:
        print(line.output())
        raise
    finally:
        line.stop()
