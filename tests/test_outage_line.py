"""The outage line's limits, as a hostile or unlucky caller meets them: the on-call
engineer rings only for a verified contact of a hosted district, whatever step leads
to the night's routing (a report accepted at 17:59:55 and routed after the close
included), and one unverified number holds at most one waiting place at a time."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from directory import keys
from directory.models import CallLog
from routing.call_state import OPEN_CALL_FIRST_CHECK_MS
from tests.conftest import API_TOKEN, run_jobs
from tests.webhooks import post, post_without_token
from workers.reconciler import reconcile

CHICAGO = ZoneInfo("America/Chicago")
API = {"Authorization": f"Bearer {API_TOKEN}"}
LINE = "+18005550100"
PAT = "+16125550101"  # Lakeview (hosted)
SAM = "+17635550111"  # Riverside (not hosted)
ATTESTED = "TN-Validation-Passed-A"
ONCALL = "+16515550911"
SCHOOL = "+19525550177"  # a school's main number: unknown to the directory


@pytest.fixture
def lakeview(directory):
    """A hosted and a non-hosted district, a contact of each, hosting advisor A7."""
    directory.district("D100", "Lakeview Public Schools", hosted=True)
    directory.district("D200", "Riverside Unified", hosted=False)
    directory.contact("5001", PAT, "D100", "Pat Lee", "2468")
    directory.contact("5101", SAM, "D200", "Sam Ortiz", "8642")
    directory.advisor("A7", ["general", "hosting"], phone="+16515550199")
    directory.case("2024117", "D100", owner="A7")
    directory.load()


@pytest.fixture
def oncall(settings, make_app, lakeview):
    """A test client of a line with an on-call engineer, and a known issue announced."""
    client = make_app(dataclasses.replace(settings, oncall_number=ONCALL)).test_client()
    assert client.put("/api/announcement", json={"text": "Known issue: gradebook slow.",
                                                 "active": True}, headers=API).status_code == 200
    return client


def at(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0):
    """Travel to a wall-clock time in Chicago (the clock keeps ticking)."""
    return time_machine.travel(datetime(year, month, day, hour, minute, second,
                                        tzinfo=CHICAGO), tick=True)


def call_in(client, number: str, verstat: str | None = None) -> str:
    """A call from `number` reaches the line; its CallSid."""
    sid = "CA" + uuid.uuid4().hex
    form = {"CallSid": sid, "From": number, "To": LINE}
    if verstat:
        form["StirVerstat"] = verstat
    post(client, "/voice/incoming", form)
    return sid


def press_8(client, number: str, verstat: str | None = None) -> tuple[str, ET.Element]:
    """A call from `number` chooses the outage line: its CallSid, and what it hears."""
    sid = call_in(client, number, verstat)
    return sid, post(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "8"})


def next_question(twiml: ET.Element) -> str | None:
    """The path the next `<Gather>` posts to, if the answer asks something."""
    gather = twiml.find("Gather")
    return urlparse(gather.get("action", "")).path if gather is not None else None


def dialed(twiml: ET.Element) -> list[str]:
    """The numbers an answer dials."""
    return [number.text or "" for number in twiml.iter("Number")]


def waits(twiml: ET.Element) -> bool:
    """Whether the answer puts the caller in a queue."""
    return twiml.find("Enqueue") is not None


def records(twiml: ET.Element) -> bool:
    """Whether the answer takes a voicemail."""
    return twiml.find("Record") is not None


def hosting_queue(client) -> list[dict]:
    """The hosting team's waiting callers, as `GET /api/queues` lists them."""
    return client.get("/api/queues", headers=API).get_json().get("hosting", [])


# --- the on-call engineer, after the close ---------------------------------------------


def report_at_the_close(client, number: str, verstat: str | None = None) -> tuple[str, ET.Element]:
    """`number` presses 8 at 17:59:55 on a Tuesday (open), hears the announcement and
    stays on the line; its route is asked at 18:00:20 (closed): the CallSid and answer."""
    with at(2026, 11, 24, 17, 59, 55):
        sid, heard = press_8(client, number, verstat)
        assert next_question(heard) == "/voice/outage/route"
    with at(2026, 11, 24, 18, 0, 20):
        return sid, post(client, "/voice/outage/route", {"CallSid": sid})


