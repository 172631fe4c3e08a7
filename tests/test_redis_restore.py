"""The drill of Redis restored from a snapshot older than now: calls that ended, and
were logged, after the snapshot was taken come back open, their advisor busy and their
caller waiting at the head of the queue. The reconciler notices the restart and asks
Twilio about every open call at once, so within a pass or two the advisor is free, the
queue is empty, a new caller is served, and no call is logged twice."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from caseline.embedded_redis import start_server, wait_until_up
from caseline.work import RECONCILE_EVERY_SECONDS, DeskWorker
from jobs.queues import SERIALIZER, Queues, queue
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, free_port
from tests.live import new_line, wait_for
from tests.test_drills import call_logs
from twilio_side import Caller, HttpTransport

# The reconciler job keeps its result this long (s; `caseline.work._schedule`).
RECONCILE_RESULT_TTL = 60
PAT, SAM, ALEX = "+16125550101", "+16125550102", "+16125550103"
A7 = "+16515550199"

pytestmark = pytest.mark.slow


@pytest.fixture
def one_advisor(directory):
    """A district with three contacts, and one general advisor (A7)."""
    directory.district("D100", "Lakeview Public Schools", hosted=True)
    for n, phone in enumerate((PAT, SAM, ALEX)):
        directory.contact(str(5001 + n), phone, "D100", f"Contact {n}", "2468",
                          last_active="2026-10-01")
    directory.advisor("A7", ["general"], phone=A7)
    directory.load()


def drill_redis(tmp_path: Path) -> tuple[subprocess.Popen, str, Path, int]:
    """A Redis of the drill's own, up: its process, URL, data folder (its snapshot) and
    port (to start it again there)."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    data = tmp_path / "drill-redis"
    server = start_server(data, port=port)
    wait_until_up(url)
    return server, url, data, port


def test_redis_restored_from_an_older_snapshot_frees_the_ghosts_within_seconds(
        settings, emulator, one_advisor, desk, tmp_path: Path):
    server, url, data, port = drill_redis(tmp_path)
    line = new_line(settings.with_changes(redis_url=url), emulator, tmp_path)
    results: dict[str, object] = {}

    def call(name: str, phone: str, **options) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: results.__setitem__(name, line.call(phone, "2", **options)))
        thread.start()
        return thread

    def advisor_status() -> str:
        return {a["id"]: a["status"] for a in line.api("GET", "/advisors").json()}["A7"]

    def waiting() -> list[str]:
        return [c["call_sid"] for c in line.api("GET", "/queues").json().get("general", [])]

    try:
        line.start_web()
        line.start_worker()
        line.set_status("A7", "available")
        pat = call("pat", PAT, on_call_seconds=3)
        wait_for("A7 to talk with Pat", lambda: advisor_status() == "busy", timeout=10)
        sam = call("sam", SAM, max_wait_seconds=30)
        wait_for("Sam to wait", lambda: len(waiting()) == 1, timeout=10)
        # The snapshot: A7 busy with Pat, Sam waiting. Both calls end, and are logged, after.
        client = redis.Redis.from_url(url)
        client.save()
        client.close()
        pat.join(30)
        sam.join(40)
        first, second = results["pat"], results["sam"]
        assert first.answered_by == A7 and second.answered_by == A7, (
            first.summary(), second.summary())
        sids = [first.call_sid, second.call_sid]
        wait_for("both calls to be logged",
                 lambda: call_logs(desk, sids) == {sid: 1 for sid in sids}, timeout=20)

        # Redis crashes and comes back from that older snapshot.
        server.kill()
        server.wait(timeout=10)
        server = start_server(data, port=port)
        wait_until_up(url)
        assert advisor_status() == "busy" and waiting() == [second.call_sid]  # the ghosts

        # Within a reconciler pass or two (every 10 s), not 10 minutes.
        wait_for("A7 free and the queue empty",
                 lambda: advisor_status() == "available" and waiting() == [], timeout=25)
        third = line.call(ALEX, "2", max_wait_seconds=10)
        assert third.answered_by == A7, third.summary()
        everyone = [*sids, third.call_sid]
        wait_for("Alex's call to be logged",
                 lambda: third.call_sid in call_logs(desk, everyone), timeout=20)
        time.sleep(1)  # a second log, if any, would land by now
        assert call_logs(desk, everyone) == {sid: 1 for sid in everyone}, line.output()[-4000:]
    finally:
        line.stop()
        server.terminate()
        server.wait(timeout=10)


def reconciler_passes_since(url: str, since: float) -> int:
    """How many reconciler passes the worker finished since `since` (s since the epoch):
    RQ scores a finished job at the time it finished plus its result's TTL (60 s)."""
    client = redis.Redis.from_url(url)
    try:
        return client.zcount(f"rq:finished:{Queues.PRESENCE}", since + RECONCILE_RESULT_TTL,
                             "+inf")
    finally:
        client.close()


