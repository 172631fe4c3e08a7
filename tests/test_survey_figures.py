"""The survey's 30-day figure (`survey_overall_satisfied_30d` in `/api/stats`, the
advisor's own on the console) after Redis loses its counts: a restart, a failover
without the latest writes, a flush. The call logs hold every answer; the figure is
theirs, whatever Redis remembers. Calls placed with the Twilio-side driver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from config.hours import CENTRAL
from directory import keys
from directory.models import CallLog
from routing import survey
from tests.conftest import API_TOKEN, make_available, run_jobs
from tests.test_call_log_late import bridged, dial_over, path_of, status
from tests.webhooks import post

# The figure is read from the call logs: both databases.
pytestmark = pytest.mark.databases

API = {"Authorization": f"Bearer {API_TOKEN}"}
CONTACTS = {"5001": "+16125550101", "5002": "+16125550102", "5003": "+16125550103",
            "5004": "+16125550104"}


@pytest.fixture
def lakeview(directory):
    directory.district()
    for contact, phone in CONTACTS.items():
        directory.contact(contact, phone=phone)
    directory.advisor("A7", ["general"], phone="+16515550199")
    directory.case("2024117", owner="A7")
    directory.load()


def _surveyed(phone, desk, contact: str, overall: str) -> None:
    """A contact's call answered by A7, who hangs up first; the contact answers all
    five questions, "overall" with `overall`."""
    make_available(desk, "A7")
    result = phone.call(CONTACTS[contact], f"1 2024117# 5 5 5 5 {overall}",
                        bridged_hangup="advisor")
    assert result.answered_by and "Thank you for your answers" in result.heard()[-1]


def _redis_loses_the_survey_counts(r) -> None:
    """What a failover without the latest writes does to the figures: every survey
    count gone, the calls' state kept."""
    for key in r.scan_iter(f"{keys.PREFIX}:survey:overall*"):
        r.delete(key)


def _figure(client) -> float | None:
    return client.get("/api/stats", headers=API).get_json()["general"][
        "survey_overall_satisfied_30d"]


def test_after_a_redis_restart_the_figure_is_the_call_logs(phone, desk, lakeview, client, r):
    """Three surveyed calls, "overall" 5, 3 and 4; Redis restarts empty. The figure
    is still 2 of 3, and 3 of 4 after one more answer of 5 (not null, then 1.0)."""
    for contact, overall in (("5001", "5"), ("5002", "3"), ("5003", "4")):
        _surveyed(phone, desk, contact, overall)
    run_jobs(desk)
    assert _figure(client) == 0.6667
    r.flushdb()  # a restart without persistence
    assert _figure(client) == 0.6667
    assert survey.advisor_satisfaction(desk, "A7", datetime.now(UTC)) == {
        "overall_satisfied_30d": 0.6667, "answers": 3, "target": 0.95}
    # A7 comes back offline after the restart and signs in.
    assert client.put("/api/advisors/A7/status", json={"status": "available"},
                      headers=API).status_code == 200
    _surveyed(phone, desk, "5004", "5")
    assert _figure(client) == 0.75
    run_jobs(desk)
    assert _figure(client) == 0.75
    assert survey.advisor_satisfaction(desk, "A7", datetime.now(UTC))["answers"] == 4


def test_an_answer_not_yet_logged_counts_once_with_those_read_back(
        phone, desk, lakeview, client, r):
    """Redis loses the counts; an answer comes before its call's log is written, the
    logs are read back, then the log lands and the days are read again: each call's
    answer counts once."""
    _surveyed(phone, desk, "5001", "5")
    _surveyed(phone, desk, "5002", "3")
    run_jobs(desk)
    _redis_loses_the_survey_counts(r)
    _surveyed(phone, desk, "5003", "4")  # its log not written yet
    assert _figure(client) == 0.6667
    run_jobs(desk)
    assert _figure(client) == 0.6667
    _redis_loses_the_survey_counts(r)  # again, with every log written
    assert _figure(client) == 0.6667
    assert survey.advisor_satisfaction(desk, "A7", datetime.now(UTC))["answers"] == 3


