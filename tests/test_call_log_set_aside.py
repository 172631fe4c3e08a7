"""A call whose log cannot be written holds no other call's log back: it is set aside,
named in an error, and written once its data is fixed; the database down still fails the
job for RQ's retry, every call waiting."""

from __future__ import annotations

import dataclasses
import logging
import time

import pytest
from rq import SimpleWorker
from sqlalchemy import create_engine, delete, select
from sqlalchemy.orm import sessionmaker
from time_machine import travel

from directory import keys
from directory.models import CallLog, Case
from jobs.queues import (
    CALL_LOG_RETRY,
    CALL_LOG_SET_ASIDE_SECONDS,
    CALL_LOGS_QUEUED,
    CALL_LOGS_SET_ASIDE,
    CALL_LOGS_SPLIT,
    CALLS_TO_LOG,
    SERIALIZER,
    Queues,
    call_log_job_id,
    enqueue_call_log,
    queue,
)
from tests.conftest import free_port, make_available, run_jobs
from workers import context

# The worker writes call logs: on SQLite and on PostgreSQL.
pytestmark = pytest.mark.databases

PAT = "+16125550101"
# A case number past what the line's 64-bit counter can count on from: no case can be
# opened after it (`directory.case_numbers.CaseNumberError`).
TOO_HIGH = "99999999999999999999"


@pytest.fixture
def lakeview(directory):
    directory.district()
    directory.contact()
    directory.advisor("A7", ["general"], phone="+16515550199")
    directory.case("2024117", owner="A7")
    directory.load()


def add_case_numbered_too_high(desk) -> None:
    """An operator's case numbered past 2^63-1, straight into the database (as one loaded
    before case numbers were bounded would be): every call that opens a case fails."""
    with desk.session_factory() as db:
        db.add(Case(number=TOO_HIGH, district_id="D100", status="closed", priority="low",
                    product="campus"))
        db.commit()


def remove_case_numbered_too_high(desk) -> None:
    """The operator's fix: the bad case taken out of the directory."""
    with desk.session_factory() as db:
        db.execute(delete(Case).where(Case.number == TOO_HIGH))
        db.commit()


def logged(desk) -> dict[str, int]:
    """How many call logs each CallSid has."""
    with desk.session_factory() as db:
        sids = db.scalars(select(CallLog.call_sid)).all()
    return {sid: sids.count(sid) for sid in sids}


def set_aside(desk) -> dict[str, float]:
    """The calls set aside, with when each is tried again (Unix seconds)."""
    return dict(desk.r.zrange(CALL_LOGS_SET_ASIDE, 0, -1, withscores=True))


def errors_naming(caplog, sid: str) -> list[str]:
    """The error lines that name a CallSid."""
    return [rec.getMessage() for rec in caplog.records
            if rec.levelno >= logging.ERROR and sid in rec.getMessage()]


def calls(phone, keys_pressed: list[str]) -> list[str]:
    """Place a call per entry (its keys), each answered by A7; their CallSids."""
    return [phone.call(PAT, pressed).call_sid for pressed in keys_pressed]


def test_a_call_whose_log_fails_holds_no_other_call_back(phone, desk, lakeview, caplog):
    """Two calls that open a case (option 2) cannot be logged: the calls around them, on
    the caller's case, are logged all the same by the one job, which ends as usual."""
    add_case_numbered_too_high(desk)
    make_available(desk, "A7")
    sids = calls(phone, ["1 2024117#", "2", "1 2024117#", "1 2024117#", "2", "1 2024117#"])
    unwritable = {sids[1], sids[4]}
    start = time.time()
    run_jobs(desk)

    assert logged(desk) == {sid: 1 for sid in sids if sid not in unwritable}
    assert desk.r.zcard(CALLS_TO_LOG) == 0  # none left waiting, none blocking
    due = set_aside(desk)
    assert set(due) == unwritable
    for sid in unwritable:
        assert start + CALL_LOG_SET_ASIDE_SECONDS <= due[sid] <= time.time() + \
            CALL_LOG_SET_ASIDE_SECONDS
        [error] = errors_naming(caplog, sid)
        assert "CaseNumberError" in error
    # The job ended (not failed, no retry) and took its mark off: the next call queues one.
    job = queue(Queues.CALL_LOGS, desk.job_redis).fetch_job(call_log_job_id(sids[0]))
    assert job.get_status() == "finished"
    assert desk.r.get(CALL_LOGS_QUEUED) is None


