"""The satisfaction survey (the desk's policy: five areas, at most once per contact
every 30 days, an opt-out, a target above 95%), asked on the phone when the advisor
hangs up first. Calls placed with the Twilio-side driver, as Twilio would walk them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from config.hours import CENTRAL
from directory import keys
from directory.models import CallLog
from tests.conftest import API_TOKEN, make_available, run_jobs

# The answers are written on the call's log, the 30-day rule read from it: both databases.
pytestmark = pytest.mark.databases

PAT = "+16125550101"
API = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def lakeview(directory):
    directory.district()
    directory.contact()
    directory.advisor("A7", ["general"], phone="+16515550199")
    directory.case("2024117", owner="A7")
    directory.load()


def _earlier_call(desk, details: dict, days_ago: int = 0,
                  started_at: datetime | None = None) -> None:
    """A call of Pat's logged, started `days_ago` days ago (or at `started_at`), with
    these details."""
    with desk.session_factory() as db, db.begin():
        db.add(CallLog(call_sid=f"CA-old-{days_ago}", case_number="2024117", caller=PAT,
                       contact_id="5001", district_id="D100", menu_path="1>2024117",
                       status="answered", details=details,
                       started_at=started_at or datetime.now(UTC) - timedelta(days=days_ago)))


def _thirty_days_pass(r) -> None:
    """What 30 days do to Redis: every survey hold with an expiry is gone."""
    for key in r.scan_iter(keys.survey_hold("*")):
        if r.ttl(key) > 0:
            r.delete(key)


def _time_passes(r, since_set: timedelta) -> None:
    """What `since_set` (time since the holds were set) does to Redis: every survey
    hold that would have expired by then is gone."""
    for key in r.scan_iter(keys.survey_hold("*")):
        if 0 < r.ttl(key) <= since_set.total_seconds():
            r.delete(key)


def _asked(result) -> bool:
    return any("five quick questions" in text for text in result.heard())


def test_after_the_advisor_hangs_up_pat_answers_and_it_is_on_the_log(
        phone, desk, lakeview, client):
    make_available(desk, "A7")
    result = phone.call(PAT, "1 2024117# 5 4 # 5 5", bridged_hangup="advisor")
    assert result.answered_by and _asked(result)
    assert "Thank you for your answers" in result.heard()[-1]
    run_jobs(desk)
    [log] = client.get("/api/cases/2024117/calls", headers=API).get_json()
    # The third question (timeliness) was skipped with #.
    assert log["survey"] == {"courtesy": 5, "knowledge": 4, "quality": 5, "overall": 5}
    general = client.get("/api/stats", headers=API).get_json()["general"]
    assert (general["survey_overall_satisfied_30d"], general["survey_target"]) == (1.0, 0.95)


def test_no_survey_for_a_contact_surveyed_ten_days_ago(phone, desk, lakeview):
    _earlier_call(desk, {"survey_offered": True, "survey": {"overall": 5}}, days_ago=10)
    make_available(desk, "A7")
    result = phone.call(PAT, "1 2024117#", bridged_hangup="advisor")
    assert result.answered_by and not _asked(result)


def test_a_survey_of_last_month_does_not_stop_this_one(phone, desk, lakeview):
    _earlier_call(desk, {"survey_offered": True}, days_ago=31)
    make_available(desk, "A7")
    result = phone.call(PAT, "1 2024117# # # # # #", bridged_hangup="advisor")
    assert _asked(result)


def test_the_30_days_are_central_dates_not_30_times_24_hours(phone, desk, lakeview, r):
    """Every date rule of the desk counts Central dates (PRODUCT.md): Pat, surveyed on
    October 14 at 17:00, is not asked again on November 12 (the 29th date after) but
    is on November 13 at 09:00, 29 days and 17 hours later."""
    offered = datetime(2026, 10, 14, 17, 0, tzinfo=CENTRAL)  # a Wednesday
    with time_machine.travel(offered, tick=True):
        make_available(desk, "A7")
        assert _asked(phone.call(PAT, "1 2024117# # # # # #", bridged_hangup="advisor"))
        run_jobs(desk)  # on the call log too, for when Redis no longer holds it
    for moment, asked in ((datetime(2026, 11, 12, 17, 30, tzinfo=CENTRAL), False),
                          (datetime(2026, 11, 13, 9, 0, tzinfo=CENTRAL), True)):
        with time_machine.travel(moment, tick=True):
            _time_passes(r, moment - offered)
            make_available(desk, "A7")
            result = phone.call(PAT, "1 2024117# # # # # #", bridged_hangup="advisor")
            assert result.answered_by and _asked(result) == asked, moment


def test_a_survey_is_dated_by_its_offer_not_by_the_start_of_its_call(phone, desk, lakeview, r):
    """An outage call answered at night began at 23:50 on October 13; the advisor hung
    up and Pat was surveyed at 00:10 on the 14th. The 30 days run from the 14th: with
    Redis's hold gone (emptied, or a failover), the call log still keeps Pat from
    being asked on November 12, and Pat is asked on the 13th."""
    offered = datetime(2026, 10, 14, 0, 10, tzinfo=CENTRAL)
    _earlier_call(desk, {"survey_offered": True,
                         "survey_offered_at": int(offered.timestamp() * 1000)},
                  started_at=datetime(2026, 10, 13, 23, 50, tzinfo=CENTRAL))
    for moment, asked in ((datetime(2026, 11, 12, 10, 0, tzinfo=CENTRAL), False),
                          (datetime(2026, 11, 13, 10, 0, tzinfo=CENTRAL), True)):
        with time_machine.travel(moment, tick=True):
            r.delete(keys.survey_hold("5001"))
            make_available(desk, "A7")
            result = phone.call(PAT, "1 2024117# # # # # #", bridged_hangup="advisor")
            assert result.answered_by and _asked(result) == asked, moment


def test_the_call_log_keeps_when_the_survey_was_offered(phone, desk, lakeview):
    make_available(desk, "A7")
    assert _asked(phone.call(PAT, "1 2024117# # # # # #", bridged_hangup="advisor"))
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.query(CallLog).all()
    offered = datetime.fromtimestamp(log.details["survey_offered_at"] / 1000, tz=UTC)
    started = log.started_at.replace(tzinfo=UTC) if log.started_at.tzinfo is None \
        else log.started_at
    assert started <= offered <= datetime.now(UTC)


def test_no_survey_for_a_contact_who_opted_out_and_9_opts_out(phone, desk, lakeview):
    make_available(desk, "A7")
    first = phone.call(PAT, "1 2024117# 9", bridged_hangup="advisor")
    assert _asked(first) and "not be asked again" in first.heard()[-1]
    run_jobs(desk)
    # Long after the 30 days, still nothing: the opt-out is for good.
    with desk.session_factory() as db, db.begin():
        for log in db.query(CallLog):
            log.started_at = datetime.now(UTC) - timedelta(days=90)
    _thirty_days_pass(desk.r)
    make_available(desk, "A7")
    again = phone.call(PAT, "1 2024117#", bridged_hangup="advisor")
    assert again.answered_by and not _asked(again)


def test_no_survey_when_the_caller_hangs_up_first(phone, desk, lakeview, client):
    make_available(desk, "A7")
    result = phone.call(PAT, "1 2024117#", bridged_hangup="caller")
    assert result.answered_by and not _asked(result)
    run_jobs(desk)
    # Not even counted as offered: their 30 days have not started.
    [log] = client.get("/api/cases/2024117/calls", headers=API).get_json()
    assert log["survey"] is None and "survey_offered" not in log["details"]


def test_surveyed_on_a_call_not_yet_logged_pat_is_not_asked_on_the_next(phone, desk, lakeview):
    # The call log lands a second or two after the call; Pat calls straight back.
    make_available(desk, "A7")
    first = phone.call(PAT, "1 2024117# 5 5 5 5 5", bridged_hangup="advisor")
    assert _asked(first)
    make_available(desk, "A7")
    again = phone.call(PAT, "1 2024117#", bridged_hangup="advisor")
    assert again.answered_by and not _asked(again)


def test_an_opt_out_holds_before_its_call_is_logged_and_for_good(phone, desk, lakeview, r):
    make_available(desk, "A7")
    first = phone.call(PAT, "1 2024117# 9", bridged_hangup="advisor")
    assert "not be asked again" in first.heard()[-1]
    make_available(desk, "A7")
    again = phone.call(PAT, "1 2024117#", bridged_hangup="advisor")
    assert again.answered_by and not _asked(again)
    # Months later, with the call logs out of reach, still nothing.
    _thirty_days_pass(r)
    with desk.session_factory() as db, db.begin():
        db.query(CallLog).delete()
    make_available(desk, "A7")
    assert not _asked(phone.call(PAT, "1 2024117#", bridged_hangup="advisor"))


@pytest.mark.parametrize("details, days_ago", [
    ({"survey_offered": True}, 10),  # surveyed lately
    ({"survey_offered": True, "survey_opt_out": True}, 200),  # opted out long ago
])
def test_what_the_logs_said_holds_for_the_next_calls(phone, desk, lakeview, details, days_ago):
    """The call logs are read once for a contact surveyed lately or opted out, not on
    every call: with that earlier log gone, no survey still."""
    _earlier_call(desk, details, days_ago=days_ago)
    make_available(desk, "A7")
    assert not _asked(phone.call(PAT, "1 2024117#", bridged_hangup="advisor"))
    with desk.session_factory() as db, db.begin():
        db.query(CallLog).delete()
    make_available(desk, "A7")
    assert not _asked(phone.call(PAT, "1 2024117#", bridged_hangup="advisor"))


def test_when_redis_loses_the_hold_the_logs_still_keep_the_30_days(phone, desk, lakeview, r):
    make_available(desk, "A7")
    assert _asked(phone.call(PAT, "1 2024117# # # # # #", bridged_hangup="advisor"))
    run_jobs(desk)
    r.delete(keys.survey_hold("5001"))  # Redis emptied, or a failover that lost it
    make_available(desk, "A7")
    again = phone.call(PAT, "1 2024117#", bridged_hangup="advisor")
    assert again.answered_by and not _asked(again)


class _FirstAttemptLost:
    """A test client whose first attempt at each `<Dial>` action reaches the line and
    acts, but whose reply never reaches Twilio nor is kept (the web process was killed
    before it answered): Twilio repeats it at once, same idempotency token."""

    def __init__(self, client, r) -> None:
        self.client, self.r = client, r

    def open(self, path, **kwargs):
        if path == "/voice/dial-result":
            self.client.open(path, **kwargs).close()
            token = f"{kwargs['data']['CallSid']}:{kwargs['headers']['I-Twilio-Idempotency-Token']}"
            self.r.delete(keys.webhook_reply(token))  # died before keeping its reply
        return self.client.open(path, **kwargs)


def test_a_dial_action_repeated_after_a_lost_first_attempt_still_asks_the_survey(
        phone, desk, lakeview, client, r):
    """The repeat is handled anew: it must answer as the first did (the survey), not
    hang up on Pat while the first attempt's hold starts their 30 days."""
    from tests.conftest import AUTH_TOKEN, BASE_URL
    from twilio_side import FlaskTransport

    make_available(desk, "A7")
    caller = phone.caller(PAT, "1 2024117# 5 4 5 4 5", bridged_hangup="advisor")
    caller.transport = FlaskTransport(_FirstAttemptLost(phone.app.test_client(), r), BASE_URL,
                                      auth_token=AUTH_TOKEN)
    result = caller.run()
    assert result.answered_by and _asked(result)
    run_jobs(desk)
    [log] = client.get("/api/cases/2024117/calls", headers=API).get_json()
    assert log["survey"] == {"courtesy": 5, "knowledge": 4, "timeliness": 5, "quality": 4,
                             "overall": 5}


