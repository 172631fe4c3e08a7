"""A colleague on the call (the desk's policy: a contact who involves another staff
member must be present throughout). The advisor adds the colleague while connected;
the call moves into a Twilio conference through the REST emulator, the colleague is
dialed in, and the contact's leaving ends it. Calls walked by the Twilio-side driver
in real time (`on_call_seconds`), as Twilio's switch would play them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from directory.models import CallLog
from routing import presence
from routing.call_state import get_call
from tests.conftest import API_TOKEN, make_available, run_jobs
from tests.webhooks import post

PAT = "+16125550101"
A7_PHONE = "+16515550199"
COLLEAGUE = "+16125550177"  # Lakeview's network administrator
API = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def lakeview(directory):
    directory.district()
    directory.contact()
    directory.advisor("A7", ["general"], phone=A7_PHONE)
    directory.case("2024117", owner="A7")
    directory.load()


def _until(check: Callable[[], object], seconds: float = 5.0) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def _talking(desk) -> str:
    """Wait until A7 is talking with Pat; the call's CallSid."""
    def talking() -> str:
        state = presence.advisor_state(desk.r, "A7")
        return state.get("call", "") if state.get("hold") == "talking" else ""
    return str(_until(talking))


def _call_in_thread(phone, seconds: float, **options):
    """Pat calls about case 2024117 and stays on the line `seconds` once connected."""
    caller = phone.caller(PAT, "1 2024117#", on_call_seconds=seconds, **options)
    thread = threading.Thread(target=caller.run, daemon=True)
    thread.start()
    return caller, thread


def _events(result, kind: str) -> list[tuple[str, str, str]]:
    return [(e.party, e.text, e.detail) for e in result.events(kind)]


def _colleagues_on_the_log(desk) -> list[dict]:
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.query(CallLog).all()
        return log.details.get("colleagues", [])


def test_a_colleague_joins_hears_the_call_and_is_dropped_when_the_contact_hangs_up(
        phone, desk, lakeview, client, emulator):
    make_available(desk, "A7")
    caller, thread = _call_in_thread(phone, 2.0)
    sid = _talking(desk)
    added = client.post("/api/advisors/A7/colleague", json={"phone": "(612) 555-0177"},
                        headers=API)
    assert added.status_code == 201, added.get_json()
    assert added.get_json()["phone"] == COLLEAGUE
    thread.join(20)
    result = caller.result
    room = f"caseline-{sid}"
    # All three in the one conference: the colleague hears the contact and the advisor.
    assert ("caller", room, "joined") in _events(result, "conference")
    assert ("advisor", room, "joined") in _events(result, "conference")
    assert ("colleague", COLLEAGUE, "joined") in _events(result, "colleague")
    [participant] = [c for c in emulator.created_calls if c.conference == room]
    assert (participant.to, participant.from_) == (COLLEAGUE, "+18005550100")
    # The advisor's leg was moved before the contact's: moving the parent first
    # would have hung the advisor up.
    moves = [r.call_sid for r in emulator.redirects() if "conference/join" in r.form["Url"]]
    assert moves[0] != sid and sid in moves
    # Pat hung up: the conference ended, and the colleague with it.
    kinds = [(e.kind, e.party, e.detail) for e in result.transcript]
    hangup = kinds.index(("hangup", "caller", ""))
    ended = kinds.index(("conference", "service", "ended: the caller left"))
    dropped = kinds.index(("colleague", "colleague", "left: the conference ended"))
    assert hangup < ended < dropped
    assert not emulator.is_live(participant.sid)
    assert result.outcome == "advisor" and result.error is None
    # The advisor is free again (no wrap-up in these tests), not held by a call that is over.
    state = presence.advisor_state(desk.r, "A7")
    assert (state.get("status"), state.get("call")) == ("available", "")
    [logged] = _colleagues_on_the_log(desk)
    assert logged["phone"] == COLLEAGUE and logged["added_by"] == "A7"
    assert logged["joined_at"] and logged["left_at"] and logged["outcome"] == "completed"
    assert logged["removed_by"] is None


def test_the_advisor_removes_the_colleague_and_the_call_goes_on(
        phone, desk, lakeview, client, emulator):
    make_available(desk, "A7")
    caller, thread = _call_in_thread(phone, 2.5)
    sid = _talking(desk)
    assert client.post("/api/advisors/A7/colleague", json={"phone": COLLEAGUE},
                       headers=API).status_code == 201
    leg = get_call(desk.r, sid)["colleague_leg"]
    _until(lambda: get_call(desk.r, sid).get(f"colleague:{leg}:joined_at"))
    removed = client.delete("/api/advisors/A7/colleague", headers=API)
    assert removed.status_code == 200 and removed.get_json()["leg"] == leg
    thread.join(20)
    result = caller.result
    kinds = [(e.kind, e.party, e.detail) for e in result.transcript]
    left = kinds.index(("colleague", "colleague", "left: removed through the REST API"))
    ended = kinds.index(("conference", "service", "ended: the caller left"))
    # Pat and the advisor talked on after the colleague left; Pat's hanging up ended it.
    assert left < ended
    assert ("hangup", "advisor", "") in kinds[ended:]
    [logged] = _colleagues_on_the_log(desk)
    assert logged["removed_by"] == "A7" and logged["left_at"]
    # Nothing left to remove.
    assert client.delete("/api/advisors/A7/colleague", headers=API).status_code == 409


