"""Webhooks Twilio posts after a call's status callback: the `<Dial>` action of an
answered call, the on-call engineer's ring at night, the contact's end of a callback,
the survey's last key. The call's log is written soon after the status callback;
what these bring lands on that same log, once, whatever the order, however often
Twilio repeats them, and the day's figures read the same as the log. Driven as Twilio
does (signed posts), jobs run for real."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from directory import keys
from directory.models import CallLog
from jobs.queues import CALLS_TO_LOG
from tests.conftest import API_TOKEN, BASE_URL, make_available, run_jobs
from tests.test_real_world import PAT
from tests.webhooks import post

# What these tests check is written on the call logs: both databases.
pytestmark = pytest.mark.databases

API = {"Authorization": f"Bearer {API_TOKEN}"}
LINE = "+18005550100"
ONCALL = "+16125550999"
NIGHT = datetime(2026, 11, 24, 23, 30, tzinfo=ZoneInfo("America/Chicago"))


@pytest.fixture
def settings(settings):
    return settings.with_changes(oncall_number=ONCALL)


def path_of(url: str) -> str:
    return url.removeprefix(BASE_URL)


def logs(desk) -> list[CallLog]:
    """Every call-log row, as the database holds them."""
    with desk.session_factory() as db:
        return list(db.scalars(select(CallLog).order_by(CallLog.id)))


def bridged(client, sid: str) -> tuple[ET.Element, str]:
    """Pat calls about case 2024117; A7 is rung, hears the whisper and accepts. The
    `<Dial>` (its action is the end of the ring) and A7's leg."""
    post(client, "/voice/incoming", {"CallSid": sid, "From": PAT, "To": LINE,
                                     "StirVerstat": "TN-Validation-Passed-A"})
    post(client, "/voice/menu", {"CallSid": sid, "Digits": "1"})
    dial = post(client, "/voice/case", {"CallSid": sid, "Digits": "2024117"}).find("Dial")
    assert dial is not None
    number = dial.find("Number")
    assert number is not None
    leg = "CL" + uuid.uuid4().hex[:32]
    form = {"CallSid": leg, "ParentCallSid": sid, "CallStatus": "in-progress",
            "Direction": "outbound-dial", "To": number.text or ""}
    accept = post(client, path_of(number.get("url", "")), form).find("Gather")
    assert accept is not None
    post(client, path_of(accept.get("action", "")), {**form, "Digits": "1"})
    return dial, leg


def status(client, sid: str, seconds: int = 120, token: str | None = None) -> None:
    post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                   "CallDuration": str(seconds), "From": PAT}, token)


def dial_over(client, dial: ET.Element, sid: str, leg: str, caller: str = "completed",
              talk: int = 95, token: str | None = None) -> ET.Element:
    """The `<Dial>`'s action: A7 answered and talked `talk` s; `caller` is the caller's
    own CallStatus (in-progress: still on the line)."""
    return post(client, path_of(dial.get("action", "")), {
        "CallSid": sid, "CallStatus": caller, "DialCallStatus": "completed",
        "DialCallDuration": str(talk), "DialCallSid": leg}, token)


# --- the talk, when the status callback beats the <Dial> action ---------------


def test_the_talk_reaches_the_log_when_the_status_callback_beats_the_dial_action(
        desk, lakeview, client):
    make_available(desk, "A7")
    dial, leg = bridged(client, "CA-talk")
    status(client, "CA-talk")
    run_jobs(desk)  # the log is written before the action comes
    dial_over(client, dial, "CA-talk", leg)
    run_jobs(desk)
    [log] = client.get("/api/cases/2024117/calls", headers=API).get_json()
    assert (log["status"], log["answered_by"], log["talk_seconds"]) == ("answered", "A7", 95)
    assert log["advisors_tried"] == ["A7"] and log["menu_path"] == "1>2024117"


def test_a_late_action_repeated_leaves_one_log_and_one_answered_call(
        desk, lakeview, client):
    """Twilio repeats the late action (same token, then a fresh one) and the status
    callback, before and after the jobs run: one row, right, counted once, and nothing
    left waiting."""
    make_available(desk, "A7")
    dial, leg = bridged(client, "CA-rep")
    status(client, "CA-rep")
    run_jobs(desk)
    dial_over(client, dial, "CA-rep", leg, token="tok-1")
    dial_over(client, dial, "CA-rep", leg, token="tok-1")
    run_jobs(desk)
    dial_over(client, dial, "CA-rep", leg)
    status(client, "CA-rep")  # and the status callback again
    run_jobs(desk)
    [log] = logs(desk)
    assert (log.call_sid, log.status, log.answered_by, log.talk_seconds) == (
        "CA-rep", "answered", "A7", 95)
    assert desk.r.zcard(CALLS_TO_LOG) == 0
    general = client.get("/api/stats", headers=API).get_json()["general"]
    assert general["answered"] == 1


