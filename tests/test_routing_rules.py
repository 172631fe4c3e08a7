"""Routing rules a caller or an advisor would notice, pinned one by one.

Each test here fails on a plausible one-line slip in the matching scripts or
their callers (ignoring the call an advisor just missed, looking only at the
head of a queue, leaving an overflow caller in their own queue, reading the
overflow time in the wrong unit, re-queueing a caller at the back): the
routing functions run against the real Redis and the Twilio emulator, with
time passed in as `now_ms`, so nothing sleeps.
"""

from __future__ import annotations

import pytest

from directory import keys
from routing import acd, availability, callbacks, presence, waiting
from routing.call_state import send_to_team, start_call
from tests.conftest import BASE_URL, NOW

PAT = "+16125550101"
T0 = int(NOW.timestamp() * 1000)  # the desk's clock, in ms
SECOND = 1000

PHONES = {"A2": "+16515550102", "A3": "+16515550103", "A4": "+16515550104",
          "A5": "+16515550105"}


@pytest.fixture
def lakeview(directory):
    """Three general advisors and one fees advisor, all offline until they say otherwise."""
    directory.district()
    directory.contact()
    for advisor_id in ("A2", "A3", "A4"):
        directory.advisor(advisor_id, ["general"], phone=PHONES[advisor_id])
    directory.advisor("A5", ["fees"], phone=PHONES["A5"])
    directory.load()


def arrives(desk, emulator, sid: str, at_ms: int, team: str = "general",
            priority: str = "medium") -> acd.Decision:
    """A live caller reaches the routing step (session as the webhooks leave it)."""
    emulator.register_call(sid, from_=PAT)
    start_call(desk.r, sid, {"caller": PAT, "base": BASE_URL, "started_at": at_ms,
                                "team": team, "priority": priority, "menu": "2"})
    return acd.route_caller(desk, sid, at_ms)


def waits(desk, emulator, sid: str, at_ms: int, team: str = "general",
          priority: str = "medium") -> int:
    """A caller who arrives when nobody of the team is free: their place in line."""
    decision = arrives(desk, emulator, sid, at_ms, team, priority)
    assert isinstance(decision, acd.WaitInQueue), decision
    return decision.position


def comes_back(desk, advisor_id: str, at_ms: int) -> str | None:
    """An advisor says "available": the waiting caller they were handed, if any."""
    release = availability.free_advisor(desk, advisor_id, at_ms, explicit=True)
    if release.outcome == "claimed":
        return release.call_sid
    assert release.outcome == "available", release
    return None


def status(desk, advisor_id: str) -> tuple[str, str]:
    """An advisor's presence: (status, the call they hold)."""
    state = presence.advisor_state(desk.r, advisor_id)
    return state.get("status", ""), state.get("call", "")


def callback_legs(emulator) -> list[str]:
    """The phones rung for callbacks so far (the advisor is rung first)."""
    return [leg.to for leg in emulator.created_calls]


def wants_a_callback(desk, emulator, sid: str, at_ms: int) -> None:
    """A verified caller waits, presses 1 for a callback and hangs up, keeping their place."""
    waits(desk, emulator, sid, at_ms)
    desk.r.hset(keys.call(sid), mapping={"contact": "5001", "verified": "1"})  # Pat, verified
    assert waiting.request_callback(desk, sid)
    assert acd.end_call(desk, sid, "completed", 30, at_ms + 30 * SECOND) is None
    emulator.end_call(sid)


# --- (a) the call an advisor just missed ----------------------------------------------


def test_an_advisor_who_let_a_callback_ring_out_is_not_rung_for_it_again_at_once(
        desk, lakeview, emulator):
    wants_a_callback(desk, emulator, "CA-cb", T0)
    assert comes_back(desk, "A2", T0 + 60 * SECOND) == "CA-cb"
    assert callback_legs(emulator) == [PHONES["A2"]]
    # A2 lets the callback leg ring out: the caller keeps their place ...
    keeps_place = callbacks.end_callback(desk, "CA-cb", "A2", "no-answer", T0 + 90 * SECOND)
    assert keeps_place is False
    # ... and A2 is free, not rung for the very callback they just missed.
    assert callback_legs(emulator) == [PHONES["A2"]]
    assert status(desk, "A2") == ("available", "")
    # The next advisor to come back gets the callback.
    assert comes_back(desk, "A3", T0 + 91 * SECOND) == "CA-cb"
    assert callback_legs(emulator) == [PHONES["A2"], PHONES["A3"]]


# --- (b) a skipped head does not hide the callers behind it ---------------------------


