"""An advisor who stepped away from the desk without saying so: after two rings in a row
let go by (`presence.MISSED_RINGS_AWAY`), the line sets them offline, so the next
callers do not each ring them for ~25 s first; they come back by going available.
A caller hanging up mid-ring is not the advisor's miss, and a call taken between two
misses starts the count again. Routing functions against the real Redis and the
emulator, with time passed in (as tests/test_routing_rules.py)."""

from __future__ import annotations

from routing import acd, callbacks
from tests.conftest import API_TOKEN
from tests.test_routing_rules import (
    SECOND,
    T0,
    arrives,
    comes_back,
    lakeview,
    status,
    waits,
    wants_a_callback,
)

__all__ = ["lakeview"]  # the module's fixture, shared

API = {"Authorization": f"Bearer {API_TOKEN}"}


def rung(desk, emulator, sid: str, at_ms: int) -> str:
    """A caller arrives and an advisor is rung for them: who."""
    decision = arrives(desk, emulator, sid, at_ms)
    assert isinstance(decision, acd.DialAdvisor), decision
    return decision.advisor_id


def lets_ring_out(desk, sid: str, advisor_id: str, at_ms: int,
                  dial_status: str = "no-answer", call_status: str = "in-progress"):
    """The `<Dial>` action of a ring the advisor did not take."""
    return acd.after_dial(desk, sid, advisor_id, dial_status, 0, at_ms,
                          call_status=call_status)


def test_an_advisor_who_lets_two_callers_ring_out_in_a_row_is_set_offline_until_back(
        desk, lakeview, emulator, client):
    assert comes_back(desk, "A2", T0) is None
    assert rung(desk, emulator, "CA1", T0 + 10 * SECOND) == "A2"
    lets_ring_out(desk, "CA1", "A2", T0 + 35 * SECOND)  # CA1 waits; A2 stays available
    assert status(desk, "A2") == ("available", "")
    assert rung(desk, emulator, "CA2", T0 + 40 * SECOND) == "A2"
    # Their voicemail picks up and presses no key at the whisper: a second miss.
    lets_ring_out(desk, "CA2", "A2", T0 + 65 * SECOND, dial_status="completed")
    assert status(desk, "A2") == ("offline", "")
    listed = {a["id"]: a for a in client.get("/api/advisors", headers=API).get_json()}
    assert (listed["A2"]["status"], listed["A2"]["away"]) == ("offline", "missed-rings")
    # The next caller is not rung for A2 again: they wait at once.
    assert waits(desk, emulator, "CA3", T0 + 70 * SECOND) == 3
    # A2 is back and says so: the longest waiting caller is theirs.
    assert comes_back(desk, "A2", T0 + 300 * SECOND) == "CA1"
    listed = {a["id"]: a for a in client.get("/api/advisors", headers=API).get_json()}
    assert listed["A2"]["away"] is None


def test_a_caller_hanging_up_mid_ring_is_not_the_advisors_miss(desk, lakeview, emulator):
    assert comes_back(desk, "A2", T0) is None
    for n in range(3):
        sid = f"CA{n}"
        assert rung(desk, emulator, sid, T0 + n * 60 * SECOND) == "A2"
        lets_ring_out(desk, sid, "A2", T0 + (n * 60 + 5) * SECOND, dial_status="canceled",
                      call_status="completed")
        assert status(desk, "A2") == ("available", "")


def test_a_call_taken_between_two_misses_starts_the_count_again(desk, lakeview, emulator):
    assert comes_back(desk, "A2", T0) is None
    assert rung(desk, emulator, "CA1", T0 + 10 * SECOND) == "A2"
    lets_ring_out(desk, "CA1", "A2", T0 + 35 * SECOND, dial_status="busy")
    # CA1 waits; the next ring for A2 is CA1's again a minute on, and A2 takes it.
    assert rung(desk, emulator, "CA2", T0 + 40 * SECOND) == "A2"
    assert acd.accept_call(desk, "CA2", "A2", T0 + 45 * SECOND)
    assert acd.after_dial(desk, "CA2", "A2", "completed", 60, T0 + 105 * SECOND) == \
        acd.CallFinished("A2")
    # Free again (wrap-up 0): they are offered CA1, waiting since before, and miss it.
    assert status(desk, "A2") == ("busy", "CA1")
    lets_ring_out(desk, "CA1", "A2", T0 + 130 * SECOND)
    assert status(desk, "A2")[0] != "offline"


def test_two_callback_rings_in_a_row_let_go_by_set_the_advisor_offline(
        desk, lakeview, emulator):
    wants_a_callback(desk, emulator, "CA-cb", T0)
    assert comes_back(desk, "A2", T0 + 60 * SECOND) == "CA-cb"
    callbacks.end_callback(desk, "CA-cb", "A2", "no-answer", T0 + 90 * SECOND)
    assert status(desk, "A2") == ("available", "")
    assert rung(desk, emulator, "CA1", T0 + 100 * SECOND) == "A2"
    lets_ring_out(desk, "CA1", "A2", T0 + 125 * SECOND)
    assert status(desk, "A2") == ("offline", "")
