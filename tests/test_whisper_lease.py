"""An advisor who picks up keeps the call through the whisper and its accept key.

A claim holds the advisor for the ring timeout plus a margin (20 + 30 s), counted from
the claim; DESIGN: "answering extends it to the call". A2 answering late in the ring
hears the whisper (some 15 s) and has 8 s for the key: the accept came after the
claim's lease, the reconciler had freed A2, and the key press heard "The caller is no
longer waiting" while Pat went on to someone else. Picking up (the whisper fetched)
now holds A2 through the whisper and its key; a waiting caller brought over seconds
after their claim (the redirect's retries) rings their advisor for a whole ring.
"""

from __future__ import annotations

import time
import uuid
import xml.etree.ElementTree as ET

import time_machine

from directory import keys
from routing import acd, availability, presence
from routing.waiting import request_callback
from tests.conftest import BASE_URL, make_available
from tests.test_real_world import PAT, queue_caller
from tests.webhooks import post

LINE = "+18005550100"
A2_PHONE = "+16515550102"
LEG = "CA" + "1" * 32


def path_of(url: str | None) -> str:
    """A TwiML URL as the path and query Twilio posts to."""
    return (url or "").removeprefix(BASE_URL)


def whisper_of(dial: ET.Element) -> str:
    """The whisper's URL on the advisor's `<Number>` (A2's)."""
    number = dial.find(".//Number")
    assert number is not None and number.text == A2_PHONE
    return path_of(number.get("url"))


def reconcile_at(desk, at: float) -> dict[str, int]:
    """The reconciler's pass at `at` (Unix s)."""
    with time_machine.travel(at, tick=False):
        return acd.reconcile(desk, int(time.time() * 1000))


def a2_picks_up_and_presses_a_key(desk, client, whisper_url: str, sid: str,
                                  picked_up: float) -> ET.Element:
    """A2 picks up at `picked_up` (Unix s), hears the whisper (20 s: a long district
    and caller name) and presses a key 7 s into the 8 s they have; the reconciler
    passes just before the key. What A2's key press is answered."""
    with time_machine.travel(picked_up, tick=False):
        whisper = post(client, whisper_url, {"CallSid": LEG, "CallStatus": "in-progress"})
    gather = whisper.find("Gather")
    assert gather is not None, ET.tostring(whisper)
    assert reconcile_at(desk, picked_up + 27)["freed"] == 0
    with time_machine.travel(picked_up + 28, tick=False):
        return post(client, path_of(gather.get("action")),
                    {"CallSid": LEG, "Digits": "1", "CallStatus": "in-progress"})


def test_an_advisor_who_picks_up_late_in_the_ring_takes_the_call_at_the_whisper(
        desk, lakeview, client):
    t0 = time.time()
    make_available(desk, "A2")
    sid = "CA" + uuid.uuid4().hex
    with time_machine.travel(t0, tick=False):
        post(client, "/voice/incoming", {"CallSid": sid, "From": PAT, "To": LINE,
                                         "StirVerstat": "TN-Validation-Passed-A"})
        dial = post(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "2"})
    # A2 picks up after 20 s of ringing (Pat heard a sentence first, ~3 s): the key
    # comes at t0 + 51 s, past the claim's lease (t0 + 50 s).
    accepted = a2_picks_up_and_presses_a_key(desk, client, whisper_of(dial), sid, t0 + 23)
    assert list(accepted) == []  # bridged: nothing said, nothing hung up
    state = presence.advisor_state(desk.r, "A2")
    assert (state["status"], state["call"], state["hold"]) == ("busy", sid, "talking")


def test_a_waiting_caller_brought_over_late_keeps_their_advisor_through_the_ring(
        desk, lakeview, emulator, client):
    """Pat waited; A2 freed up and was claimed for Pat, whose redirect Twilio carried
    out 40 s later (its retries, a slow API): the ring starts then, with a whole
    ring's hold, and A2, answering late in it, still takes Pat."""
    t0 = time.time()
    sid = "CA" + uuid.uuid4().hex
    emulator.register_call(sid)
    queue_caller(desk, sid, int(t0 * 1000) - 60_000)
    with time_machine.travel(t0, tick=False):
        assert availability.free_advisor(desk, "A2", int(t0 * 1000),
                                         explicit=True).call_sid == sid
    with time_machine.travel(t0 + 40, tick=False):
        dial = post(client, "/voice/connect", {"CallSid": sid, "CallStatus": "in-progress"})
    # The claim's own lease (t0 + 50 s) is over by the reconciler's pass at t0 + 55 s.
    assert reconcile_at(desk, t0 + 55)["freed"] == 0
    accepted = a2_picks_up_and_presses_a_key(desk, client, whisper_of(dial), sid, t0 + 58)
    assert list(accepted) == []
    assert presence.advisor_state(desk.r, "A2")["hold"] == "talking"


def test_an_advisor_who_picks_up_a_callback_late_in_the_ring_dials_the_contact(
        desk, lakeview, emulator, client):
    """Pat asked for a callback and hung up; A2 frees up, their leg rings 20 s, they
    hear whom it is for and press a key past the claim's lease: the contact is dialed,
    not "the caller is no longer waiting" (a callback the reconciler settled as not
    taken)."""
    t0 = time.time()
    queue_caller(desk, "CA-cb", int(t0 * 1000) - 60_000)
    desk.r.hset(keys.call("CA-cb"), mapping={"contact": "5001", "verified": "1"})
    assert request_callback(desk, "CA-cb")
    acd.end_call(desk, "CA-cb", "completed", 60, int(t0 * 1000))
    with time_machine.travel(t0, tick=False):
        availability.free_advisor(desk, "A2", int(t0 * 1000), explicit=True)
    [placed] = emulator.created_calls
    form = {"CallSid": placed.sid, "CallStatus": "in-progress"}
    with time_machine.travel(t0 + 23, tick=False):
        whisper = post(client, path_of(placed.url), form)
    gather = whisper.find("Gather")
    assert gather is not None, ET.tostring(whisper)
    assert reconcile_at(desk, t0 + 50)["freed"] == 0
    with time_machine.travel(t0 + 51, tick=False):
        accepted = post(client, path_of(gather.get("action")), {**form, "Digits": "1"})
    dial = accepted.find("Dial")
    assert dial is not None and dial.findtext("Number") == PAT