def test_a_late_action_while_the_log_is_being_written_still_reaches_it(
        desk, lakeview, client, monkeypatch):
    """The action lands after the log job read the call and before it committed: the
    job leaves the call among the calls to log, and the next batch brings the talk."""
    from routing.cases import cases_for_calls
    from workers import call_log

    make_available(desk, "A7")
    dial, leg = bridged(client, "CA-race")
    status(client, "CA-race")
    posted = []

    def action_meanwhile(db, batch, now):
        if not posted:
            posted.append(dial_over(client, dial, "CA-race", leg))
        return cases_for_calls(db, batch, now)

    monkeypatch.setattr(call_log, "cases_for_calls", action_meanwhile)
    run_jobs(desk)
    assert posted
    [log] = logs(desk)
    assert (log.status, log.answered_by, log.talk_seconds) == ("answered", "A7", 95)
    assert desk.r.zcard(CALLS_TO_LOG) == 0


def test_a_late_action_after_the_calls_state_is_gone_leaves_the_log_as_it_is(
        desk, lakeview, client):
    """The call's hash expired (or Redis lost it) before the action came: the action
    still gets valid TwiML, and the log written keeps what it knew, alone."""
    make_available(desk, "A7")
    dial, leg = bridged(client, "CA-gone")
    status(client, "CA-gone")
    run_jobs(desk)
    desk.r.delete(keys.call("CA-gone"))
    doc = dial_over(client, dial, "CA-gone", leg)
    assert doc.tag == "Response"
    run_jobs(desk)
    [log] = logs(desk)
    assert (log.status, log.answered_by, log.talk_seconds) == ("answered", "A7", None)
    assert log.menu_path == "1>2024117"


def test_a_state_made_anew_after_redis_lost_the_call_never_erases_its_log(
        desk, lakeview, client):
    """Redis lost the call (its hash and its end), then Twilio repeats the status
    callback: the end opens a new hash with only what Twilio posted, which is not the
    state the log was written from, so the log keeps the answer, the talk and the path."""
    make_available(desk, "A7")
    dial, leg = bridged(client, "CA-lost")
    dial_over(client, dial, "CA-lost", leg, caller="completed")
    status(client, "CA-lost")
    run_jobs(desk)
    desk.r.delete(keys.call("CA-lost"), keys.call_ended("CA-lost"))
    status(client, "CA-lost")
    dial_over(client, dial, "CA-lost", leg, talk=3)  # and a late repeat on the new hash
    run_jobs(desk)
    [log] = logs(desk)
    assert (log.status, log.answered_by, log.talk_seconds) == ("answered", "A7", 95)
    assert (log.menu_path, log.advisors_tried, log.case_number) == ("1>2024117", ["A7"],
                                                                    "2024117")


# --- the on-call engineer at night --------------------------------------------


def test_a_night_outage_the_oncall_engineer_took_is_logged_answered(desk, lakeview, client):
    with time_machine.travel(NIGHT, tick=True):
        post(client, "/voice/incoming", {"CallSid": "CA-night", "From": PAT, "To": LINE,
                                         "StirVerstat": "TN-Validation-Passed-A"})
        dial = post(client, "/voice/menu", {"CallSid": "CA-night", "Digits": "8"}).find("Dial")
        assert dial is not None and [n.text for n in dial.iter("Number")] == [ONCALL]
        # Pat hangs up after talking: the status callback is handled first.
        status(client, "CA-night", seconds=300)
        run_jobs(desk)
        post(client, path_of(dial.get("action", "")), {
            "CallSid": "CA-night", "CallStatus": "completed", "DialCallStatus": "completed",
            "DialCallDuration": "280", "DialBridged": "true"})
        run_jobs(desk)
        [log] = logs(desk)
        assert (log.status, log.answered_by, log.talk_seconds) == ("answered", "on-call", 280)
        assert log.outage and log.team == "hosting" and log.case_number
        hosting = client.get("/api/stats", headers=API).get_json()["hosting"]
        assert (hosting["answered"], hosting["calls"]) == (1, 1)


# --- a callback whose advisor's leg ends before the contact's <Dial> action ------


