"""The line never dials a number a caller chose, and the outage line resists abuse:
callbacks only to a verified contact's directory phone (US or Canada, fixed or
mobile, a few a day), unverified outage reports behind verified ones, one
case per calling number per day, and a voicemail after the longest wait."""

from __future__ import annotations

import dataclasses
import time
import xml.etree.ElementTree as ET

import pytest
import time_machine
from sqlalchemy import select

from config.prompts import Prompts
from directory import keys
from directory.models import CallLog, Case
from routing import callbacks, waiting
from tests.conftest import BASE_URL, make_available, run_jobs
from tests.webhooks import post

PAT = "+16125550101"  # Lakeview contact; directory phone below differs from caller IDs
PAT_DESK = "+16125550155"
ATTESTED = "TN-Validation-Passed-A"


@pytest.fixture
def lakeview(directory):
    directory.district("D100", "Lakeview Public Schools", hosted=True)
    directory.contact("5001", PAT, "D100", "Pat Lee", "2468")
    directory.contact("5002", "+16125550102", "D100", "Lee Park", "1357")
    directory.advisor("A7", ["general", "hosting"], phone="+16515550199")
    directory.advisor("A2", ["general"], phone="+16515550102")
    directory.case("2024117", "D100", owner="A7")
    directory.load()