def test_the_last_key_after_the_log_counts_once_when_the_counts_were_lost(
        phone, desk, lakeview, client, r):
    """Pat presses "overall" as they hang up: the status callback and the log come
    first, and Redis lost its counts in between. Pat's late answer joins the answers
    the logs hold, once however often Twilio posts it."""
    _surveyed(phone, desk, "5002", "5")
    _surveyed(phone, desk, "5003", "2")
    run_jobs(desk)
    make_available(desk, "A7")
    dial, leg = bridged(client, "CA-sv")
    ask = dial_over(client, dial, "CA-sv", leg, caller="in-progress").find("Gather")
    for key in "5432":
        ask = post(client, path_of(ask.get("action", "")), {"CallSid": "CA-sv",
                                                            "Digits": key}).find("Gather")
    status(client, "CA-sv", seconds=200)
    run_jobs(desk)
    _redis_loses_the_survey_counts(r)
    last = {"CallSid": "CA-sv", "Digits": "4", "CallStatus": "completed"}
    post(client, path_of(ask.get("action", "")), last, token="tok-4")
    post(client, path_of(ask.get("action", "")), last, token="tok-4-again")
    assert _figure(client) == 0.6667
    run_jobs(desk)
    _redis_loses_the_survey_counts(r)
    assert _figure(client) == 0.6667


def _logged_answer(desk, sid: str, overall: int, offered: datetime,
                   started: datetime | None = None) -> None:
    """A call's log with a survey answered, offered at `offered`."""
    with desk.session_factory() as db, db.begin():
        db.add(CallLog(call_sid=sid, case_number="2024117", caller="+16125550101",
                       contact_id="5001", district_id="D100", menu_path="1>2024117",
                       status="answered", answered_by="A7", team="general",
                       started_at=started or offered - timedelta(minutes=5),
                       details={"survey_offered": True,
                                "survey_offered_at": int(offered.timestamp() * 1000),
                                "survey": {"overall": overall}}))


def test_the_30_days_read_back_are_central_dates_of_the_offer(desk, lakeview, client):
    """Read back from the logs, an answer counts on the Central date its survey was
    offered: today and the 29 dates before. Offered at 00:10 on October 16, 29 days
    before November 14, its call began on the 15th: counted; one offered at 23:50 on
    October 15 is not."""
    _logged_answer(desk, "CA-in", 5, datetime(2026, 10, 16, 0, 10, tzinfo=CENTRAL),
                   started=datetime(2026, 10, 15, 23, 50, tzinfo=CENTRAL))
    _logged_answer(desk, "CA-out", 1, datetime(2026, 10, 15, 23, 50, tzinfo=CENTRAL))
    _logged_answer(desk, "CA-today", 2, datetime(2026, 11, 14, 8, 0, tzinfo=CENTRAL))
    with time_machine.travel(datetime(2026, 11, 14, 9, 0, tzinfo=CENTRAL), tick=False):
        assert _figure(client) == 0.5


def test_a_day_read_back_is_not_read_again_but_today_is_read_again_soon(
        desk, lakeview, client, r):
    """The logs of a day are read once (a day with no answer too), not at each poll of
    the wallboard; today's and yesterday's again after a few minutes, so an answer
    Redis lost in a failover after they were read comes back."""
    start = datetime(2026, 11, 14, 9, 0, tzinfo=CENTRAL)
    _logged_answer(desk, "CA-a", 5, start - timedelta(days=3))
    with time_machine.travel(start, tick=False):
        assert _figure(client) == 1.0
    _logged_answer(desk, "CA-b", 1, start - timedelta(days=5))  # a day read already
    _logged_answer(desk, "CA-c", 1, start - timedelta(minutes=30))  # lost by Redis
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        assert _figure(client) == 1.0
    with time_machine.travel(start + timedelta(minutes=11), tick=False):
        assert _figure(client) == 0.5
