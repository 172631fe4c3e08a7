"""The line survives the real world: every kind of call against real `caseline
serve` and `caseline worker` processes, a restart of both, every kind of call
again; a Redis flush under a running service; a start on a database written
by the previous release.

Calls are placed the way Twilio places them (signed HTTP webhooks, TwiML
walked, REST redirects through the emulator); outcomes are what callers,
advisors and operators notice: who rang, who answered, the call logs on the
cases (one per call, never two).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bench.procs import children
from directory.models import CallLog, Case
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, free_port
from tests.live import Line, new_line, wait_for
from tests.test_race import PhoneLedger
from twilio_side import Caller, CallResult, HttpTransport

CHICAGO = ZoneInfo("America/Chicago")
# Tuesday 24 November 2026, 7:30 PM: the desk is closed.
EVENING = datetime(2026, 11, 24, 19, 30, tzinfo=CHICAGO)

PAT = "+16125550101"  # Pat Lee, authorized contact 5001 of Lakeview (hosted), PIN 2468
STRANGER = "+19525550177"  # a number nobody knows: an outage on an exception basis
COLLEAGUE = "+19525550188"  # Pat calling from another phone: contact ID and PIN
CASE = "2024117"  # Lakeview's case, owned by Jordan Smith (A7)

PHONES = {
    "A7": "+16515550199",  # general, hosting: the case owner
    "A2": "+16515550102",  # general
    "A6": "+16515550106",  # hosting
    "A1": "+16515550191",  # food-service
    "A5": "+16515550195",  # fees: the callback
    "A3": "+16515550193",  # fram: a caller waits, then is connected
    "A4": "+16515550194",  # finance: never available (the caller abandons)
}
TEAMS = {"A7": ["general", "hosting"], "A2": ["general"], "A6": ["hosting"],
         "A1": ["food-service"], "A5": ["fees"], "A3": ["fram"], "A4": ["finance"]}
ON_DUTY = ("A7", "A2", "A6", "A1")
ATTESTED = {"StirVerstat": "TN-Validation-Passed-A"}

pytestmark = pytest.mark.slow


@pytest.fixture
def lakeview(directory):
    """One hosted district, its contact, seven advisors, the case."""
    directory.district("D100", "Lakeview Public Schools", hosted=True)
    directory.contact("5001", PAT, "D100", "Pat Lee", "2468", last_active="2026-10-01")
    for advisor_id, phone in PHONES.items():
        directory.advisor(advisor_id, TEAMS[advisor_id], phone=phone)
    directory.case(CASE, "D100", owner="A7")
    directory.load()


@pytest.fixture
def line(settings, emulator, tmp_path, r):
    """A deployment of caseline that the test starts, stops and restarts."""
    line = new_line(settings, emulator, tmp_path)
    yield line
    line.stop()


def logs_by_sid(desk) -> dict[str, dict]:
    """Every call log, by CallSid, with its case's facts (straight from the database)."""
    with desk.session_factory() as db:
        rows = db.execute(select(CallLog, Case).outerjoin(Case)).all()
        logs: dict[str, dict] = {}
        for log, case in rows:
            entry = log.to_dict()
            entry["case"] = None if case is None else {
                "number": case.number, "district": case.district_id, "outage": case.outage,
                "needs_handover": case.needs_handover, "status": case.status}
            assert log.call_sid not in logs, f"two call logs for {log.call_sid}"
            logs[log.call_sid] = entry
        return logs


def wait_for_logs(line: Line, desk, sids: list[str], timeout: float = 20) -> dict[str, dict]:
    """The call logs of `sids`, once the worker has written them all."""
    def all_written() -> dict[str, dict] | None:
        logs = logs_by_sid(desk)
        return logs if all(sid in logs for sid in sids) else None

    try:
        return wait_for("the worker to log every call", all_written, timeout=timeout)
    except AssertionError:
        missing = [sid for sid in sids if sid not in logs_by_sid(desk)]
        raise AssertionError(f"no call log for {missing}\n{line.output()}") from None


