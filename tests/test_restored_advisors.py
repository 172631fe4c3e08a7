"""An advisor is never double-booked by a Redis restored from a snapshot: the snapshot
held them available and idle, they have since taken a call that is still live at
Twilio, and Redis comes back from it under the running line. The reconciler notices
the restart, holds every advisor the snapshot brought back available until Twilio says
whether they are on a call, holds those on one on that call until it ends, and offers
the others the callers waiting; Twilio not answering, nobody is offered."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from directory import keys
from routing import presence
from tests.conftest import API_TOKEN
from tests.test_callbacks_survive_redis import A2, ALEX, PAT, SAM, lakeview
from tests.webhooks import post
from workers.reconciler import reconcile

LINE = "+18005550100"
API = {"Authorization": f"Bearer {API_TOKEN}"}
ATTESTED = {"StirVerstat": "TN-Validation-Passed-A"}
# Real seconds Pat talks with A2: long enough for the restore, two reconciler passes and
# Sam's call to happen meanwhile, on a busy host.
PAT_TALKS_SECONDS = 8.0


# The same story: Pat, Sam and Alex of one district, advisor A2 (general).
pytestmark = pytest.mark.usefixtures("lakeview")
__all__ = ["lakeview"]


def snapshot_of(desk) -> dict[str, bytes]:
    """Every key of the desk's Redis as a snapshot holds it (DUMP)."""
    return {key: desk.r.dump(key) for key in desk.r.scan_iter(count=1000)}


def restored_from(desk, snapshot: dict[str, bytes]) -> None:
    """Redis crashes and comes back from `snapshot`, written by another server (its
    kept `run_id` not this one's), as the other restart tests play it."""
    desk.r.flushall()
    for key, value in snapshot.items():
        desk.r.restore(key, 0, value)
    desk.r.set(keys.redis_run_id(), "0" * 40)


def calls_and_waits(client, emulator, phone: str) -> str:
    """A verified contact calls (live at Twilio), presses 2 (a new case) and is told to
    wait for the general team, no advisor rung; their CallSid."""
    sid = "CA" + uuid.uuid4().hex
    emulator.register_call(sid, from_=phone, to=LINE)
    post(client, "/voice/incoming", {"CallSid": sid, "From": phone, "To": LINE, **ATTESTED})
    answer = post(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "2"})
    assert answer.find("Dial") is None and answer.find("Enqueue") is not None, \
        "an advisor was rung instead of the caller waiting"
    post(client, "/voice/wait", {"CallSid": sid, "QueuePosition": "1"})
    return sid


def talks_with_a2(phone, desk, number: str, seconds: float):
    """A contact calls and talks with A2 for `seconds` (real time, their phone's leg live
    at Twilio meanwhile), in the background: the caller and the thread, once A2 talks."""
    caller = phone.caller(number, "2", on_call_seconds=seconds)
    talking = threading.Thread(target=caller.run)
    talking.start()
    deadline = time.monotonic() + 10
    while presence.advisor_state(desk.r, "A2").get("call") != caller.call_sid or \
            presence.advisor_state(desk.r, "A2").get("hold") != "talking":
        assert time.monotonic() < deadline, f"A2 never took the call from {number}"
        time.sleep(0.02)
    return caller, talking


def a2_is_available(client) -> None:
    """A2 says they are available."""
    client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)


