"""Call logs: one per call, on its case, through duplicates and database outages."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import zlib

import pytest
from rq import SimpleWorker
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker
from twilio.request_validator import RequestValidator

from jobs.queues import (
    CALL_LOG_GATHER_SECONDS,
    CALLS_TO_LOG,
    SERIALIZER,
    Queues,
    call_log_job_id,
    enqueue_call_log,
    queue,
)
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, BASE_URL, make_available, run_jobs
from tests.live import new_line, wait_for
from twilio_side import HttpTransport
from workers import context

# The worker writes call logs: on SQLite and on PostgreSQL.
pytestmark = pytest.mark.databases

PAT = "+16125550101"


@pytest.fixture
def lakeview(directory):
    directory.district()
    directory.contact()
    directory.advisor("A7", ["general"], phone="+16515550199")
    directory.case("2024117", owner="A7")
    directory.load()


def logs_on(desk, number: str) -> list:
    from directory.call_logs import calls_on_case

    return calls_on_case(desk.session_factory, number)


def test_log_waits_out_a_database_outage(phone, desk, lakeview, tmp_path):
    make_available(desk, "A7")
    down = create_engine(f"sqlite:///{tmp_path}/no-such-dir/caseline.db")
    context.configure(dataclasses.replace(desk, session_factory=sessionmaker(down)))
    results = [phone.call(PAT, "1 2024117#") for _ in range(3)]
    assert all(r.outcome == "advisor" for r in results)  # no SQL on the hot path
    run_jobs(desk)  # the job fails against the missing database and is scheduled to retry
    assert logs_on(desk, "2024117") == []
    sids = [r.call_sid for r in results]
    assert set(desk.r.zrange(CALLS_TO_LOG, 0, -1)) == set(sids)  # nothing dropped

    context.configure(desk)  # the database is back
    time.sleep(1.2)  # the first retry is due after a second
    worker = SimpleWorker(list(Queues.ALL), connection=desk.job_redis, serializer=SERIALIZER)
    worker.work(burst=True, with_scheduler=True)
    logs = logs_on(desk, "2024117")
    assert [log["call_sid"] for log in logs] == sids
    assert desk.r.zcard(CALLS_TO_LOG) == 0


def test_calls_that_end_meanwhile_are_logged_by_one_job(phone, desk, lakeview):
    make_available(desk, "A7")
    results = [phone.call(PAT, "1 2024117#") for _ in range(5)]
    logs = queue(Queues.CALL_LOGS, desk.job_redis)
    assert logs.get_jobs() == []  # not at once: it gathers the calls that end meanwhile
    jobs = [logs.fetch_job(job_id) for job_id in logs.scheduled_job_registry.get_job_ids()]
    assert [job.func_name for job in jobs] == ["workers.call_log.log_calls"]  # one, for five
    due = logs.scheduled_job_registry.get_scheduled_time(jobs[0])
    assert due.timestamp() <= time.time() + CALL_LOG_GATHER_SECONDS
    run_jobs(desk)
    assert [log["call_sid"] for log in logs_on(desk, "2024117")] == [r.call_sid for r in results]
    assert finished(desk, jobs[0].id)


def test_a_batch_skips_calls_already_logged_and_logs_each_call_once(phone, desk, lakeview):
    from workers.call_log import log_call

    make_available(desk, "A7")
    first, second, third = (phone.call(PAT, "1 2024117#") for _ in range(3))
    assert log_call(second.call_sid) == "written"  # another job wrote this one first
    run_jobs(desk)
    job_id = call_log_job_id(first.call_sid)
    assert finished(desk, job_id)
    enqueue_call_log(desk.job_redis, first.call_sid)  # the same call queued again, logged
    run_jobs(desk)
    assert finished(desk, job_id)
    logs = logs_on(desk, "2024117")
    assert sorted(log["call_sid"] for log in logs) == sorted(
        r.call_sid for r in (first, second, third))


def test_a_rerun_job_writes_nothing_new(phone, desk, lakeview):
    from workers.call_log import log_call

    make_available(desk, "A7")
    result = phone.call(PAT, "1 2024117#")
    run_jobs(desk)
    assert log_call(result.call_sid) == "exists"  # a killed worker's job, run again
    assert len(logs_on(desk, "2024117")) == 1


def test_logs_are_listed_oldest_first(phone, desk, lakeview):
    make_available(desk, "A7")
    first = phone.call(PAT, "1 2024117#")
    second = phone.call(PAT, "1 2024117#")
    run_jobs(desk)
    logs = logs_on(desk, "2024117")
    assert [log["call_sid"] for log in logs] == [first.call_sid, second.call_sid]
    assert logs[0]["started_at"] <= logs[1]["started_at"]


def job_data(r, job_id: str) -> object:
    """A job's stored payload, read raw from its hash and JSON-decoded (RQ zips it)."""
    raw = r.connection_pool.connection_kwargs
    assert raw.get("decode_responses")
    data = r.execute_command("HGET", f"rq:job:{job_id}", "data", NEVER_DECODE=True)
    assert data is not None, f"no job {job_id}"
    return json.loads(zlib.decompress(data))