def test_an_unverified_report_accepted_before_the_close_waits_for_hosting_not_on_call(oncall):
    """The desk accepted the report at 17:59:55 on an exception basis (the caller heard
    so): routed at 18:00:20 it waits for hosting at High, as it would have a minute
    earlier. It never rings the on-call engineer."""
    sid, answer = report_at_the_close(oncall, SCHOOL)
    assert ONCALL not in dialed(answer)
    assert answer.findtext("Enqueue") == "hosting"
    [place] = hosting_queue(oncall)
    assert (place["call_sid"], place["priority"]) == (sid, "high")


def test_a_verified_hosted_report_routed_after_the_close_rings_on_call(oncall):
    _, answer = report_at_the_close(oncall, PAT, ATTESTED)
    assert dialed(answer) == [ONCALL]


def test_a_non_hosted_districts_report_routed_after_the_close_waits_for_hosting(oncall):
    """Sam is verified, of a district without hosting: accepted in hours, his report
    waits for hosting (Critical) after the close; on-call is for hosted districts."""
    sid, answer = report_at_the_close(oncall, SAM, ATTESTED)
    assert ONCALL not in dialed(answer)
    [place] = hosting_queue(oncall)
    assert (place["call_sid"], place["priority"]) == (sid, "critical")


def test_the_nights_route_refuses_an_unverified_caller_whatever_step_leads_there(oncall):
    """At night an unknown number is asked to prove it is a hosted district's contact;
    should Twilio post the outage route for that call all the same (a stray or replayed
    request), the answer is the after-hours message and a voicemail, never on-call."""
    with at(2026, 11, 28, 3):  # Saturday 3 AM
        sid, heard = press_8(oncall, SCHOOL)
        assert next_question(heard) == "/voice/verify/contact"
        answer = post(oncall, "/voice/outage/route", {"CallSid": sid})
    assert dialed(answer) == [] and not waits(answer)
    assert records(answer)
    assert hosting_queue(oncall) == []


# --- one waiting place per unverified number -------------------------------------------


def test_one_unverified_number_holds_one_waiting_place(client, lakeview):
    """Nobody is free. Ten calls from one unrecognised number press 8: the first waits
    (at High); the others hear that a report from the number already waits and may
    leave a message. Other numbers, and verified contacts, are not held back."""
    answers = [press_8(client, SCHOOL)[1] for _ in range(10)]
    assert waits(answers[0])
    assert [waits(a) for a in answers[1:]] == [False] * 9
    assert all(records(a) and dialed(a) == [] for a in answers[1:])
    mine = [c for c in hosting_queue(client) if c["caller"] == SCHOOL]
    assert [c["priority"] for c in mine] == ["high"]

    assert waits(press_8(client, "+19525550178")[1])  # another number
    assert waits(press_8(client, PAT, ATTESTED)[1])  # Pat, verified, twice at once
    assert waits(press_8(client, PAT, ATTESTED)[1])
    assert len(hosting_queue(client)) == 4


def test_calls_from_one_number_at_the_same_moment_take_one_place(app, lakeview):
    """A school's PBX presents its main number for every line: eight staff press 8 at
    the same moment. One waits; seven hear the report already waits."""
    sids = [call_in(app.test_client(), SCHOOL) for _ in range(8)]
    start = threading.Barrier(len(sids))
    answers: dict[str, ET.Element] = {}

    def press(sid: str) -> None:
        client = app.test_client()
        start.wait()
        answers[sid] = post(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "8"})

    threads = [threading.Thread(target=press, args=(sid,)) for sid in sids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == len(sids)
    waiting = [sid for sid, answer in answers.items() if waits(answer)]
    assert len(waiting) == 1
    assert all(records(answers[sid]) for sid in sids if sid not in waiting)
    assert [c["call_sid"] for c in hosting_queue(app.test_client())] == waiting


def test_a_repeated_key_keeps_the_callers_own_place(client, lakeview):
    """Twilio repeats the menu's request for the call that waits (no idempotency
    token): the same call keeps its one place; it does not lock itself out."""
    sid, first = press_8(client, SCHOOL)
    again = post_without_token(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "8"})
    assert waits(first) and waits(again)
    assert [c["call_sid"] for c in hosting_queue(client)] == [sid]


def test_the_place_frees_when_the_waiting_call_ends(client, lakeview):
    first, _ = press_8(client, SCHOOL)
    assert not waits(press_8(client, SCHOOL)[1])
    post(client, "/voice/status", {"CallSid": first, "CallStatus": "completed",
                                   "CallDuration": "40"})
    second, answer = press_8(client, SCHOOL)
    assert waits(answer)
    assert [c["call_sid"] for c in hosting_queue(client)] == [second]