def test_calls_set_aside_show_in_the_metrics(client, phone, desk, lakeview):
    """`caseline_call_logs_set_aside` counts them, for an alert."""
    from prometheus_client.parser import text_string_to_metric_families

    def gauge() -> float:
        [value] = [sample.value for family in text_string_to_metric_families(
            client.get("/metrics").get_data(as_text=True))
            for sample in family.samples if sample.name == "caseline_call_logs_set_aside"]
        return value

    add_case_numbered_too_high(desk)
    make_available(desk, "A7")
    calls(phone, ["2", "1 2024117#"])
    assert gauge() == 0
    run_jobs(desk)
    assert gauge() == 1


def test_a_call_set_aside_is_logged_once_when_its_try_comes_after_the_fix(
        phone, desk, lakeview):
    """The operator removes the bad case; ten minutes after the failure the reconciler
    puts the call back among the calls to log, and its log is written, once."""
    from workers.call_log import log_call
    from workers.reconciler import reconcile

    add_case_numbered_too_high(desk)
    make_available(desk, "A7")
    first, new_case = calls(phone, ["1 2024117#", "2"])
    run_jobs(desk)
    assert set(set_aside(desk)) == {new_case}
    remove_case_numbered_too_high(desk)

    assert reconcile()["call_logs_retried"] == 0  # not due yet
    run_jobs(desk)
    assert new_case not in logged(desk)
    with travel(time.time() + CALL_LOG_SET_ASIDE_SECONDS + 1, tick=False):
        assert reconcile()["call_logs_retried"] == 1
        assert reconcile()["call_logs_retried"] == 0  # put back once
    run_jobs(desk)

    assert logged(desk) == {first: 1, new_case: 1}
    assert set_aside(desk) == {} and desk.r.zcard(CALLS_TO_LOG) == 0
    with desk.session_factory() as db:
        case = db.scalar(select(CallLog.case_number).where(CallLog.call_sid == new_case))
    assert case is not None and case != TOO_HIGH  # its new case, opened now
    assert log_call(new_case) == "exists"  # a stray re-run writes nothing more
    assert logged(desk) == {first: 1, new_case: 1}


def test_a_call_still_unwritable_is_tried_once_an_interval_and_its_state_kept(
        phone, desk, lakeview, caplog):
    """Left unfixed, the call is tried once when due, set aside again (a second error,
    counting), never in a loop; its state in Redis, near its day's end when it first
    failed, lives on with each try."""
    from workers.reconciler import reconcile

    add_case_numbered_too_high(desk)
    make_available(desk, "A7")
    [sid] = calls(phone, ["2"])
    desk.r.expire(keys.call(sid), 30)  # as if the call's state were nearly a day old
    run_jobs(desk)
    assert desk.r.ttl(keys.call(sid)) > 30  # kept for the next try
    assert desk.r.hget(keys.call(sid), "log_failures") == "1"

    later = time.time() + CALL_LOG_SET_ASIDE_SECONDS + 1
    with travel(later, tick=False):
        assert reconcile()["call_logs_retried"] == 1
        run_jobs(desk)
        assert set(set_aside(desk)) == {sid}
        assert set_aside(desk)[sid] == pytest.approx(later + CALL_LOG_SET_ASIDE_SECONDS)
        assert reconcile()["call_logs_retried"] == 0
    run_jobs(desk)
    assert desk.r.hget(keys.call(sid), "log_failures") == "2"  # two tries in all
    assert [("failure 2" in e) for e in errors_naming(caplog, sid)] == [False, True]
    assert logged(desk) == {}
    assert desk.r.zcard(CALLS_TO_LOG) == 0


def test_a_call_set_aside_and_queued_again_waits_for_its_try(phone, desk, lakeview):
    """A call set aside and queued again meanwhile (a repeated end) is not tried by the
    next job: it keeps its place among the calls set aside, tried when due."""
    add_case_numbered_too_high(desk)
    make_available(desk, "A7")
    [sid] = calls(phone, ["2"])
    run_jobs(desk)
    due = set_aside(desk)[sid]
    enqueue_call_log(desk.job_redis, sid)
    [other] = calls(phone, ["1 2024117#"])
    run_jobs(desk)
    assert logged(desk) == {other: 1}
    assert set_aside(desk) == {sid: due}  # not tried again
    assert desk.r.hget(keys.call(sid), "log_failures") == "1"
    assert desk.r.zcard(CALLS_TO_LOG) == 0


