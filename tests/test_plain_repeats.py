"""Webhooks Twilio delivers twice without its idempotency token (a retry after a
timeout, the same form): the second delivery must answer as the first did and count
nothing twice, by the call's own state. A repeat that carries the same token hears
the kept first reply (`ivr.voice.hooks`); these do not."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from twilio.request_validator import RequestValidator

from directory import keys
from routing import survey
from routing.call_state import get_call
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, BASE_URL, make_available

PAT = "+16125550101"
LINE = "+18005550100"
ONCALL = "+16125550999"
A7_PHONE = "+16515550199"
ATTESTED = {"StirVerstat": "TN-Validation-Passed-A"}
CHICAGO = ZoneInfo("America/Chicago")


@pytest.fixture
def settings(settings):
    """The desk with an on-call engineer for hosted outages at night."""
    return settings.with_changes(oncall_number=ONCALL)


@pytest.fixture
def lakeview(directory):
    """A hosted district, its contact Pat, and A7 (general and hosting), owner of 2024117."""
    directory.district()
    directory.contact()
    directory.advisor("A7", ["general", "hosting"], phone=A7_PHONE)
    directory.case("2024117", owner="A7")
    directory.load()


def post(client, path: str, form: dict[str, str]) -> ET.Element:
    """Post a webhook as Twilio's retry does: signed, from our account, no token."""
    form = {"AccountSid": ACCOUNT_SID, **form}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(BASE_URL + path, form)
    response = client.post(path, data=form, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200, response.data
    return ET.fromstring(response.data)


def twice(client, path: str, form: dict[str, str]) -> tuple[ET.Element, ET.Element]:
    """The same webhook delivered twice, without a token: both answers."""
    return post(client, path, form), post(client, path, form)


def dialed(twiml: ET.Element) -> list[str]:
    """The numbers a TwiML document dials."""
    return [number.text or "" for number in twiml.iter("Number")]


def calls_in(client, sid: str, frm: str = PAT) -> None:
    """A call reaches the line (Pat's number attested, unless `frm` says otherwise)."""
    post(client, "/voice/incoming", {"CallSid": sid, "From": frm, "To": LINE, **ATTESTED})


def test_a_night_outage_report_repeated_still_rings_the_on_call_engineer(
        desk, lakeview, client):
    """At night, with no hosting advisor free, Pat's outage report rings the on-call
    engineer. Twilio times out and posts the key again: Twilio follows this second
    answer, which must ring the engineer too, not queue Pat for nobody."""
    with time_machine.travel(datetime(2026, 11, 24, 23, 30, tzinfo=CHICAGO), tick=True):
        calls_in(client, "CA-night")
        first, repeat = twice(client, "/voice/menu?attempt=1", {"CallSid": "CA-night",
                                                                "Digits": "8"})
    assert dialed(first) == dialed(repeat) == [ONCALL]
    assert repeat.find(".//Enqueue") is None
    assert desk.r.zcard(keys.team_waiting("hosting")) == 0


def _surveyed(client, sid: str) -> ET.Element:
    """Pat's call is answered by A7, who hangs up first; Pat answers the first four
    survey questions with 5. The `<Gather>` of the fifth ("overall")."""
    calls_in(client, sid)
    post(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "1"})
    dial = post(client, "/voice/case", {"CallSid": sid, "Digits": "2024117"}).find("Dial")
    assert dial is not None and dial.find("Number").text == A7_PHONE
    leg = {"CallSid": "CL" + sid, "ParentCallSid": sid, "CallStatus": "in-progress"}
    whisper = post(client, dial.find("Number").get("url").removeprefix(BASE_URL), leg)
    post(client, whisper.find("Gather").get("action").removeprefix(BASE_URL),
         {**leg, "Digits": "1"})
    question = post(client, dial.get("action").removeprefix(BASE_URL), {
        "CallSid": sid, "CallStatus": "in-progress", "DialCallStatus": "completed",
        "DialCallDuration": "95"}).find("Gather")
    for _ in range(4):
        question = post(client, question.get("action").removeprefix(BASE_URL),
                        {"CallSid": sid, "Digits": "5"}).find("Gather")
    return question


def test_a_repeated_overall_answer_counts_once(desk, lakeview, client):
    """Pat answers "overall" with 2; Twilio delivers it twice. One answer in the 30-day
    figures of the team and of A7, not two."""
    make_available(desk, "A7")
    overall = _surveyed(client, "CA-survey")
    twice(client, overall.get("action").removeprefix(BASE_URL), {"CallSid": "CA-survey",
                                                                  "Digits": "2"})
    now = datetime.now(CHICAGO)
    assert survey.advisor_satisfaction(desk, "A7", now)["answers"] == 1
    assert survey.overall_satisfaction(desk, "general", now) == 0.0
    assert len(survey._answers_30_days(desk, now)) == 1


def test_a_repeated_callback_key_takes_one_of_the_days_callbacks(desk, lakeview, client):
    """Pat waits and presses 1 for a callback; Twilio delivers the key twice. One of
    Pat's callbacks for the day is used, and both answers confirm it."""
    calls_in(client, "CA-back")
    post(client, "/voice/menu?attempt=1", {"CallSid": "CA-back", "Digits": "2"})
    assert desk.r.zscore(keys.team_waiting("general"), "CA-back") is not None
    first, repeat = twice(client, "/voice/callback", {"CallSid": "CA-back", "Digits": "1"})
    assert ET.tostring(first) == ET.tostring(repeat)
    day = datetime.now(CHICAGO).date().isoformat()
    assert desk.r.get(keys.callbacks_on("5001", day)) == "1"


def test_a_repeated_wrong_case_number_is_one_miss(desk, lakeview, client):
    """Pat keys a wrong case number twice (two misses; Twilio delivers the second twice),
    then keys it right: Pat reaches the case's owner, not the general team after a
    third miss that never was."""
    make_available(desk, "A7")
    calls_in(client, "CA-miss")

    def asked(twiml: ET.Element) -> str:
        """The path the case-number question answers to."""
        return twiml.find(".//Gather").get("action").removeprefix(BASE_URL)

    case = asked(post(client, "/voice/menu?attempt=1", {"CallSid": "CA-miss", "Digits": "1"}))
    case = asked(post(client, case, {"CallSid": "CA-miss", "Digits": "999"}))
    first, repeat = twice(client, case, {"CallSid": "CA-miss", "Digits": "998"})
    assert ET.tostring(first) == ET.tostring(repeat)
    right = post(client, asked(repeat), {"CallSid": "CA-miss", "Digits": "2024117"})
    assert dialed(right) == [A7_PHONE]
    assert get_call(desk.r, "CA-miss")["menu"] == "1>999>998>2024117"
