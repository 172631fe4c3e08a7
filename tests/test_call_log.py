"""Call logs: one per call, on its case, through duplicates and database outages."""

from __future__ import annotations

import dataclasses
import time

import pytest
from rq import SimpleWorker
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from tests.conftest import make_available, run_jobs
from workers import context
from workers.queues import Queues

PAT = "+16125550101"


@pytest.fixture
def lakeview(directory):
    directory.district()
    directory.contact()
    directory.advisor("A7", ["general"], phone="+16515550199")
    directory.case("2024117", owner="A7")
    directory.load()


def logs_on(desk, number: str) -> list:
    from routing.call_log import calls_on_case

    return calls_on_case(desk.session_factory, number)


def test_log_waits_out_a_database_outage(phone, desk, lakeview, tmp_path):
    make_available(desk, "A7")
    down = create_engine(f"sqlite:///{tmp_path}/no-such-dir/caseline.db")
    context.configure(dataclasses.replace(desk, session_factory=sessionmaker(down)))
    result = phone.call(PAT, "1 2024117#")
    assert result.outcome == "advisor"  # the caller never noticed: no SQL on the hot path
    run_jobs(desk)  # the job fails against the missing database and is scheduled to retry
    assert logs_on(desk, "2024117") == []

    context.configure(desk)  # the database is back
    time.sleep(1.2)  # the first retry is due after a second
    worker = SimpleWorker(list(Queues.ALL), connection=desk.job_redis)
    worker.work(burst=True, with_scheduler=True)
    logs = logs_on(desk, "2024117")
    assert [log["call_sid"] for log in logs] == [result.call_sid]


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