def test_data_the_database_refuses_sets_that_call_aside(phone, desk, lakeview, caplog,
                                                        database_backend):
    """Whatever the cause: a talk time no integer column holds (PostgreSQL: DataError,
    integer out of range; SQLite's driver: OverflowError) in one call's state."""
    make_available(desk, "A7")
    sids = calls(phone, ["1 2024117#", "1 2024117#", "1 2024117#"])
    desk.r.hset(keys.call(sids[1]), "talk_seconds", str(10**19))
    run_jobs(desk)
    assert logged(desk) == {sids[0]: 1, sids[2]: 1}
    assert set(set_aside(desk)) == {sids[1]}
    [error] = errors_naming(caplog, sids[1])
    assert ("DataError" if database_backend == "postgresql" else "OverflowError") in error


def test_the_database_down_sets_no_call_aside_and_every_call_waits(
        phone, desk, lakeview, database_backend):
    """The database unreachable is no call's fault, even with an unwritable call among
    them: the job fails for RQ's retry, every call still waiting, none set aside; back
    up, the retry writes every call it can and sets the other aside."""
    add_case_numbered_too_high(desk)
    make_available(desk, "A7")
    sids = calls(phone, ["1 2024117#", "2", "1 2024117#"])
    down = create_engine(
        f"postgresql+psycopg://caseline@127.0.0.1:{free_port()}/caseline"
        if database_backend == "postgresql" else "sqlite:////nonexistent/folder/caseline.db")
    context.configure(dataclasses.replace(desk, session_factory=sessionmaker(down)))
    run_jobs(desk)
    job = queue(Queues.CALL_LOGS, desk.job_redis).fetch_job(call_log_job_id(sids[0]))
    # Failed, tried again at once (RQ's first retry), failed again: due in a second.
    assert job.get_status() == "scheduled" and job.retries_left < CALL_LOG_RETRY.max
    assert set(desk.r.zrange(CALLS_TO_LOG, 0, -1)) == set(sids)
    assert set_aside(desk) == {}
    down.dispose()

    context.configure(desk)  # the database is back
    time.sleep(1.2)  # the first retry is due after a second
    worker = SimpleWorker(list(Queues.ALL), connection=desk.job_redis, serializer=SERIALIZER)
    worker.work(burst=True, with_scheduler=True)
    assert logged(desk) == {sids[0]: 1, sids[2]: 1}
    assert set(set_aside(desk)) == {sids[1]}
    assert desk.r.zcard(CALLS_TO_LOG) == 0


def waiting(desk) -> set[str]:
    """The calls still waiting for their log."""
    return set(desk.r.zrange(CALLS_TO_LOG, 0, -1))


def run_retry(desk) -> None:
    """Run the call-log job's retry RQ scheduled a second on (after its immediate one)."""
    time.sleep(1.2)
    worker = SimpleWorker(list(Queues.ALL), connection=desk.job_redis, serializer=SERIALIZER)
    worker.work(burst=True, with_scheduler=True)


def read_only(database_url: str, database_backend: str):
    """An engine on the test database that cannot write: PostgreSQL after a failover to a
    standby (every transaction read-only, SQLSTATE 25006), SQLite opened read-only."""
    if database_backend == "postgresql":
        return create_engine(database_url, connect_args={
            "options": "-c default_transaction_read_only=on"})
    path = database_url.removeprefix("sqlite:///")
    return create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")


def test_a_read_only_database_sets_no_call_aside_and_every_call_waits(
        phone, desk, lakeview, database_url, database_backend):
    """The database taking no write (PostgreSQL: `InternalError`, 25006; SQLite:
    `OperationalError`) is no call's fault: the job fails for RQ's retry, every call
    still waiting, none set aside; writable again, the retry writes them all."""
    make_available(desk, "A7")
    sids = calls(phone, ["1 2024117#", "2", "1 2024117#"])
    refusing = read_only(database_url, database_backend)
    context.configure(dataclasses.replace(desk, session_factory=sessionmaker(refusing)))
    try:
        run_jobs(desk)
    finally:
        refusing.dispose()
    job = queue(Queues.CALL_LOGS, desk.job_redis).fetch_job(call_log_job_id(sids[0]))
    assert job.get_status() == "scheduled" and job.retries_left < CALL_LOG_RETRY.max
    assert waiting(desk) == set(sids)
    assert set_aside(desk) == {}

    context.configure(desk)  # the primary is back
    run_retry(desk)
    assert logged(desk) == {sid: 1 for sid in sids}
    assert waiting(desk) == set() and set_aside(desk) == {}


