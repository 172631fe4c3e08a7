"""Failure drills against real servers the test stops and starts: Redis down,
the database down, a worker killed in the middle of a call-log job.

Each drill checks what callers and operators notice: a caller still reaches a
human (the fallback number's `<Dial>`), routing comes back by itself, and every
call ends up with exactly one call log.
"""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rq.job import Job
from rq.registry import StartedJobRegistry
from sqlalchemy import func, select

from caseline.embedded_redis import start_server, wait_until_up
from directory.models import CallLog
from jobs.queues import CALL_LOG_RETRY, CALLS_TO_LOG, Queues, call_log_job_id
from tests.conftest import AUTH_TOKEN, free_port
from tests.live import new_line, wait_for
from twilio_side import HttpTransport

PAT = "+16125550101"
CASE = "2024117"
A7 = "+16515550199"
A2 = "+16515550102"
FALLBACK = "+16515550000"
ATTESTED = {"StirVerstat": "TN-Validation-Passed-A"}

pytestmark = pytest.mark.slow


@pytest.fixture
def database_url(database_url: str, database_backend: str, tmp_path: Path) -> str:
    """On SQLite, the database in a folder of its own, so a drill can take the folder
    away; on PostgreSQL, the test's database (a drill stops the cluster)."""
    if database_backend == "postgresql":
        return database_url
    return f"sqlite:///{tmp_path / 'db' / 'caseline.db'}"


@pytest.fixture
def lakeview(directory):
    """A district, its contact, two general advisors, the case."""
    directory.district("D100", "Lakeview Public Schools", hosted=True)
    directory.contact("5001", PAT, "D100", "Pat Lee", "2468", last_active="2026-10-01")
    directory.advisor("A7", ["general", "hosting"], phone=A7)
    directory.advisor("A2", ["general"], phone=A2)
    directory.case(CASE, "D100", owner="A7")
    directory.load()


def dialed_numbers(twiml: str) -> list[str]:
    """The numbers a TwiML document dials (`<Dial>` text or its `<Number>`s)."""
    numbers = []
    for dial in ET.fromstring(twiml).iter("Dial"):
        numbers += [n.text.strip() for n in dial.iter("Number") if n.text]
        if dial.text and dial.text.strip():
            numbers.append(dial.text.strip())
    return numbers


def call_logs(desk, sids: list[str]) -> dict[str, int]:
    """How many call logs each call has."""
    with desk.session_factory() as db:
        rows = db.execute(select(CallLog.call_sid, func.count())
                          .where(CallLog.call_sid.in_(sids)).group_by(CallLog.call_sid))
        return {sid: count for sid, count in rows}