def test_the_place_frees_once_the_waiting_caller_is_served(client, lakeview, emulator):
    """While the waiting caller is being brought to A7 their place is still theirs (a
    missed ring puts them back); once A7 takes the call the number may wait again."""
    first, _ = press_8(client, SCHOOL)
    emulator.register_call(first, from_=SCHOOL, to=LINE)
    assert client.put("/api/advisors/A7/status", json={"status": "available"},
                      headers=API).status_code == 200
    assert hosting_queue(client) == []  # claimed for A7, ringing soon
    assert not waits(press_8(client, SCHOOL)[1])

    connect = post(client, "/voice/connect", {"CallSid": first, "CallStatus": "in-progress"})
    assert dialed(connect) == ["+16515550199"]
    post(client, f"/voice/whisper/accept?call={first}&advisor=A7",
         {"CallSid": "CA" + uuid.uuid4().hex, "Digits": "1"})
    third, answer = press_8(client, SCHOOL)
    assert waits(answer)
    assert [c["call_sid"] for c in hosting_queue(client)] == [third]


def test_a_missed_ring_puts_the_waiting_caller_back_in_their_own_place(client, lakeview,
                                                                        emulator):
    """A7 does not answer the waiting caller: back in the queue, the place still theirs,
    and the number's next call is still not queued."""
    first, _ = press_8(client, SCHOOL)
    emulator.register_call(first, from_=SCHOOL, to=LINE)
    client.put("/api/advisors/A7/status", json={"status": "available"}, headers=API)
    post(client, "/voice/connect", {"CallSid": first, "CallStatus": "in-progress"})
    client.put("/api/advisors/A7/status", json={"status": "offline"}, headers=API)
    missed = post(client, "/voice/dial-result?advisor=A7",
                  {"CallSid": first, "DialCallStatus": "no-answer", "CallStatus": "in-progress"})
    assert waits(missed)
    assert not waits(press_8(client, SCHOOL)[1])
    assert [c["call_sid"] for c in hosting_queue(client)] == [first]


def test_the_place_frees_when_the_reconciler_finds_the_call_over(desk, client, lakeview,
                                                                 emulator):
    """The waiting caller hangs up and Twilio's status callback is lost: the line
    cannot know, and the place stands, until the reconciler asks Twilio (ten minutes
    on) and ends the call. Then the number may wait again."""
    first, _ = press_8(client, SCHOOL)
    emulator.register_call(first, from_=SCHOOL, to=LINE)
    emulator.end_call(first)  # hung up; the status callback never came
    assert not waits(press_8(client, SCHOOL)[1])
    with time_machine.travel(time.time() + (OPEN_CALL_FIRST_CHECK_MS + 1000) / 1000,
                             tick=False):
        assert reconcile()["open_calls_ended"] >= 1
    assert desk.r.zscore(keys.team_waiting("hosting"), first) is None
    third, answer = press_8(client, SCHOOL)
    assert waits(answer)
    assert [c["call_sid"] for c in hosting_queue(client)] == [third]


def test_the_place_frees_when_the_line_lost_the_waiting_call(desk, client, lakeview):
    """Redis came back without the waiting call (its state lost, or expired): nothing
    holds the number's place any more."""
    first, _ = press_8(client, SCHOOL)
    desk.r.delete(keys.call(first), keys.team_waiting("hosting"))
    assert waits(press_8(client, SCHOOL)[1])


@pytest.mark.databases
def test_the_second_callers_message_goes_onto_the_numbers_outage_case(desk, client,
                                                                     lakeview):
    first, _ = press_8(client, SCHOOL)
    second, answer = press_8(client, SCHOOL)
    assert records(answer)
    post(client, "/voice/recorded", {"CallSid": second, "RecordingUrl": "https://rec/RE2",
                                     "RecordingDuration": "12"})
    for sid in (second, first):
        post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                       "CallDuration": "60"})
    run_jobs(desk)
    with desk.session_factory() as db:
        logs = {log.call_sid: log for log in db.scalars(select(CallLog))}
    assert logs[first].case_number == logs[second].case_number
    assert (logs[second].status, logs[second].recording_url) == ("voicemail", "https://rec/RE2")
    assert logs[first].status == "abandoned"