def test_a_job_queued_by_a_status_callback_is_json_in_redis(client, desk, lakeview):
    sid = "CA" + "7" * 32
    form = {"AccountSid": ACCOUNT_SID, "CallSid": sid, "CallStatus": "completed",
            "CallDuration": "12", "From": PAT}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(BASE_URL + "/voice/status", form)
    response = client.post("/voice/status", data=form, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200

    func, _instance, args, kwargs = job_data(desk.r, f"log-calls-{sid}")
    assert (func, args, kwargs) == ("workers.call_log.log_calls", [], {})
    run_jobs(desk)  # and the worker reads it
    assert finished(desk, f"log-calls-{sid}")


def test_the_reconciler_queued_by_rqs_cron_is_json_in_redis(desk):
    from caseline.work import json_cron_scheduler
    from workers.reconciler import reconcile

    cron = json_cron_scheduler(desk.job_redis)
    cron_job = cron.register(reconcile, Queues.PRESENCE, interval=10)
    job = cron_job.enqueue(desk.job_redis)
    func, _instance, args, kwargs = job_data(desk.r, job.id)
    assert (func, args, kwargs) == ("workers.reconciler.reconcile", [], {})
    run_jobs(desk)
    assert finished(desk, job.id)


def finished(desk, job_id: str) -> bool:
    """Whether the worker ran the job to its end."""
    from rq.job import Job

    return Job.fetch(job_id, connection=desk.job_redis,
                     serializer=SERIALIZER).get_status() == "finished"


def test_two_jobs_writing_the_same_calls_at_once_log_each_call_once(phone, desk, lakeview):
    """Two workers run a job each over the same waiting calls, at the same instant: the
    database keeps one log per CallSid; a job that lost the race fails and, run again
    as RQ retries it, finds them written."""
    from workers.call_log import write_call_logs

    make_available(desk, "A7")
    sids = [phone.call(PAT, "1 2024117#").call_sid for _ in range(8)]
    start = threading.Barrier(2)
    outcomes: list[dict[str, str]] = []

    def job() -> None:
        start.wait()
        for _ in range(3):  # RQ's retries
            try:
                outcomes.append(write_call_logs(desk, sids))
                return
            except OperationalError:  # SQLite: the other writer's snapshot won
                continue

    threads = [threading.Thread(target=job) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(outcomes) == 2
    for sid in sids:
        assert sorted(o[sid] for o in outcomes) == ["exists", "written"]
    assert sorted(log["call_sid"] for log in logs_on(desk, "2024117")) == sorted(sids)


def test_calls_whose_last_log_job_failed_for_good_are_logged_by_the_reconciler(
        phone, desk, lakeview):
    """A database outage longer than every retry: the job fails for good, and at night
    no call ends to queue another. The reconciler (every 10 s) queues it again."""
    from time_machine import travel

    from jobs.queues import CALL_LOGS_QUEUED
    from workers.reconciler import reconcile

    make_available(desk, "A7")
    result = phone.call(PAT, "1 2024117#")
    logs = queue(Queues.CALL_LOGS, desk.job_redis)
    [job_id] = logs.scheduled_job_registry.get_job_ids()
    # Failed for good: RQ keeps it in the failed registry, off the queue.
    logs.fetch_job(job_id).delete()
    desk.job_redis.delete(CALL_LOGS_QUEUED)  # its mark expired long ago
    context.configure(desk)
    assert reconcile()["call_logs_resumed"] == 0  # too soon: a job may still be retrying
    with travel(time.time() + 61, tick=False):
        assert reconcile()["call_logs_resumed"] == 1
        assert reconcile()["call_logs_resumed"] == 0  # one job is enough
    run_jobs(desk)
    assert [log["call_sid"] for log in logs_on(desk, "2024117")] == [result.call_sid]
    assert desk.r.zcard(CALLS_TO_LOG) == 0


@pytest.mark.slow
def test_a_running_worker_writes_a_burst_of_calls_with_one_job_within_seconds(
        settings, emulator, desk, lakeview, tmp_path):
    """Calls ending a few milliseconds apart, with `caseline worker` idle and keeping up:
    their logs are written by one job (two when the burst straddles the scheduler's
    tick), not one job each, and every log lands within a few seconds."""
    line = new_line(settings, emulator, tmp_path)
    try:
        line.start_web()
        line.start_worker()
        twilio = HttpTransport(line.url, auth_token=AUTH_TOKEN)
        sids = [f"CA{index:032d}" for index in range(8)]
        for sid in sids:
            form = {"AccountSid": ACCOUNT_SID, "CallSid": sid, "CallStatus": "completed",
                    "CallDuration": "12", "From": PAT}
            assert twilio.post("/voice/status", form).status == 200
            time.sleep(0.02)  # the worker, idle, would take a job queued now at once
        # From the burst's last call: on a loaded host the posts themselves take seconds.
        start = time.monotonic()

        def logged() -> set[str]:
            from sqlalchemy import select

            from directory.models import CallLog

            with desk.session_factory() as db:
                return set(db.scalars(select(CallLog.call_sid)))

        wait_for("every call's log", lambda: logged() == set(sids), timeout=10, interval=0.05)
        took = time.monotonic() - start
        jobs = desk.job_redis.keys("rq:job:log-calls-*")
        assert 1 <= len(jobs) <= 2, jobs
        # Up to ~2 s on a quiet machine; slack for a host that takes the core (CI saw
        # 4.3 s with the VM's steal at 20-30%; 6.0 s with a second suite running beside
        # this one), still short of the reconciler's 10 s pass that would log a call
        # the gathered job missed.
        assert took < 2 * CALL_LOG_GATHER_SECONDS + 6, took
    except AssertionError:
        print(line.output())
        raise
    finally:
        line.stop()


def test_outage_reports_logged_in_one_batch_go_on_one_case_per_number_and_district(
        phone, desk, lakeview):
    """Outage reports whose logs one job writes together: one case per unknown number and
    one per district, as when each is logged on its own."""
    from sqlalchemy import select

    from directory.models import CallLog, Case

    unknown = [phone.call("+16125550999", "8") for _ in range(2)]
    known = [phone.call(PAT, "8") for _ in range(2)]
    run_jobs(desk)
    with desk.session_factory() as db:
        case_of = {sid: number for sid, number in db.execute(
            select(CallLog.call_sid, CallLog.case_number))}
        outage_cases = db.scalars(select(Case.number).where(Case.outage.is_(True))).all()
    assert len(outage_cases) == 2
    for calls in (unknown, known):
        assert len({case_of[c.call_sid] for c in calls}) == 1
    assert case_of[unknown[0].call_sid] != case_of[known[0].call_sid]
    assert set(case_of.values()) == set(outage_cases)