def test_redis_down_callers_reach_the_fallback_then_routing_resumes(
        settings, emulator, lakeview, tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis_server = start_server(tmp_path / "drill-redis", port=port)
    wait_until_up(url)
    line = new_line(settings.with_changes(redis_url=url), emulator, tmp_path,
                    CASELINE_FALLBACK_NUMBER=FALLBACK)
    try:
        line.start_web()  # its start caches the directory in this Redis
        line.set_status("A7", "available")
        assert line.call(PAT, f"1 {CASE}#", extra_params=ATTESTED).answered_by == A7

        redis_server.terminate()
        redis_server.wait(timeout=10)
        # Twilio's first webhook, and a menu step: both dial the fallback number.
        twilio = HttpTransport(line.url, auth_token=AUTH_TOKEN)
        form = {"CallSid": "CA" + "1" * 32, "From": PAT, "To": "+18005550100",
                "AccountSid": settings.twilio_account_sid, "CallStatus": "ringing"}
        for path, extra in (("/voice/incoming", {}), ("/voice/menu", {"Digits": "1"})):
            answer = twilio.post(path, {**form, **extra})
            assert answer.status == 200, (path, answer.text)
            assert dialed_numbers(answer.text) == [FALLBACK], (path, answer.text)
        # A whole call: the caller is put through to a human at the fallback number.
        during = line.call(PAT, f"1 {CASE}#", extra_params=ATTESTED)
        assert during.answered_by == FALLBACK and during.outcome == "advisor", during.summary()

        # Redis comes back (empty) on the same port; the service was never restarted.
        redis_server = start_server(tmp_path / "drill-redis", port=port)
        wait_until_up(url)
        line.set_status("A7", "available")
        after = line.call(PAT, f"1 {CASE}#", extra_params=ATTESTED)
        assert after.answered_by == A7, after.summary()
        assert line.web is not None and line.web.alive()
        assert [p.pid for p in line.processes] == [line.web.pid]  # one start, no restart
    finally:
        line.stop()
        redis_server.terminate()
        redis_server.wait(timeout=10)


@pytest.mark.databases
def test_database_down_calls_still_route_and_every_log_lands_once(
        settings, emulator, lakeview, desk, engine, tmp_path, r, database_backend, request):
    line = new_line(settings, emulator, tmp_path)
    folder = tmp_path / "db"
    away = tmp_path / "db-away"
    cluster = request.getfixturevalue("postgres_cluster") if database_backend != "sqlite" else None
    try:
        line.start_web()
        line.start_worker()
        for advisor in ("A7", "A2"):
            line.set_status(advisor, "available")
        engine.dispose()  # the test's own connections: the drill is about the service's

        # The database goes down. PostgreSQL: the server stops (its sessions end).
        # SQLite: moving its folder away makes every new connection fail ("unable
        # to open database file"), as a stopped server refuses connections.
        # (Holding a lock would not do: in WAL mode readers read on; chmod does
        # not stop root; and a file moved alone would be recreated empty.) Neither
        # the web processes nor the worker hold a connection yet: their start
        # closed the ones that rebuilt the cache.
        if cluster is not None:
            cluster.stop()
        else:
            folder.rename(away)
        calls = [line.call(PAT, keys, extra_params=ATTESTED)
                 for keys in (f"1 {CASE}#", "2", "8")]
        # Webhooks route from Redis alone: every caller reaches an advisor.
        for call in calls:
            assert call.error is None and call.answered_by in (A7, A2), call.summary()
        assert calls[0].answered_by == A7  # the case's owner, from the cached case
        sids = [c.call_sid for c in calls]

        # The job that writes their logs fails and is retried, not dropped, and the
        # calls still wait for their log. (No settings knob is needed to keep this
        # fast: CALL_LOG_RETRY retries after 0, 1, 2, 5 s...)
        def retried_and_waiting() -> bool:
            job = Job.fetch(call_log_job_id(sids[0]), connection=desk.job_redis)
            waiting = set(desk.r.zrange(CALLS_TO_LOG, 0, -1))
            return (job.retries_left is not None and job.retries_left < CALL_LOG_RETRY.max
                    and set(sids) <= waiting)

        wait_for("the call-log job to fail and be retried", retried_and_waiting, timeout=15)
        if cluster is not None:
            cluster.start()  # the database is back
        else:
            assert not folder.exists()  # nothing recreated the database meanwhile
            away.rename(folder)  # the database is back
        wait_for("every call log to land", lambda: len(call_logs(desk, sids)) == len(sids),
                 timeout=20)
        assert call_logs(desk, sids) == dict.fromkeys(sids, 1)  # none lost, none twice
        with desk.session_factory() as db:
            assert db.scalar(select(func.count()).select_from(CallLog)) == len(sids)
    except AssertionError:
        print(line.output())
        raise
    finally:
        if cluster is not None and cluster.process is None:
            cluster.start()
        if away.exists() and not folder.exists():
            away.rename(folder)
        line.stop()


def test_worker_killed_in_a_call_log_job_the_next_worker_writes_it_once(
        settings, emulator, lakeview, desk, engine, tmp_path, r):
    line = new_line(settings, emulator, tmp_path)
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    lock = None
    try:
        line.start_web()
        killed = line.start_worker()
        line.set_status("A7", "available")

        # The test holds the database's write lock, so the job blocks in its
        # write (SQLite waits up to its 5 s busy timeout) where it can be killed.
        lock = sqlite3.connect(database, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        call = line.call(PAT, f"1 {CASE}#", extra_params=ATTESTED)
        assert call.answered_by == A7
        started = StartedJobRegistry(Queues.CALL_LOGS, connection=desk.job_redis)
        job_id = call_log_job_id(call.call_sid)
        job = Job.fetch(job_id, connection=desk.job_redis)
        wait_for("the worker to be running the call-log job", lambda: job_id in
                 started.get_job_ids(cleanup=False) and job.get_status() == "started",
                 timeout=10, interval=0.01)
        killed.kill()  # SIGKILL, the worker and everything it started
        lock.execute("ROLLBACK")
        lock.close()
        lock = None
        assert call_logs(desk, [call.call_sid]) == {}  # the killed job wrote nothing

        # A new worker starts (on the clock where the old one stopped) and the
        # abandoned job runs again: one log on the case, not two.
        line.start_worker(at=datetime.now(UTC))
        wait_for("the new worker to write the call log",
                 lambda: call_logs(desk, [call.call_sid]) == {call.call_sid: 1}, timeout=15)
        logs = line.api("GET", f"/cases/{CASE}/calls").json()
        assert [log["call_sid"] for log in logs] == [call.call_sid]
        assert logs[0]["answered_by"] == "A7"
        wait_for("the job to finish", lambda: job.get_status() == "finished")
        assert job_id not in started.get_job_ids(cleanup=False)
    except AssertionError:
        print(line.output())
        raise
    finally:
        if lock is not None:
            lock.close()
        line.stop()