def test_the_caller_behind_a_missed_callback_gets_the_advisor_instead_of_waiting(
        desk, lakeview, emulator):
    wants_a_callback(desk, emulator, "CA-cb", T0)
    waits(desk, emulator, "CA-live", T0 + 10 * SECOND)
    assert comes_back(desk, "A2", T0 + 60 * SECOND) == "CA-cb"
    callbacks.end_callback(desk, "CA-cb", "A2", "no-answer", T0 + 90 * SECOND)
    # A2 missed the callback at the head of the line: the live caller behind it is
    # brought to A2 now, rather than A2 idling while someone waits.
    assert status(desk, "A2") == ("busy", "CA-live")
    assert emulator.redirects("CA-live")
    assert callback_legs(emulator) == [PHONES["A2"]]


# --- (c) an overflow caller leaves their own team's queue -----------------------------


def test_a_product_caller_a_general_advisor_took_is_not_handed_to_a_product_advisor_too(
        desk, lakeview, emulator):
    overflow = desk.settings.overflow_seconds * SECOND
    waits(desk, emulator, "CA-fees", T0, team="fees")
    waits(desk, emulator, "CA-fees-new", T0 + overflow, team="fees")
    # A general advisor frees up once CA-fees has waited past the overflow time.
    assert comes_back(desk, "A2", T0 + overflow + 5 * SECOND) == "CA-fees"
    assert len(emulator.redirects("CA-fees")) == 1
    # The fees advisor who frees up next takes the next fees caller, not CA-fees again.
    assert comes_back(desk, "A5", T0 + overflow + 6 * SECOND) == "CA-fees-new"
    assert len(emulator.redirects("CA-fees")) == 1
    assert status(desk, "A2") == ("busy", "CA-fees")


def test_a_product_caller_who_left_on_a_hold_cycle_for_a_general_advisor_is_not_dealt_twice(
        desk, lakeview, emulator):
    overflow = desk.settings.overflow_seconds * SECOND
    assert comes_back(desk, "A2", T0) is None  # A2 idles, a general advisor
    waits(desk, emulator, "CA-fees", T0 + 1 * SECOND, team="fees")
    waits(desk, emulator, "CA-fees-new", T0 + overflow, team="fees")
    # CA-fees has waited past the overflow time: their hold cycle takes them to A2.
    cycle = waiting.hold_cycle(desk, "CA-fees", T0 + overflow + 2 * SECOND)
    assert cycle.leave
    assert status(desk, "A2") == ("busy", "CA-fees")
    # The fees advisor who frees up next takes the next fees caller, not CA-fees.
    assert comes_back(desk, "A5", T0 + overflow + 3 * SECOND) == "CA-fees-new"
    assert emulator.redirects("CA-fees") == []


# --- (d) the overflow time is seconds, and a general advisor waits for it --------------