def test_an_advisor_on_a_call_the_snapshot_does_not_know_is_not_rung_until_it_ends(
        desk, client, emulator, phone):
    reconcile()  # the line runs: its reconciler has seen this Redis
    a2_is_available(client)
    snapshot = snapshot_of(desk)  # A2 available and idle

    # Then Pat calls and talks with A2 (their phone's leg live at Twilio).
    pat, talking = talks_with_a2(phone, desk, PAT, PAT_TALKS_SECONDS)
    try:
        restored_from(desk, snapshot)  # A2 available and idle again, to Redis
        assert presence.advisor_state(desk.r, "A2")["status"] == "available"
        done = reconcile()  # the restart noticed; Twilio asked about A2
        sam = calls_and_waits(client, emulator, SAM)  # A2 is not rung for Sam
        state = presence.advisor_state(desk.r, "A2")
        assert (state["status"], state["call"], state["hold"]) == (
            "busy", pat.call_sid, "talking")
        assert done["advisors_on_live_calls"] == 1, done
        reconcile()  # nor offered Sam by the next pass
        assert talking.is_alive(), "Pat's call ended before the test could look"
        assert emulator.redirects(sam) == []
        assert presence.advisor_state(desk.r, "A2")["call"] == pat.call_sid
    finally:
        talking.join(PAT_TALKS_SECONDS + 20)  # Pat's call ends: its end frees A2 for Sam
    assert pat.result.answered_by == A2, pat.result.summary()
    assert presence.advisor_state(desk.r, "A2")["call"] == sam
    assert [r.form.get("Url", "").split("?")[0].rsplit("/", 1)[-1]
            for r in emulator.redirects(sam)] == ["connect"]


def test_twilio_failing_to_say_keeps_a_restored_advisor_from_callers_until_it_answers(
        desk, client, emulator):
    reconcile()
    a2_is_available(client)
    restored_from(desk, snapshot_of(desk))  # A2 available and idle, to the snapshot

    emulator.fail_next_fetch(500)  # Twilio fails the question about A2's calls
    done = reconcile()
    sam = calls_and_waits(client, emulator, SAM)  # A2 is not rung for Sam
    assert emulator.redirects(sam) == []
    assert presence.advisor_state(desk.r, "A2")["status"] == "busy"
    assert (done["advisors_held_to_confirm"], done["advisors_left_to_confirm"]) == (1, 1), done

    done = reconcile()  # Twilio answers now: A2 is on no call, and is offered Sam
    assert done["advisors_confirmed_free"] == 1, done
    assert presence.advisor_state(desk.r, "A2")["call"] == sam
    assert len(emulator.redirects(sam)) == 1
    done = reconcile()  # nobody is held to confirm any more: Twilio is asked nothing
    assert (done["advisors_on_live_calls"], done["advisors_confirmed_free"],
            done["advisors_left_to_confirm"]) == (0, 0, 0), done


def test_an_advisor_the_snapshot_holds_on_a_call_over_since_is_not_rung_on_their_next(
        desk, client, emulator, phone):
    """The snapshot holds A2 talking with Pat; Pat's call ends and A2 takes Sam's. Restored,
    Pat's call is closed (Twilio says it is over), which releases A2: held busy, not
    offered Alex, until Twilio says they are on Sam's call; held on it, and freed for
    Alex by its end."""
    reconcile()
    a2_is_available(client)
    pat, talking = talks_with_a2(phone, desk, PAT, 2.0)
    snapshot = snapshot_of(desk)  # A2 talking with Pat
    talking.join(20)
    sam, talking = talks_with_a2(phone, desk, SAM, PAT_TALKS_SECONDS)
    try:
        restored_from(desk, snapshot)
        assert presence.advisor_state(desk.r, "A2")["call"] == pat.call_sid
        reconcile()  # Pat's call closed: A2 released, and held
        alex = calls_and_waits(client, emulator, ALEX)  # A2 is not rung for Alex
        assert presence.advisor_state(desk.r, "A2")["status"] == "busy"
        done = reconcile()  # Twilio lists A2 on Sam's call: held on it
        assert done["advisors_on_live_calls"] == 1, done
        assert talking.is_alive(), "Sam's call ended before the test could look"
        state = presence.advisor_state(desk.r, "A2")
        assert (state["call"], state["hold"]) == (sam.call_sid, "talking")
        assert emulator.redirects(alex) == []
    finally:
        talking.join(PAT_TALKS_SECONDS + 20)  # Sam's call ends: its end frees A2 for Alex
    assert presence.advisor_state(desk.r, "A2")["call"] == alex
    assert len(emulator.redirects(alex)) == 1