def test_the_call_log_table_gone_sets_no_call_aside_and_every_call_waits(
        phone, desk, lakeview, engine):
    """A table missing (a migration not run, a permission revoked: PostgreSQL's
    `ProgrammingError`, SQLite's `OperationalError`) is no call's fault either."""
    from sqlalchemy import text

    make_available(desk, "A7")
    sids = calls(phone, ["1 2024117#", "1 2024117#"])
    with engine.begin() as db:
        db.execute(text("ALTER TABLE call_logs RENAME TO call_logs_away"))
    run_jobs(desk)
    assert waiting(desk) == set(sids)
    assert set_aside(desk) == {}
    with engine.begin() as db:
        db.execute(text("ALTER TABLE call_logs_away RENAME TO call_logs"))
    run_retry(desk)
    assert logged(desk) == {sid: 1 for sid in sids}


@pytest.mark.parametrize(("sqlstate", "own"), [
    ("22003", True),   # numeric_value_out_of_range: a value of the call's
    ("22P05", True),   # untranslatable_character
    ("23503", True),   # foreign_key_violation: the call names what is not there
    ("23505", True),   # unique_violation
    ("25006", False),  # read_only_sql_transaction: failed over to a standby
    ("25P03", False),  # idle_in_transaction_session_timeout
    ("42P01", False),  # undefined_table: a migration not run
    ("42501", False),  # insufficient_privilege: a grant revoked
    ("40001", False),  # serialization_failure
    ("57014", False),  # query_canceled: statement_timeout
    ("53300", False),  # too_many_connections
])
def test_only_data_and_constraint_errors_are_one_calls_own(sqlstate, own):
    """PostgreSQL's SQLSTATE classes 22 and 23 are one call's fault; any other class is
    the database's, whatever DB-API class psycopg gives it."""
    import psycopg
    from sqlalchemy.exc import DBAPIError

    from workers.set_aside import one_calls_fault

    orig = psycopg.errors.lookup(sqlstate)("refused")
    assert orig.sqlstate == sqlstate
    exc = DBAPIError.instance("INSERT INTO call_logs ...", {}, orig, psycopg.Error)
    assert one_calls_fault(exc) is own


def test_a_call_breaking_a_constraint_is_not_tried_again_at_each_level(
        phone, desk, lakeview, engine, caplog):
    """A call opening a case in a district the directory does not have (a foreign key the
    database refuses: `IntegrityError`, SQLSTATE class 23) is no conflict with another
    job: nothing is tried again unless a fresh read shows another writer logged some of
    the calls. Eight calls with it first cost four failed tries (8, 4, 2, then 1)."""
    from sqlalchemy import event

    make_available(desk, "A7")
    sids = calls(phone, ["2"] + ["1 2024117#"] * 7)
    desk.r.hset(keys.call(sids[0]), "district", "D999")
    refused: list[str] = []

    def count(context) -> None:
        refused.append(type(context.original_exception).__name__)

    event.listen(engine, "handle_error", count)
    try:
        run_jobs(desk)
    finally:
        event.remove(engine, "handle_error", count)
    assert logged(desk) == {sid: 1 for sid in sids[1:]}
    assert set(set_aside(desk)) == {sids[0]}
    [error] = errors_naming(caplog, sids[0])
    assert "IntegrityError" in error
    assert len(refused) == 4


def test_a_bad_call_first_and_slow_to_fail_holds_no_call_back_under_a_tight_deadline(
        phone, desk, lakeview, monkeypatch):
    """The bad call the oldest, every try that holds it slow to fail (0.6 s), a job's
    time (0.1 s) and RQ's timeout (2 s) both shorter than the whole split: each job takes
    the split one step on from where the last one stopped and hands over; the good calls
    are all written, the bad one set aside, and no job fails or times out."""
    import rq

    from routing.cases import cases_for_calls
    from workers import call_log

    monkeypatch.setattr(rq.Queue, "DEFAULT_TIMEOUT", 2)  # for the jobs queued from now
    add_case_numbered_too_high(desk)
    make_available(desk, "A7")
    sids = calls(phone, ["2"] + ["1 2024117#"] * 15)
    bad = sids[0]

    def slow_to_refuse(db, batch, now):
        if bad in batch:
            time.sleep(0.6)
        return cases_for_calls(db, batch, now)

    monkeypatch.setattr(call_log, "cases_for_calls", slow_to_refuse)
    monkeypatch.setattr(call_log, "LOG_CALLS_SECONDS", 0.1)
    run_jobs(desk)
    assert logged(desk) == {sid: 1 for sid in sids[1:]}
    assert set(set_aside(desk)) == {bad}
    assert waiting(desk) == set()
    logs = queue(Queues.CALL_LOGS, desk.job_redis)
    assert logs.failed_job_registry.count == 0 and logs.scheduled_job_registry.count == 0
    assert len(logs.finished_job_registry) > 2  # handed over, split and all
    assert desk.r.get(CALL_LOGS_SPLIT) is None  # whole batches again