@pytest.mark.parametrize(("number", "reason"), [
    ("+44 20 7946 0958", "outside-us-canada"),
    ("+52 55 1234 5678", "outside-us-canada"),
    ("+1 900 555 0123", "premium-rate"),
    ("555-0177", "invalid-number"),
])
def test_a_number_outside_the_us_and_canada_is_refused_and_nothing_moves(
        phone, desk, lakeview, client, emulator, number, reason):
    make_available(desk, "A7")
    caller, thread = _call_in_thread(phone, 0.6)
    sid = _talking(desk)
    before = len(emulator.requests)
    refused = client.post("/api/advisors/A7/colleague", json={"phone": number}, headers=API)
    assert (refused.status_code, refused.get_json()["error"]) == (400, reason)
    assert len(emulator.requests) == before  # nothing asked of Twilio
    assert not get_call(desk.r, sid).get("conference")
    thread.join(20)
    assert caller.result.events("conference") == [] and caller.result.answered_by


def test_a_canadian_colleague_is_dialed(phone, desk, lakeview, client, emulator):
    make_available(desk, "A7")
    caller, thread = _call_in_thread(phone, 1.5)
    _talking(desk)
    added = client.post("/api/advisors/A7/colleague", json={"phone": "+1 416 555 0142"},
                        headers=API)
    assert added.status_code == 201 and added.get_json()["phone"] == "+14165550142"
    thread.join(20)
    assert ("colleague", "+14165550142", "joined") in _events(caller.result, "colleague")


def test_no_colleague_without_a_call(desk, lakeview, client, emulator):
    make_available(desk, "A7")
    refused = client.post("/api/advisors/A7/colleague", json={"phone": COLLEAGUE}, headers=API)
    assert (refused.status_code, refused.get_json()["error"]) == (409, "not-on-a-call")


def test_when_the_advisor_leaves_the_conference_ends_and_the_contact_is_surveyed(
        phone, desk, lakeview, client, emulator):
    make_available(desk, "A7")
    caller, thread = _call_in_thread(phone, 1.5, bridged_hangup="advisor")
    _talking(desk)
    assert client.post("/api/advisors/A7/colleague", json={"phone": COLLEAGUE},
                       headers=API).status_code == 201
    thread.join(20)
    result = caller.result
    assert ("service", f"caseline-{result.call_sid}", "ended: the advisor left") in _events(
        result, "conference")
    # The colleague never stays with the contact alone on the desk's line either.
    assert ("colleague", COLLEAGUE, "left: the conference ended") in _events(result, "colleague")
    assert any("five quick questions" in text for text in result.heard())


def test_twilio_unavailable_leaves_the_call_as_it_was(phone, desk, lakeview, client, emulator):
    make_available(desk, "A7")
    caller, thread = _call_in_thread(phone, 5.0)
    sid = _talking(desk)
    emulator.fail_next(*[503] * 5)  # every try of moving the advisor's leg
    refused = client.post("/api/advisors/A7/colleague", json={"phone": COLLEAGUE}, headers=API)
    assert (refused.status_code, refused.get_json()["error"]) == (502, "twilio-unavailable")
    assert get_call(desk.r, sid).get("conference") == ""
    thread.join(20)
    result = caller.result
    assert result.events("conference") == [] and result.answered_by and result.error is None



def test_a_contact_gone_while_the_call_moves_leaves_no_leg_behind(
        phone, desk, lakeview, client, emulator):
    make_available(desk, "A7")
    caller, thread = _call_in_thread(phone, 1.5)
    sid = _talking(desk)
    assert client.post("/api/advisors/A7/colleague", json={"phone": COLLEAGUE},
                       headers=API).status_code == 201
    call = get_call(desk.r, sid)
    legs = {call["advisor_leg"], call["colleague_leg"]}
    # Twilio reports Pat's call over before Pat was in the conference: the advisor
    # would sit alone in it, and the colleague with them.
    post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                   "CallDuration": "40", "From": PAT, "To": "+18005550100"})
    def hung_up() -> set:
        # Asked of Twilio (the simulator may have ended a leg first: then a 400).
        return {r.call_sid for r in emulator.requests if r.form.get("Status") == "completed"}
    # After the status callback is answered, on the web process's REST pool.
    _until(lambda: legs <= hung_up())
    # A repeated status callback asks nothing more of Twilio.
    before = len(emulator.requests)
    post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                   "CallDuration": "40", "From": PAT, "To": "+18005550100"})
    assert len(emulator.requests) == before
    thread.join(20)