def test_the_reconciler_runs_again_after_redis_was_down_longer_than_its_interval(
        settings, emulator, one_advisor, tmp_path: Path):
    """Redis down for longer than the reconciler's interval (a restart that takes a
    while, a failover): once it is back, the reconciler runs again on its schedule,
    without restarting the worker. Before, RQ's cron scheduler ended at the first Redis
    error and nothing repaired what the outage left (ends lost, logs to write)."""
    server, url, data, port = drill_redis(tmp_path)
    line = new_line(settings.with_changes(redis_url=url), emulator, tmp_path)
    try:
        line.start_web()
        line.start_worker()
        started = time.time()
        wait_for("the reconciler's first pass",
                 lambda: reconciler_passes_since(url, started) > 0, timeout=30)
        redis.Redis.from_url(url).shutdown(save=True)
        server.wait(timeout=10)
        time.sleep(RECONCILE_EVERY_SECONDS + 2)  # the schedule's next pass meets no Redis
        server = start_server(data, port=port)
        wait_until_up(url)
        back = time.time()
        wait_for("a reconciler pass after Redis came back",
                 lambda: reconciler_passes_since(url, back) > 0, timeout=40)
    finally:
        line.stop()
        server.terminate()
        server.wait(timeout=10)


def test_a_callback_survives_redis_restarting_empty_under_the_running_line(
        settings, emulator, one_advisor, desk, tmp_path: Path):
    """The embedded Redis keeps nothing (`--save ""`): Pat asks for a callback and hangs
    up, then Redis crashes and comes back empty under the running web and worker. The
    worker's reconciler puts the callback back within a pass, A7 sets themselves
    available (the directory cache rebuilt with it), is rung for Pat's callback, Pat's
    directory phone is dialled, and the call has exactly one log."""
    server, url, _data, port = drill_redis(tmp_path)
    line = new_line(settings.with_changes(redis_url=url), emulator, tmp_path)

    def waiting() -> list[str]:
        return [c["call_sid"] for c in line.api("GET", "/queues").json().get("general", [])]

    try:
        line.start_web()
        line.start_worker()
        started = time.time()
        # The line has been running: the reconciler has seen this Redis.
        wait_for("the reconciler's first pass",
                 lambda: reconciler_passes_since(url, started) > 0, timeout=30)
        caller = line.caller(PAT, "2 wait:1", extra_params={
            "StirVerstat": "TN-Validation-Passed-A"})
        asked = caller.run()
        assert asked.queued and asked.outcome != "advisor", asked.summary()
        assert waiting() == [caller.call_sid]  # a callback, kept in its place

        server.kill()  # Redis crashes, and comes back with nothing
        server.wait(timeout=10)
        server = start_server(tmp_path / "drill-redis-empty", port=port)
        wait_until_up(url)
        wait_for("the callback back in its queue", lambda: waiting() == [caller.call_sid],
                 timeout=RECONCILE_EVERY_SECONDS * 3)

        line.set_status("A7", "available")
        leg = line.callback_leg(caller.call_sid)
        assert leg.to == A7  # the advisor's phone rings first
        advisor_leg = Caller(
            HttpTransport(line.url, auth_token=AUTH_TOKEN), "+18005550100", A7,
            start_url=leg.url, direction="outbound-api", call_sid=leg.sid, keys=["1"],
            advisor_policy={PAT: "answer"}, account_sid=ACCOUNT_SID,
            status_path=leg.status_callback, talk_seconds=30).run()
        assert advisor_leg.dialed == [PAT] and advisor_leg.outcome == "advisor", \
            advisor_leg.summary()
        wait_for("the callback's log", lambda: call_logs(desk, [caller.call_sid]),
                 timeout=20)
        time.sleep(1)  # a second log, if any, would land by now
        assert call_logs(desk, [caller.call_sid]) == {caller.call_sid: 1}
        assert waiting() == []
    finally:
        line.stop()
        server.terminate()
        server.wait(timeout=10)


def test_the_worker_outlives_redis_going_down_during_its_maintenance(tmp_path: Path):
    """RQ's work loop ends the worker at an error raised by its maintenance (cleaning
    its registries), which it runs at start and every minute: Redis restarting at that
    moment left the line without a worker. The desk's worker logs it and goes on to
    wait for Redis as it waits for a job."""
    server, url, _data, _port = drill_redis(tmp_path)
    connection = redis.Redis.from_url(url)
    try:
        worker = DeskWorker(list(Queues.ALL), connection=connection, serializer=SERIALIZER)
        server.kill()
        server.wait(timeout=10)
        worker.run_maintenance_tasks()  # Redis gone: no exception ends the worker
        assert worker.should_run_maintenance_tasks  # still due, once Redis is back
    finally:
        connection.close()
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=10)


def test_the_worker_starts_again_after_redis_went_away_under_a_job(
        settings, emulator, one_advisor, tmp_path: Path):
    """RQ's work loop quits, as if all were well, at a Redis error anywhere but its wait
    for a job: a job under way when Redis went away (a restart, a failover) ended the
    `caseline worker` process, and the line had no call logs, wrap-up ends nor
    reconciler until someone restarted it. The desk's worker starts its loop again once
    Redis is back."""
    server, url, data, port = drill_redis(tmp_path)
    line = new_line(settings.with_changes(redis_url=url), emulator, tmp_path)
    try:
        worker = line.start_worker()
        client = redis.Redis.from_url(url)
        logs = queue(Queues.CALL_LOGS, client)
        under_way = logs.enqueue("time.sleep", 3)  # a job as long as a slow database's
        wait_for("the job under way",
                 lambda: under_way.id in logs.started_job_registry.get_job_ids())
        client.shutdown(save=True)  # Redis goes away while the job runs...
        server.wait(timeout=10)
        time.sleep(4)  # ...and is still away when the job ends
        server = start_server(data, port=port)
        wait_until_up(url)
        back = time.time()
        wait_for("a reconciler pass after Redis came back",
                 lambda: reconciler_passes_since(url, back) > 0, timeout=40)
        assert worker.alive()
    finally:
        line.stop()
        server.terminate()
        server.wait(timeout=10)
