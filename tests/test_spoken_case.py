"""A case number said instead of keyed: callers on a mobile in a car or a server room
cannot always key seven digits. Driven as Twilio does (signed posts, the TwiML
followed), on the suite's clock (a Tuesday morning)."""

from __future__ import annotations

import pytest

from routing.cases import spoken_case_number
from tests.conftest import make_available
from tests.test_real_world import PAT
from tests.webhooks import post

A7_PHONE = "+16515550199"


@pytest.fixture
def lakeview(directory):
    """Pat's district, case 2024117 owned by A7, and A2 of the general team."""
    directory.district()
    directory.contact()
    directory.advisor("A7", ["general"], phone=A7_PHONE)
    directory.advisor("A2", ["general"], phone="+16515550102")
    directory.case("2024117", owner="A7")
    directory.load()


def _at_the_case_question(client, sid: str) -> None:
    post(client, "/voice/incoming", {"CallSid": sid, "From": PAT, "To": "+18005550100",
                                     "CallStatus": "ringing",
                                     "StirVerstat": "TN-Validation-Passed-A"})
    gather = post(client, "/voice/menu", {"CallSid": sid, "Digits": "1"}).find("Gather")
    # The question takes speech as well as keys.
    assert gather is not None and gather.get("input") == "dtmf speech"
    assert gather.get("action", "").split("?")[0].endswith("/voice/case")


@pytest.mark.parametrize("said", ["two oh two four one one seven", "2024117",
                                  "case number 2024 117"])
def test_a_case_number_said_rings_its_owner_like_a_keyed_one(desk, lakeview, client, said):
    make_available(desk, "A2", "A7")
    _at_the_case_question(client, "CA-said")
    answer = post(client, "/voice/case", {"CallSid": "CA-said", "SpeechResult": said,
                                          "Confidence": "0.91"})
    number = answer.find("Dial/Number")
    assert number is not None and number.text == A7_PHONE


def test_words_that_are_not_a_case_number_are_a_miss_like_a_bad_key(desk, lakeview, client):
    make_available(desk, "A7")
    _at_the_case_question(client, "CA-words")
    answer = post(client, "/voice/case", {"CallSid": "CA-words",
                                          "SpeechResult": "I need help with my password"})
    assert answer.find("Dial") is None
    gather = answer.find("Gather")  # asked again, as after a wrong key
    assert gather is not None and gather.get("action", "").split("?")[0].endswith("/voice/case")
    assert "not find" in " ".join(s.text or "" for s in answer.iter("Say")).lower()


def test_spoken_digits_become_the_number_and_other_words_become_nothing():
    assert spoken_case_number("Two oh two four one one seven.") == "2024117"
    assert spoken_case_number("it's 20 24 117") == "2024117"
    assert spoken_case_number("seven hundred") == ""
    assert spoken_case_number("") == ""