def test_a_callback_whose_leg_ends_before_the_dial_action_is_logged_answered(
        desk, lakeview, client, emulator):
    post(client, "/voice/incoming", {"CallSid": "CA-cb", "From": PAT, "To": LINE,
                                     "StirVerstat": "TN-Validation-Passed-A"})
    assert post(client, "/voice/menu", {"CallSid": "CA-cb", "Digits": "2"}).find(
        "Enqueue") is not None
    offer = post(client, "/voice/wait", {"CallSid": "CA-cb"}).find("Gather")
    assert offer is not None
    post(client, path_of(offer.get("action", "")), {"CallSid": "CA-cb", "Digits": "1"})
    status(client, "CA-cb", seconds=40)  # Pat hangs up, keeping their place
    emulator.created_calls.clear()
    assert client.put("/api/advisors/A2/status", json={"status": "available"},
                      headers=API).status_code == 200
    [placed] = emulator.created_calls
    form = {"CallSid": placed.sid, "CallStatus": "in-progress"}
    accept = post(client, path_of(placed.url), form).find("Gather")
    assert accept is not None
    dial = post(client, path_of(accept.get("action", "")), {**form, "Digits": "1"}).find("Dial")
    assert dial is not None and dial.findtext("Number") == PAT
    # A2 and Pat talk; A2's leg's end is handled before the <Dial>'s action.
    post(client, path_of(placed.status_callback), {"CallSid": placed.sid,
                                                   "CallStatus": "completed",
                                                   "CallDuration": "120"})
    run_jobs(desk)
    assert logs(desk)[0].status == "callback-unanswered"  # as much as it knew then
    over = {"CallSid": placed.sid, "CallStatus": "completed", "DialCallStatus": "completed",
            "DialCallDuration": "95"}
    post(client, path_of(dial.get("action", "")), over)
    post(client, path_of(dial.get("action", "")), over)  # repeated
    run_jobs(desk)
    [log] = logs(desk)
    assert (log.status, log.answered_by, log.talk_seconds) == ("answered", "A2", 95)
    assert "A2" in log.advisors_tried


# --- the survey's last key, pressed as the caller hangs up ----------------------


def at_the_last_survey_question(desk, client, sid: str) -> ET.Element:
    """A7 (available) answers Pat's call `sid` and hangs up first; Pat answers the first
    four survey questions (5, 4, 3, 2), then hangs up: the status callback is handled and
    the jobs run before any last key. The `<Gather>` of the last question ("overall")."""
    dial, leg = bridged(client, sid)
    ask = dial_over(client, dial, sid, leg, caller="in-progress").find("Gather")
    assert ask is not None
    for key in "5432":
        ask = post(client, path_of(ask.get("action", "")), {"CallSid": sid,
                                                            "Digits": key}).find("Gather")
        assert ask is not None
    status(client, sid, seconds=200)
    run_jobs(desk)
    return ask


def test_the_surveys_last_key_after_the_status_callback_is_on_the_log(desk, lakeview, client):
    make_available(desk, "A7")
    # Pat presses 5 for "overall" and hangs up: the status callback is handled first.
    ask = at_the_last_survey_question(desk, client, "CA-sv")
    last = {"CallSid": "CA-sv", "Digits": "5", "CallStatus": "completed"}
    post(client, path_of(ask.get("action", "")), last, token="tok-5")
    post(client, path_of(ask.get("action", "")), last, token="tok-5")  # repeated
    run_jobs(desk)
    [log] = client.get("/api/cases/2024117/calls", headers=API).get_json()
    assert log["survey"] == {"courtesy": 5, "knowledge": 4, "timeliness": 3, "quality": 2,
                             "overall": 5}
    general = client.get("/api/stats", headers=API).get_json()["general"]
    assert general["survey_overall_satisfied_30d"] == 1.0  # the one answer on the log


def test_a_survey_key_after_the_calls_state_is_gone_is_not_counted(desk, lakeview, client):
    """No state, no log to put the answer on: the figures do not count it either."""
    make_available(desk, "A7")
    ask = at_the_last_survey_question(desk, client, "CA-svg")
    desk.r.delete(keys.call("CA-svg"))
    post(client, path_of(ask.get("action", "")), {"CallSid": "CA-svg", "Digits": "5",
                                                  "CallStatus": "completed"})
    run_jobs(desk)
    [log] = client.get("/api/cases/2024117/calls", headers=API).get_json()
    assert log["survey"] == {"courtesy": 5, "knowledge": 4, "timeliness": 3, "quality": 2}
    general = client.get("/api/stats", headers=API).get_json()["general"]
    assert general["survey_overall_satisfied_30d"] is None