def waiting_in(line: Line, team: str, sid: str) -> bool:
    """Whether GET /api/queues shows the caller waiting in the team's queue."""
    queues = line.api("GET", "/queues").json()
    return any(entry["call_sid"] == sid for entry in queues.get(team, []))


def place_every_kind_of_call(line: Line, night_url: str) -> dict[str, CallResult]:
    """Every kind of call the contract has, one each; the results by kind."""
    for advisor_id in ON_DUTY:
        line.set_status(advisor_id, "available")
    calls: dict[str, CallResult] = {
        "case": line.call(PAT, f"1 {CASE}#", extra_params=ATTESTED),
        "new-case": line.call(PAT, "2", extra_params=ATTESTED),
        "add-on": line.call(PAT, "6 1", extra_params=ATTESTED),
        "outage": line.call(PAT, "8", extra_params=ATTESTED),
        "outage-unknown": line.call(STRANGER, "8"),
        "verified-by-pin": line.call(COLLEAGUE, f"1 5001# 2468# {CASE}#"),
        "after-hours": line.call(PAT, f"1 {CASE}#", extra_params=ATTESTED, url=night_url),
    }
    calls["callback"] = _callback(line)
    calls["queued-then-connected"] = _queued_then_connected(line)
    calls["abandoned"] = line.call(PAT, "6 5", extra_params=ATTESTED, max_wait_seconds=0.5)
    return calls


def _callback(line: Line) -> CallResult:
    """Pat waits for fees, asks for a callback and hangs up; A5 frees up and calls back."""
    caller = line.caller(PAT, "6 2 wait:1", extra_params=ATTESTED)
    result = caller.run()
    assert result.queued and result.outcome != "advisor", result.summary()
    assert waiting_in(line, "fees", caller.call_sid)  # the caller kept their place
    line.set_status("A5", "available")
    leg = line.callback_leg(caller.call_sid)
    assert leg.to == PHONES["A5"]  # the advisor's phone rings first
    advisor_leg = Caller(
        HttpTransport(line.url, auth_token=AUTH_TOKEN), "+18005550100", PHONES["A5"],
        start_url=leg.url, direction="outbound-api", call_sid=leg.sid, keys=["1"],
        advisor_policy={PAT: "answer"}, account_sid=ACCOUNT_SID,
        status_path=leg.status_callback, talk_seconds=90).run()
    assert advisor_leg.dialed == [PAT] and advisor_leg.outcome == "advisor", \
        advisor_leg.summary()
    line.set_status("A5", "offline")
    return result


def _queued_then_connected(line: Line) -> CallResult:
    """Pat waits for FRAM; A3 signs in and the waiting call is redirected to them."""
    caller = line.caller(PAT, "6 3", extra_params=ATTESTED, max_wait_seconds=15)
    results: list[CallResult] = []
    thread = threading.Thread(target=lambda: results.append(caller.run()))
    thread.start()
    try:
        wait_for("the caller to wait for FRAM", lambda: waiting_in(line, "fram", caller.call_sid))
        line.set_status("A3", "available")
    finally:
        thread.join(timeout=30)
    line.set_status("A3", "offline")
    [result] = results
    return result