def test_a_product_caller_is_not_taken_by_a_general_advisor_before_the_overflow_time(
        desk, lakeview, emulator):
    overflow = desk.settings.overflow_seconds * SECOND
    waits(desk, emulator, "CA-fees", T0, team="fees")
    # A general advisor frees up when CA-fees has waited half the overflow time:
    # the fees team may still take them, so A2 stays free for general callers.
    assert comes_back(desk, "A2", T0 + overflow // 2) is None
    assert emulator.redirects("CA-fees") == []
    # Just before the limit, a hold cycle still leaves CA-fees waiting for fees.
    cycle = waiting.hold_cycle(desk, "CA-fees", T0 + overflow - SECOND)
    assert not cycle.leave and cycle.position == 1
    assert status(desk, "A2") == ("available", "")
    # At the limit, the next hold cycle takes CA-fees to the idle general advisor.
    assert waiting.hold_cycle(desk, "CA-fees", T0 + overflow).leave
    assert status(desk, "A2") == ("busy", "CA-fees")


def test_a_general_advisor_passed_on_by_a_gone_caller_leaves_a_recent_product_caller_waiting(
        desk, lakeview, emulator):
    overflow = desk.settings.overflow_seconds * SECOND
    waits(desk, emulator, "CA-gone", T0)
    emulator.end_call("CA-gone")  # hangs up unnoticed: the redirect to A2 fails
    waits(desk, emulator, "CA-fees", T0 + overflow // 2, team="fees")
    # A2 is handed CA-gone, whose redirect fails: A2 goes on, but CA-fees has waited
    # less than the overflow time, so A2 stays free for general callers.
    availability.free_advisor(desk, "A2", T0 + overflow - SECOND, explicit=True)
    assert emulator.redirects("CA-gone")
    assert status(desk, "A2") == ("available", "")
    assert emulator.redirects("CA-fees") == []


# --- (e) a caller whose advisor did not answer keeps their place ----------------------


def test_a_caller_whose_advisor_did_not_answer_keeps_their_place_in_line(
        desk, lakeview, emulator):
    assert waits(desk, emulator, "CA1", T0) == 1
    assert waits(desk, emulator, "CA2", T0 + 10 * SECOND) == 2
    # A2 frees up and is rung for CA1, the longest waiting ...
    assert comes_back(desk, "A2", T0 + 30 * SECOND) == "CA1"
    assert isinstance(acd.connect_claimed(desk, "CA1", T0 + 31 * SECOND),
                      acd.DialAdvisor)
    # ... two critical callers arrive meanwhile ...
    assert waits(desk, emulator, "CA-crit1", T0 + 40 * SECOND, priority="critical") == 1
    assert waits(desk, emulator, "CA-crit2", T0 + 41 * SECOND, priority="critical") == 2
    # ... and A2 does not answer: A2 goes on to the first critical caller, and CA1
    # waits again in their old place: behind the critical caller still waiting, but
    # ahead of CA2, who arrived after them.
    back = acd.after_dial(desk, "CA1", "A2", "no-answer", 0, T0 + 55 * SECOND)
    assert back == acd.WaitInQueue(team="general", position=2)
    assert status(desk, "A2") == ("busy", "CA-crit1")
    assert comes_back(desk, "A3", T0 + 60 * SECOND) == "CA-crit2"
    assert comes_back(desk, "A4", T0 + 61 * SECOND) == "CA1"


def test_a_caller_routed_to_another_team_while_waiting_waits_there_alone_from_first_arrival(
        desk, lakeview, emulator):
    # CA1 waits for food service from T0; at +30 s their call is routed to fees (as
    # another product key leaves it): they wait for fees alone, and their wait, in the
    # listing and in the call's log when they give up at +90 s, counts from T0.
    waits(desk, emulator, "CA1", T0, team="food-service")
    send_to_team(desk.r, "CA1", "fees", product="fees")
    assert acd.route_caller(desk, "CA1", T0 + 30 * SECOND) == \
        acd.WaitInQueue(team="fees", position=1)
    queues = waiting.waiting_callers(desk, T0 + 90 * SECOND)
    assert queues["food-service"] == []
    [ca1] = queues["fees"]
    assert (ca1["call_sid"], ca1["waiting_seconds"]) == ("CA1", 90.0)
    gave_up = acd.end_call(desk, "CA1", "completed", 90, T0 + 90 * SECOND)
    assert gave_up is not None
    assert (gave_up["abandoned"], gave_up["queue_wait_ms"]) == ("1", "90000")


def test_the_queues_a_supervisor_sees_count_a_callers_wait_from_their_first_arrival(
        desk, lakeview, emulator):
    # CA1 waits from T0; A2 is rung for them at +30 s and does not answer: CA1 is
    # back in line at +55 s, and has been waiting 90 s at +90 s, not 35.
    waits(desk, emulator, "CA1", T0)
    assert comes_back(desk, "A2", T0 + 30 * SECOND) == "CA1"
    acd.connect_claimed(desk, "CA1", T0 + 31 * SECOND)
    # (A2, just missed by CA1, is not rung for them again at once.)
    assert acd.after_dial(desk, "CA1", "A2", "no-answer", 0, T0 + 55 * SECOND) == \
        acd.WaitInQueue(team="general", position=1)
    [ca1] = waiting.waiting_callers(desk, T0 + 90 * SECOND)["general"]
    assert (ca1["call_sid"], ca1["waiting_seconds"]) == ("CA1", 90.0)


def test_the_longest_wait_on_the_wallboard_counts_from_first_arrival_too(
        desk, lakeview, emulator):
    from datetime import UTC, datetime

    from routing import stats

    waits(desk, emulator, "CA1", T0)
    assert comes_back(desk, "A2", T0 + 30 * SECOND) == "CA1"
    acd.connect_claimed(desk, "CA1", T0 + 31 * SECOND)
    acd.after_dial(desk, "CA1", "A2", "no-answer", 0, T0 + 55 * SECOND)
    at = datetime.fromtimestamp((T0 + 90 * SECOND) / 1000, tz=UTC)
    general = stats.team_stats(desk, at)["general"]
    assert (general["waiting"], general["longest_wait_seconds"]) == (1, 90.0)