def test_a_split_renews_the_jobs_mark_before_each_try(phone, desk, lakeview, monkeypatch):
    """However long each try of a split takes, the mark that a job is at work is renewed
    before the next, so no second job is queued to take the same calls meanwhile."""
    from routing.cases import cases_for_calls
    from workers import call_log

    add_case_numbered_too_high(desk)
    make_available(desk, "A7")
    calls(phone, ["2"] + ["1 2024117#"] * 7)
    seen: list[int] = []

    def nearly_lapsing(db, batch, now):
        seen.append(desk.r.ttl(CALL_LOGS_QUEUED))
        desk.r.expire(CALL_LOGS_QUEUED, 1)  # as if this try took most of the minute
        return cases_for_calls(db, batch, now)

    monkeypatch.setattr(call_log, "cases_for_calls", nearly_lapsing)
    run_jobs(desk)
    assert len(seen) == 7  # 8, 4, 2 and 1 failing; then 1, 2 and 4 written
    assert min(seen) > 30

def test_nothing_set_aside_costs_the_job_no_redis_command_per_call(phone, desk, lakeview):
    """With no call set aside, the job's Redis commands beyond one HGETALL per call (its
    state) do not grow with the batch: it looks at the calls set aside once per batch,
    not once per call."""
    from workers.call_log import log_calls

    make_available(desk, "A7")

    def commands_writing(n: int) -> dict[str, int]:
        calls(phone, ["1 2024117#"] * n)
        desk.r.config_resetstat()
        log_calls()
        return {name: stats["calls"] for name, stats in desk.r.info("commandstats").items()}

    commands_writing(1)  # scripts loaded, the contact's activity moved
    few, many = commands_writing(2), commands_writing(12)
    assert many.pop("cmdstat_hgetall") - few.pop("cmdstat_hgetall") == 10
    assert many == few

def test_two_jobs_setting_one_call_aside_count_and_name_it_once(phone, desk, lakeview, caplog):
    """Two workers split the same batch (a job's mark lapsed): both isolate the bad call.
    It is set aside once: one failure counted, one error."""
    from workers.call_log import write_or_set_aside

    add_case_numbered_too_high(desk)
    make_available(desk, "A7")
    sids = calls(phone, ["1 2024117#", "2"])
    assert write_or_set_aside(desk, sids) == {sids[0]: "written", sids[1]: "set-aside"}
    assert write_or_set_aside(desk, sids) == {sids[0]: "exists", sids[1]: "set-aside"}
    assert desk.r.hget(keys.call(sids[1]), "log_failures") == "1"
    assert len(errors_naming(caplog, sids[1])) == 1


def test_a_call_whose_state_expires_as_it_fails_is_not_brought_back(
        phone, desk, lakeview, monkeypatch):
    """The call's state expires between the job's read and its failure: it is set aside
    (its next try finds nothing to log), and no hash is made again for it holding only
    the failure count."""
    from routing.cases import cases_for_calls
    from workers import call_log

    add_case_numbered_too_high(desk)
    make_available(desk, "A7")
    [sid] = calls(phone, ["2"])

    def expiring(db, batch, now):
        desk.r.delete(keys.call(sid))
        return cases_for_calls(db, batch, now)

    monkeypatch.setattr(call_log, "cases_for_calls", expiring)
    run_jobs(desk)
    assert set(set_aside(desk)) == {sid}
    assert not desk.r.exists(keys.call(sid))


def test_a_call_with_no_state_left_is_named_once_however_deep_the_split(
        phone, desk, lakeview, caplog):
    """A call whose state is gone, beside a bad call: the split reads it at every level,
    and names it once, when its part is written."""
    add_case_numbered_too_high(desk)
    make_available(desk, "A7")
    sids = calls(phone, ["2", "1 2024117#", "1 2024117#", "1 2024117#"])
    desk.r.delete(keys.call(sids[1]))
    run_jobs(desk)
    assert len([e for e in errors_naming(caplog, sids[1]) if "no call left" in e]) == 1
    assert logged(desk) == {sids[2]: 1, sids[3]: 1}
    assert waiting(desk) == set()