def check_outcomes(calls: dict[str, CallResult], logs: dict[str, dict]) -> None:
    """What each caller noticed, and what their call left on its case."""
    for kind, result in calls.items():
        assert result.error is None, (kind, result.summary())
    log = {kind: logs[result.call_sid] for kind, result in calls.items()}

    assert calls["case"].answered_by == PHONES["A7"]  # the owner
    assert log["case"]["case_number"] == CASE and log["case"]["answered_by"] == "A7"

    assert calls["new-case"].answered_by in (PHONES["A7"], PHONES["A2"])
    new_case = log["new-case"]["case"]
    assert new_case["number"] != CASE and new_case["district"] == "D100"
    assert new_case["status"] == "new"

    assert calls["add-on"].answered_by == PHONES["A1"]
    assert log["add-on"]["product"] == "food-service"

    assert calls["outage"].answered_by in (PHONES["A7"], PHONES["A6"])
    outage = log["outage"]
    assert outage["case"]["outage"] and outage["case"]["district"] == "D100"
    assert outage["priority"] == "critical"
    assert not outage["case"]["needs_handover"]

    assert calls["outage-unknown"].answered_by in (PHONES["A7"], PHONES["A6"])
    unknown = log["outage-unknown"]
    assert unknown["case"]["outage"] and unknown["case"]["district"] is None
    assert unknown["case"]["needs_handover"]  # for an authorized contact to take over
    assert unknown["caller"] == STRANGER

    assert calls["verified-by-pin"].answered_by == PHONES["A7"]
    pin = log["verified-by-pin"]
    assert pin["case_number"] == CASE and pin["contact"] == "5001"
    assert pin["details"]["verified_by_pin"]

    assert calls["after-hours"].outcome == "voicemail"
    assert calls["after-hours"].dialed == []
    voicemail = log["after-hours"]
    assert voicemail["case_number"] == CASE and voicemail["status"] == "voicemail"
    assert voicemail["recording_url"] == calls["after-hours"].recording_url

    callback = log["callback"]
    assert callback["answered_by"] == "A5" and callback["status"] == "answered"
    assert callback["talk_seconds"] == 90

    assert calls["queued-then-connected"].queued
    assert calls["queued-then-connected"].answered_by == PHONES["A3"]
    connected = log["queued-then-connected"]
    assert connected["answered_by"] == "A3" and connected["queue_wait_seconds"] > 0

    assert calls["abandoned"].queued and calls["abandoned"].outcome == "queue"
    assert calls["abandoned"].dialed == []
    assert log["abandoned"]["status"] == "abandoned"


def check_one_log_per_call(line: Line, logs: dict[str, dict], sids: list[str]) -> None:
    """Exactly one call log per call, and the case's API lists it once."""
    assert sorted(logs) == sorted(sids)
    for sid in sids:
        number = logs[sid]["case_number"]
        assert number, f"call {sid} was logged on no case"
        listed = Counter(entry["call_sid"] for entry in line.api("GET", f"/cases/{number}/calls")
                         .json())
        assert listed[sid] == 1, (sid, number, listed)


def test_every_call_before_and_after_a_restart_of_web_and_worker(line, lakeview, desk):
    # A second web service on the same Redis and database, on an evening clock.
    night_port = free_port()
    night_env = {**line.env, "PUBLIC_BASE_URL": f"http://127.0.0.1:{night_port}"}
    night_url = night_env["PUBLIC_BASE_URL"]

    line.start_web()
    line.start_worker()
    night = line.serve(night_port, night_env, at=EVENING, workers=1)
    first = place_every_kind_of_call(line, night_url)
    first_logs = wait_for_logs(line, desk, [c.call_sid for c in first.values()])
    check_outcomes(first, first_logs)

    # Both processes stop (SIGTERM, as a process manager does) and start again
    # on the same Redis and database, their clock going on from where it was.
    # The directory cache now holds an unknown caller's outage case with no
    # district: rebuilding it must not stop the start.
    stopped = [line.web, line.worker, night]
    for process in stopped:
        process.stop()
    assert not any(process.alive() for process in stopped)
    line.start_web(at=datetime.now(UTC))
    line.start_worker(at=datetime.now(UTC))
    line.serve(night_port, night_env, at=EVENING, workers=1)

    second = place_every_kind_of_call(line, night_url)
    sids = [c.call_sid for c in [*first.values(), *second.values()]]
    logs = wait_for_logs(line, desk, sids)
    check_outcomes(second, logs)
    check_one_log_per_call(line, logs, sids)

    # Calls after the restart land on what calls before it opened.
    assert logs[second["outage"].call_sid]["case_number"] == \
        logs[first["outage"].call_sid]["case_number"]
    # One outage case per calling number per day, for an unknown number too.
    assert logs[second["outage-unknown"].call_sid]["case_number"] == \
        logs[first["outage-unknown"].call_sid]["case_number"]