def _heard_after_the_talk(result) -> list[str]:
    """What the caller heard (spoken or played) once bridged to whoever answered."""
    bridged = max(i for i, event in enumerate(result.transcript)
                  if event.kind == "connect" and event.party == "caller")
    return [event.text for event in result.transcript[bridged + 1:]
            if event.kind in ("say", "play") and event.party == "caller"]


@pytest.mark.parametrize("details", [{"survey_offered": True},
                                     {"survey_offered": True, "survey_opt_out": True}],
                         ids=["surveyed-lately", "opted-out"])
def test_a_contact_not_eligible_hears_nothing_more_when_the_advisor_hangs_up(
        phone, desk, lakeview, details):
    """PRODUCT.md: a caller who is not eligible "hears nothing more": no goodbye."""
    _earlier_call(desk, details, days_ago=10)
    make_available(desk, "A7")
    result = phone.call(PAT, "1 2024117#", bridged_hangup="advisor")
    assert result.answered_by == "+16515550199"
    assert _heard_after_the_talk(result) == []


def test_an_eligible_contact_still_hears_the_survey_and_its_thanks(phone, desk, lakeview):
    make_available(desk, "A7")
    result = phone.call(PAT, "1 2024117# 5 5 5 5 5", bridged_hangup="advisor")
    after = _heard_after_the_talk(result)
    assert _asked(result) and len(after) >= 6  # the intro, five questions, the thanks


def test_an_unverified_outage_reporter_hears_nothing_more_when_the_advisor_hangs_up(
        phone, directory):
    """An outage reported on an exception basis (an unknown number, in business hours)
    is answered; the reporter is no verified contact, so no survey, and nothing more."""
    directory.district()
    directory.contact()
    directory.advisor("A7", ["hosting"], phone="+16515550199")
    directory.load()
    make_available(directory.desk, "A7")
    result = phone.call("+16125559876", "8", bridged_hangup="advisor")
    assert result.answered_by == "+16515550199"
    assert _heard_after_the_talk(result) == []