def queued(client, sid: str, caller: str, keys_: list[str], verstat: str | None = ATTESTED,
           ) -> None:
    """A caller who pressed `keys_` and now waits in a queue (nobody is free)."""
    form = {"CallSid": sid, "From": caller, "To": "+18005550100"}
    if verstat:
        form["StirVerstat"] = verstat
    post(client, "/voice/incoming", form)
    answer = post(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": keys_[0]})
    for step, digits in zip(["/voice/verify/contact?option=" + keys_[0],
                             "/voice/verify/pin?option=" + keys_[0]], keys_[1:], strict=False):
        answer = post(client, step, {"CallSid": sid, "Digits": digits})
    assert answer.find("Enqueue") is not None, ET.tostring(answer)


def offers_callback(client, sid: str) -> bool:
    """Whether this hold cycle offers the callback key."""
    cycle = post(client, "/voice/wait", {"CallSid": sid})
    return Prompts().text("routing.callback_offer") in [s.text for s in cycle.iter("Say")]


def press_1(client, sid: str) -> list[str]:
    """The caller presses 1 while waiting: what they hear."""
    return [s.text or "" for s in post(client, "/voice/callback",
                                       {"CallSid": sid, "Digits": "1"}).iter("Say")]


@pytest.mark.parametrize("caller", ["+266696687",  # Twilio's "anonymous": a Lesotho number
                                    "+19005550123",  # US premium rate
                                    "+442079460000"])  # international
def test_no_callback_for_an_unverified_caller_whatever_number_they_present(
        client, desk, lakeview, emulator, caller):
    queued(client, "CA-x", caller, ["8"], verstat=None)  # outage, exception basis
    assert not offers_callback(client, "CA-x")
    heard = press_1(client, "CA-x")
    assert heard == [Prompts().text("routing.callback_unavailable")]
    assert desk.r.zscore(keys.team_waiting("hosting"), "CA-x") is not None  # keeps waiting
    make_available(desk, "A7")
    assert emulator.created_calls == []  # the vendor's account dialed nobody


def test_a_verified_contacts_callback_dials_their_directory_phone_not_the_caller_id(
        client, desk, lakeview, emulator, app, directory):
    directory.contact("5001", PAT_DESK, "D100", "Pat Lee", "2468")  # Pat's desk phone
    directory.load()
    # Pat calls from another phone and proves who she is with her PIN.
    queued(client, "CA-pat", "+16125550177", ["2", "5001", "2468"])
    assert offers_callback(client, "CA-pat")
    assert press_1(client, "CA-pat") == [Prompts().text("routing.callback_confirmed")]
    post(client, "/voice/status", {"CallSid": "CA-pat", "CallStatus": "completed"})
    client.put("/api/advisors/A2/status", json={"status": "available"},
               headers={"Authorization": "Bearer test-api-token"})
    [leg] = emulator.created_calls
    assert leg.to == "+16515550102"  # the advisor first
    accept = post(client, leg.url.removeprefix(BASE_URL).replace("/advisor?", "/accept?"),
                  {"CallSid": leg.sid, "Digits": "1"})
    [number] = [n.text for n in accept.iter("Number")]
    assert number == PAT_DESK


API = {"Authorization": "Bearer test-api-token"}


def called_back(client, emulator, sid: str) -> tuple[object, ET.Element]:
    """The callback `sid` asked for is placed (A2 frees up) and A2 accepts it: the
    advisor's leg and the TwiML that answers their key."""
    client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
    [leg] = emulator.created_calls
    assert leg.to == "+16515550102"  # the advisor first
    return leg, post(client, leg.url.removeprefix(BASE_URL).replace("/advisor?", "/accept?"),
                     {"CallSid": leg.sid, "Digits": "1"})


def test_a_callback_dials_the_directory_phone_as_it_is_when_placed(
        client, desk, lakeview, emulator):
    queued(client, "CA-pat", PAT, ["2"])
    assert press_1(client, "CA-pat") == [Prompts().text("routing.callback_confirmed")]
    post(client, "/voice/status", {"CallSid": "CA-pat", "CallStatus": "completed"})
    # Meanwhile an operator moves Pat to her desk phone.
    body = {"name": "Pat Lee", "district": "D100", "phone": PAT_DESK}
    assert client.put("/api/contacts/5001", json=body, headers=API).status_code == 200
    _, accept = called_back(client, emulator, "CA-pat")
    assert [n.text for n in accept.iter("Number")] == [PAT_DESK]


@pytest.mark.parametrize(("change", "reason"), [
    ({"phone": PAT, "deactivated": True}, "contact-inactive"),
    ({"phone": "+442079460000"}, "phone-not-dialable"),
])
def test_a_callback_the_directory_no_longer_allows_is_not_dialled_and_is_logged(
        client, desk, lakeview, emulator, app, change, reason):
    # The desk's wrap-up follows a talk: after no call at all, the advisor is free at once.
    app.extensions["caseline"] = dataclasses.replace(
        desk, settings=desk.settings.with_changes(wrapup_seconds=30))
    queued(client, "CA-pat", PAT, ["2"])
    assert press_1(client, "CA-pat") == [Prompts().text("routing.callback_confirmed")]
    post(client, "/voice/status", {"CallSid": "CA-pat", "CallStatus": "completed"})
    body = {"name": "Pat Lee", "district": "D100", **change}
    assert client.put("/api/contacts/5001", json=body, headers=API).status_code == 200
    leg, accept = called_back(client, emulator, "CA-pat")
    # The advisor is told, and nobody is dialled.
    assert accept.find(".//Dial") is None and accept.find("Hangup") is not None
    assert [s.text for s in accept.iter("Say")] == [
        Prompts().text("routing.callback_not_dialled")]
    post(client, leg.status_callback.removeprefix(BASE_URL),
         {"CallSid": leg.sid, "CallStatus": "completed", "CallDuration": "12"})
    advisors = client.get("/api/advisors", headers=API).get_json()
    assert {a["id"]: a["status"] for a in advisors}["A2"] == "available"
    run_jobs(desk)
    with desk.session_factory() as db:
        log = db.scalars(select(CallLog).where(CallLog.call_sid == "CA-pat")).one()
    assert log.status == "callback-unanswered" and log.answered_by is None
    assert log.details["callback_not_dialled"] == reason


def test_a_contacts_premium_or_foreign_directory_phone_gets_no_callback(
        client, desk, lakeview, directory):
    directory.contact("5001", "+442079460000", "D100", "Pat Lee", "2468")
    directory.load()
    queued(client, "CA-pat", "+16125550177", ["2", "5001", "2468"])
    assert not offers_callback(client, "CA-pat")
    assert press_1(client, "CA-pat") == [Prompts().text("routing.callback_unavailable")]


def test_a_contact_gets_a_few_callbacks_a_day_then_keeps_waiting(client, desk, lakeview):
    for n in range(callbacks.MAX_CALLBACKS_PER_DAY + 1):
        sid = f"CA-cb{n}"
        queued(client, sid, PAT, ["2"])
        accepted = press_1(client, sid) == [Prompts().text("routing.callback_confirmed")]
        assert accepted == (n < callbacks.MAX_CALLBACKS_PER_DAY), n


@pytest.mark.parametrize(("number", "ok"), [
    ("+16125550101", True), ("+14165550123", True),  # US, Canada
    ("+18005550100", False), ("+19005550123", False),  # toll-free, premium rate
    ("+266696687", False), ("+442079460000", False), ("+1612", False)])
def test_only_us_and_canadian_fixed_or_mobile_numbers_are_dialable(number, ok):
    assert callbacks.dialable_for_callback(number) is ok


# --- the outage line under abuse ----------------------------------------------------


def test_an_unverified_outage_report_waits_behind_a_verified_one(client, desk, lakeview):
    queued(client, "CA-anon", "+19525550177", ["8"], verstat=None)
    time.sleep(0.01)
    queued(client, "CA-pat", PAT, ["8"])
    # The verified report, though later, is served first.
    assert desk.r.zrange(keys.team_waiting("hosting"), 0, -1) == ["CA-pat", "CA-anon"]


@pytest.mark.databases
def test_one_outage_case_per_unverified_number_per_day(phone, desk, lakeview):
    make_available(desk, "A7")
    for _ in range(3):
        phone.call("+19525550177", "8", attestation=None)
        make_available(desk, "A7")
    phone.call("+19525550188", "8", attestation=None)
    run_jobs(desk)
    with desk.session_factory() as db:
        logs = list(db.scalars(select(CallLog).order_by(CallLog.id)))
        assert len({log.case_number for log in logs[:3]}) == 1
        assert logs[3].case_number != logs[0].case_number
        case = db.get(Case, logs[0].case_number)
        # An outage is Critical (the desk's policy); the report is flagged for an
        # authorized contact to confirm, and it waited at High (see above).
        assert case.priority == "critical" and case.needs_handover


def test_a_caller_waiting_past_the_longest_wait_may_leave_a_voicemail_on_their_case(
        client, desk, lakeview, app):
    app.extensions["caseline"] = dataclasses.replace(
        desk, settings=desk.settings.with_changes(max_wait_seconds=60))
    post(client, "/voice/incoming", {"CallSid": "CA-long", "From": PAT, "To": "+18005550100",
                                     "StirVerstat": ATTESTED})
    post(client, "/voice/menu?attempt=1", {"CallSid": "CA-long", "Digits": "1"})
    post(client, "/voice/case", {"CallSid": "CA-long", "Digits": "2024117"})
    p = Prompts()
    offer = p.text("routing.voicemail_offer")
    assert offer not in [s.text for s in post(client, "/voice/wait",
                                              {"CallSid": "CA-long"}).iter("Say")]
    with time_machine.travel(time.time() + 61, tick=True):  # a minute later
        assert offer in [s.text for s in post(client, "/voice/wait",
                                              {"CallSid": "CA-long"}).iter("Say")]
        leave = post(client, "/voice/callback", {"CallSid": "CA-long", "Digits": "2"})
    assert [el.tag for el in leave] == ["Leave"]
    record = post(client, "/voice/queue-result", {"CallSid": "CA-long", "QueueResult": "leave",
                                                  "CallStatus": "in-progress"})
    assert record.find("Record") is not None
    assert waiting.hold_cycle(desk, "CA-long", int(time.time() * 1000)).position is None
    post(client, "/voice/recorded", {"CallSid": "CA-long", "RecordingUrl": "https://rec/RE9"})
    post(client, "/voice/status", {"CallSid": "CA-long", "CallStatus": "completed"})
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.scalars(select(CallLog)).all()
    assert log.case_number == "2024117" and log.recording_url == "https://rec/RE9"
    assert log.status == "voicemail"
