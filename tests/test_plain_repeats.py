"""Webhooks Twilio delivers twice without its idempotency token (a retry after a
timeout, the same form): the second delivery must answer as the first did and count
nothing twice, by the call's own state. A repeat that carries the same token hears
the kept first reply (`ivr.voice.hooks`); these do not."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from directory import keys
from routing import lockout, survey
from routing.call_state import get_call
from tests.conftest import API_TOKEN, BASE_URL, make_available, run_jobs
from tests.test_pin_lockout_race import checks_of
from tests.webhooks import post_without_token

PAT = "+16125550101"
STRANGER = "+16125550177"  # a number the line does not know
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


def twice(client, path: str, form: dict[str, str]) -> tuple[ET.Element, ET.Element]:
    """The same webhook delivered twice, without a token: both answers."""
    return post_without_token(client, path, form), post_without_token(client, path, form)


def dialed(twiml: ET.Element) -> list[str]:
    """The numbers a TwiML document dials."""
    return [number.text or "" for number in twiml.iter("Number")]


def asked(twiml: ET.Element) -> str:
    """The path the question a `<Gather>` asks answers to."""
    return twiml.find(".//Gather").get("action").removeprefix(BASE_URL)


def calls_in(client, sid: str, frm: str = PAT) -> None:
    """A call reaches the line (Pat's number attested, unless `frm` says otherwise)."""
    post_without_token(client, "/voice/incoming", {"CallSid": sid, "From": frm, "To": LINE,
                                                   **ATTESTED})


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
    post_without_token(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "1"})
    dial = post_without_token(client, "/voice/case",
                              {"CallSid": sid, "Digits": "2024117"}).find("Dial")
    assert dial is not None and dial.find("Number").text == A7_PHONE
    leg = {"CallSid": "CL" + sid, "ParentCallSid": sid, "CallStatus": "in-progress"}
    whisper = post_without_token(client, dial.find("Number").get("url").removeprefix(BASE_URL),
                                 leg)
    post_without_token(client, whisper.find("Gather").get("action").removeprefix(BASE_URL),
                       {**leg, "Digits": "1"})
    question = post_without_token(client, dial.get("action").removeprefix(BASE_URL), {
        "CallSid": sid, "CallStatus": "in-progress", "DialCallStatus": "completed",
        "DialCallDuration": "95"}).find("Gather")
    for _ in range(4):
        question = post_without_token(client, question.get("action").removeprefix(BASE_URL),
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
    post_without_token(client, "/voice/menu?attempt=1", {"CallSid": "CA-back", "Digits": "2"})
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

    case = asked(post_without_token(client, "/voice/menu?attempt=1",
                                    {"CallSid": "CA-miss", "Digits": "1"}))
    case = asked(post_without_token(client, case, {"CallSid": "CA-miss", "Digits": "999"}))
    first, repeat = twice(client, case, {"CallSid": "CA-miss", "Digits": "998"})
    assert ET.tostring(first) == ET.tostring(repeat)
    right = post_without_token(client, asked(repeat), {"CallSid": "CA-miss", "Digits": "2024117"})
    assert dialed(right) == [A7_PHONE]
    assert get_call(desk.r, "CA-miss")["menu"] == "1>999>998>2024117"


def test_a_repeated_menu_key_is_once_on_the_call_log(desk, lakeview, client):
    """Pat presses 5 (no option), then 1; Twilio delivers the 1 twice. Both answers ask
    the case number, and the call log shows the key once: "1>2024117", not
    "1>1>2024117"."""
    make_available(desk, "A7")
    calls_in(client, "CA-key")

    menu = asked(post_without_token(client, "/voice/menu?attempt=1",
                                    {"CallSid": "CA-key", "Digits": "5"}))
    first, repeat = twice(client, menu, {"CallSid": "CA-key", "Digits": "1"})
    assert ET.tostring(first) == ET.tostring(repeat)
    right = post_without_token(client, asked(repeat), {"CallSid": "CA-key", "Digits": "2024117"})
    assert dialed(right) == [A7_PHONE]
    post_without_token(client, "/voice/status", {"CallSid": "CA-key", "CallStatus": "completed",
                                   "CallDuration": "30", "From": PAT})
    run_jobs(desk)
    logs = client.get("/api/cases/2024117/calls",
                      headers={"Authorization": f"Bearer {API_TOKEN}"}).get_json()
    assert [log["menu_path"] for log in logs if log["call_sid"] == "CA-key"] == ["1>2024117"]


@pytest.mark.parametrize("option", ["2", "6"])
def test_a_right_pin_posted_again_while_still_checked_hears_the_first_answer(
        desk, lakeview, client, app, monkeypatch, option):
    """Pat calls from a number the line does not know, chooses 2 (a new case) or 6 (the
    add-ons) and gives contact ID and right PIN. The check is slow: Twilio times out and
    posts the PIN again, without its token, while the first post is still checked. Twilio
    follows the second answer: it is the first's (A7 rung, or the products asked), once
    checked, not a failed PIN that would have Pat verify again and be routed twice."""
    make_available(desk, "A7")
    sid = f"CA-pin-{option}"
    calls_in(client, sid, frm=STRANGER)

    contact = asked(post_without_token(client, "/voice/menu?attempt=1",
                                       {"CallSid": sid, "Digits": option}))
    pin = asked(post_without_token(client, contact, {"CallSid": sid, "Digits": "5001"}))
    answers: dict[str, ET.Element] = {}
    slow: list = []  # the checks watched, once the block below begins

    def type_pin(which: str) -> None:
        """Post the PIN as Twilio does, on its own thread; the first's check is held."""
        if which == "first":
            slow[0].hold_this_thread()
        answers[which] = post_without_token(app.test_client(), pin,
                                            {"CallSid": sid, "Digits": "2468"})

    threads = {which: threading.Thread(target=type_pin, args=(which,))
               for which in ("first", "repeat")}
    with checks_of(desk, "5001", monkeypatch) as checks:
        slow.append(checks)
        threads["first"].start()
        assert checks.held.acquire(timeout=30)  # the first post is being checked
        threads["repeat"].start()
        threads["repeat"].join(timeout=0.5)
    for thread in threads.values():  # the first check goes on from here
        thread.join(timeout=30)
    # And once more, later.
    later = post_without_token(client, pin, {"CallSid": sid, "Digits": "2468"})
    assert ET.tostring(answers["first"]) == ET.tostring(answers["repeat"]) == ET.tostring(later)
    if option == "2":
        assert dialed(answers["repeat"]) == [A7_PHONE]
    else:
        assert asked(answers["repeat"]).startswith("/voice/product")
    assert len(checks) == 1
    call = get_call(desk.r, sid)
    assert call["pin_try"] == "1" and call["verified_by"] == "pin"
    assert call.get("tried", "") == ("A7" if option == "2" else "")
    assert lockout.number_failures(desk.r, STRANGER, datetime.now(CHICAGO)) == 0


def test_a_repeated_product_key_is_once_on_the_menu_path(desk, lakeview, client):
    """Pat presses 6, then 1 (Food Service); Twilio delivers the 1 twice. Both answers
    are the same, and the key is once on the call's menu path: "6>1", not "6>1>1"."""
    calls_in(client, "CA-food")
    post_without_token(client, "/voice/menu?attempt=1", {"CallSid": "CA-food", "Digits": "6"})
    first, repeat = twice(client, "/voice/product?attempt=1", {"CallSid": "CA-food",
                                                               "Digits": "1"})
    assert ET.tostring(first) == ET.tostring(repeat)
    assert get_call(desk.r, "CA-food")["menu"] == "6>1"