def test_the_worker_runs_below_the_web_and_still_logs_every_call(line, lakeview, desk):
    """On a machine that runs both, a webhook (a caller waiting) goes before a call log:
    `caseline worker` and what it starts run at nice 10 or lower, the web as started."""
    line.start_web()
    line.start_worker()
    def nice(pid: int) -> int:
        return os.getpriority(os.PRIO_PROCESS, pid)

    ours = nice(0)
    assert {nice(pid) for pid in [line.web.pid, *children(line.web.pid)]} == {ours}
    worker = [line.worker.pid, *children(line.worker.pid)]
    assert len(worker) >= 2  # the worker and the reconciler's schedule
    assert all(nice(pid) >= max(ours, 10) for pid in worker), [nice(p) for p in worker]
    line.set_status("A7", "available")
    call = line.call(PAT, f"1 {CASE}#", extra_params=ATTESTED)
    assert call.answered_by == PHONES["A7"]
    assert wait_for_logs(line, desk, [call.call_sid])[call.call_sid]["answered_by"] == "A7"


def test_redis_flushed_under_a_running_service(line, lakeview, desk, r):
    line.start_web()
    line.start_worker()
    for advisor_id in ("A7", "A2"):
        line.set_status(advisor_id, "available")
    before = line.call(PAT, f"1 {CASE}#", extra_params=ATTESTED)
    assert before.answered_by == PHONES["A7"]
    # (A call whose log is still queued when Redis is flushed is lost with its
    # session: that is what a flush means. This one is written first.)
    wait_for_logs(line, desk, [before.call_sid])

    r.flushall()  # presence, queues, sessions, the directory cache, RQ's own keys: all gone

    # Advisors come back offline (the safe state): nobody is rung until they sign in.
    roster = {a["id"]: a for a in line.api("GET", "/advisors").json()}
    assert set(roster) == set(PHONES)
    assert {a["status"] for a in roster.values()} == {"offline"}
    # A caller is still recognised (the directory is read again and re-cached) and
    # waits, since nobody is available; when the owner signs in, they are connected.
    waiting = line.caller(PAT, f"1 {CASE}#", extra_params=ATTESTED, max_wait_seconds=15)
    results: list[CallResult] = []
    thread = threading.Thread(target=lambda: results.append(waiting.run()))
    thread.start()
    try:
        wait_for("the caller to wait for the case's team",
                 lambda: waiting_in(line, "general", waiting.call_sid))
        line.set_status("A7", "available")
    finally:
        thread.join(timeout=30)
    [connected] = results
    assert connected.queued and connected.answered_by == PHONES["A7"], connected.summary()
    assert connected.heard()[0] == before.heard()[0]  # greeted by name, as before the flush

    # Calls route again, many at once, and nobody is double-booked.
    for advisor_id in ("A2", "A6", "A1"):
        line.set_status(advisor_id, "available")
    ledger = PhoneLedger()
    callers = [line.caller(PAT, keys, extra_params=ATTESTED, max_wait_seconds=20)
               for keys in ["2", "8", "6 1", f"1 {CASE}#", "2", "8", "2", f"1 {CASE}#"]]
    burst: dict[str, CallResult] = {}
    start = threading.Barrier(len(callers))

    def place(caller: Caller) -> None:
        caller.on_event = ledger.watch(caller.call_sid)
        start.wait()
        burst[caller.call_sid] = caller.run()

    threads = [threading.Thread(target=place, args=(caller,)) for caller in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert ledger.double_booked == []
    assert len(burst) == len(callers)
    for result in burst.values():
        assert result.error is None and result.outcome == "advisor", result.summary()
    roster = {a["id"]: a["status"] for a in line.api("GET", "/advisors").json()}
    assert all(roster[a] == "available" for a in ("A7", "A2", "A6", "A1")), roster

    # The worker went on through the flush: every call after it is logged, once.
    sids = [waiting.call_sid, *burst]
    logs = wait_for_logs(line, desk, [before.call_sid, *sids])
    check_one_log_per_call(line, logs, [before.call_sid, *sids])


PREVIOUS_RELEASE_SQL = Path(__file__).parent / "data" / "previous-release.sql"


def test_todays_service_starts_on_the_previous_releases_database(settings, emulator, r,
                                                                  tmp_path):
    """A database the previous release wrote (tests/data/README.md): today's web and
    worker start on a copy of it, show its call logs and take calls onto its cases."""
    database = tmp_path / "previous-release.db"
    with sqlite3.connect(database) as db:  # the release's database, from its SQL dump
        db.executescript(PREVIOUS_RELEASE_SQL.read_text(encoding="utf-8"))
    old = settings.with_changes(database_url=f"sqlite:///{database}")
    line = new_line(old, emulator, tmp_path)
    try:
        line.start_web()  # rebuilds the cache, with an outage case of no district
        line.start_worker()
        before = line.api("GET", f"/cases/{CASE}/calls").json()
        assert len(before) == 2  # the release's case call and its PIN-verified call

        line.set_status("A7", "available")
        case_call = line.call(PAT, f"1 {CASE}#", extra_params=ATTESTED)
        assert case_call.answered_by == PHONES["A7"]
        outage_call = line.call(STRANGER, "8")
        assert outage_call.answered_by == PHONES["A7"]

        after = wait_for("today's worker to log the call on the old case", lambda: [
            log for log in line.api("GET", f"/cases/{CASE}/calls").json()
            if log["call_sid"] == case_call.call_sid])
        assert len(after) == 1
        assert len(line.api("GET", f"/cases/{CASE}/calls").json()) == len(before) + 1
        # The unknown number's outage call goes onto the outage case it opened
        # under the previous release (case 2024120, no district, same day).
        outage = wait_for("the outage call's log", lambda: [
            log for log in line.api("GET", "/cases/2024120/calls").json()
            if log["call_sid"] == outage_call.call_sid])
        assert len(outage) == 1 and outage[0]["caller"] == STRANGER
        assert len(line.api("GET", "/cases/2024120/calls").json()) == 2
    except AssertionError:
        print(line.output())
        raise
    finally:
        line.stop()


def _gone(pid: int) -> bool:
    """Whether process `pid` has ended (a zombie waiting to be reaped has)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_worker_killed_outright_leaves_no_reconciler_schedule_behind(
        settings, emulator, tmp_path):
    """`caseline worker` runs RQ's cron (the reconciler's schedule) and RQ's scheduler in
    processes of their own, which it stops as it stops. Killed outright (the OOM
    killer; supervisord, which by default kills only the main process), it left them
    running for ever, the cron queueing the reconciler on the live Redis, one more
    with every restart. Now they stop within seconds of their worker."""
    line = new_line(settings, emulator, tmp_path)
    try:
        worker = line.start_worker()
        # The cron's process (and multiprocessing's resource tracker), RQ's scheduler.
        started = wait_for("the worker's schedule processes",
                           lambda: len(children(worker.pid)) >= 3 and children(worker.pid))
        os.kill(worker.pid, signal.SIGKILL)  # the worker alone, not its process group
        worker.popen.wait()
        wait_for("the worker's schedule to stop",
                 lambda: all(_gone(pid) for pid in started), timeout=10)
    finally:
        line.stop()
