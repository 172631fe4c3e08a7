"""A callback put back in its place is offered again: Twilio would not place it (one
5xx is enough: an outbound call is never sent twice), or its advisor's phone rang
unanswered. Its contact hung up long ago, so no hold cycle of theirs claims an advisor:
the desk offers it to the next idle advisor at once after a missed ring (the one who
missed it a minute later), at the reconciler's next pass after Twilio failed, and when
an idle advisor says "available" again; three offers at most (docs/contract.md).

Pat (a verified contact) asks for the callback; A2 and A7 are the general team.
"""

from __future__ import annotations

import threading
import time

import pytest
import time_machine
from flask.testing import FlaskClient

from directory import keys
from routing import acd, availability
from routing.call_state import update_call
from routing.waiting import request_callback
from tests.conftest import BASE_URL, run_jobs
from tests.test_callback_lifetime import asks_for_a_callback, logs_of
from tests.test_real_world import API, TwilioAnsweringLate, queue_caller
from tests.webhooks import post
from workers import reconciler

A2_PHONE, A7_PHONE = "+16515550102", "+16515550199"


@pytest.fixture(autouse=True)
def worker_running(desk):
    """The worker's reconciler has run all along: its first pass, which notices a
    Redis it never saw (and recovers it), is not part of these stories."""
    reconciler.reconcile()


def rung(emulator) -> list[str]:
    """The advisors' phones the desk has placed a callback leg to, in order."""
    return [leg.to for leg in emulator.created_calls]


def waiting(client, team: str = "general") -> list[str]:
    """Who GET /api/queues shows waiting for `team`, in serving order."""
    return [caller["call_sid"] for caller in client.get("/api/queues", headers=API).json[team]]


def comes_on(client, advisor_id: str) -> None:
    """The advisor sets themselves available."""
    answer = client.put(f"/api/advisors/{advisor_id}/status", json={"status": "available"},
                        headers=API)
    assert answer.status_code == 200


def status(client, advisor_id: str) -> str:
    """The advisor's status as GET /api/advisors shows it."""
    [advisor] = [a for a in client.get("/api/advisors", headers=API).json
                 if a["id"] == advisor_id]
    return advisor["status"]


def misses(client, leg) -> None:
    """The advisor's phone rings out: Twilio posts the leg's end, unanswered."""
    post(client, leg.status_callback.removeprefix(BASE_URL),
         {"CallSid": leg.sid, "CallStatus": "no-answer", "CallDuration": "0"})


def test_a_callback_twilio_would_not_place_is_placed_at_the_reconcilers_next_pass(
        desk, client, emulator, lakeview):
    sid = asks_for_a_callback(client)
    emulator.fail_next(503)  # one 5xx: the leg is not asked for again at once
    comes_on(client, "A2")
    assert rung(emulator) == []
    assert waiting(client) == [sid] and status(client, "A2") == "available"
    reconciler.reconcile()  # the worker's next pass, within 10 s
    assert rung(emulator) == [A2_PHONE]
    assert waiting(client) == [] and status(client, "A2") == "busy"
    reconciler.reconcile()
    assert rung(emulator) == [A2_PHONE]  # placed once


def test_an_idle_advisor_saying_available_again_is_rung_for_the_callback(
        desk, client, emulator, lakeview):
    sid = asks_for_a_callback(client)
    emulator.fail_next(503)
    comes_on(client, "A2")
    assert waiting(client) == [sid]
    comes_on(client, "A2")
    assert rung(emulator) == [A2_PHONE]
    assert waiting(client) == []


def test_a_callback_its_advisor_missed_rings_the_next_idle_advisor_at_once(
        desk, client, emulator, lakeview):
    sid = asks_for_a_callback(client)
    comes_on(client, "A2")
    comes_on(client, "A7")  # nobody else waits: A7 idles
    [missed] = emulator.created_calls
    misses(client, missed)
    assert rung(emulator) == [A2_PHONE, A7_PHONE]
    assert waiting(client) == [] and status(client, "A2") == "available"
    reconciler.reconcile()
    assert rung(emulator) == [A2_PHONE, A7_PHONE]
    assert desk.r.hget(keys.call(sid), "ringing") == "A7"


def test_an_advisor_who_missed_a_callback_is_rung_again_a_minute_later_three_times_at_most(
        desk, client, emulator, lakeview):
    sid = asks_for_a_callback(client)
    comes_on(client, "A2")
    start = time.time()
    for offer in (1, 2, 3):
        with time_machine.travel(start + 61 * (offer - 1), tick=False):
            if offer < 3:
                reconciler.reconcile()
            else:
                # Two rings in a row let go by set A2 offline (docs/contract.md, "Away
                # after two missed rings"): back at the desk, A2 says so and is offered
                # Pat's callback at once.
                assert status(client, "A2") == "offline"
                comes_on(client, "A2")
            assert rung(emulator) == [A2_PHONE] * offer
            misses(client, emulator.created_calls[-1])
            # Just missed: A2 may have stepped away, and is not rung again yet.
            reconciler.reconcile()
            assert rung(emulator) == [A2_PHONE] * offer
    # The third offer not taken ends the callback: logged, nobody waits, no fourth ring.
    with time_machine.travel(start + 61 * 4, tick=False):
        reconciler.reconcile()
    assert rung(emulator) == [A2_PHONE] * 3
    assert waiting(client) == [] and status(client, "A2") == "available"
    run_jobs(desk)
    assert logs_of(desk, sid) == [("callback-unanswered", None)]


def test_a_product_teams_callback_overflows_to_an_idle_general_advisor(
        desk, client, emulator, lakeview):
    now_ms = int(time.time() * 1000)
    queue_caller(desk, "CA-cb", now_ms - 60_000, team="food-service")
    update_call(desk.r, "CA-cb", contact="5001", verified="1", district="D100")
    assert request_callback(desk, "CA-cb")
    acd.end_call(desk, "CA-cb", "completed", 60, now_ms)
    comes_on(client, "A2")  # Pat has waited a minute: the team's own advisors come first
    assert rung(emulator) == [] and waiting(client, "food-service") == ["CA-cb"]
    overflowed = now_ms / 1000 - 60 + desk.settings.overflow_seconds + 1
    with time_machine.travel(overflowed, tick=False):
        reconciler.reconcile()
    assert rung(emulator) == [A2_PHONE]
    assert waiting(client, "food-service") == []


def test_the_web_and_the_worker_offering_at_once_ring_one_advisor_once(
        desk, client, emulator, lakeview):
    sid = asks_for_a_callback(client)
    emulator.fail_next(503, 503)  # Twilio fails as each comes on: both idle beside Pat
    comes_on(client, "A2")
    comes_on(client, "A7")
    assert waiting(client) == [sid]
    start = threading.Barrier(4)
    now_ms = int(time.time() * 1000)

    def offers() -> None:
        start.wait()
        availability.offer_waiting_callers(desk, now_ms)

    threads = [threading.Thread(target=offers) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(rung(emulator)) == 1
    assert waiting(client) == []
    assert sorted(status(client, a) for a in ("A2", "A7")) == ["available", "busy"]


def test_a_pass_that_spent_its_time_leaves_the_offers_to_the_next_pass(
        desk, client, emulator, lakeview):
    sid = asks_for_a_callback(client)
    emulator.fail_next(503)
    comes_on(client, "A2")
    seconds = iter(range(100))  # each look at the clock, one second later

    def clock() -> float:
        return float(next(seconds))

    now_ms = int(time.time() * 1000)
    assert availability.offer_waiting_callers(desk, now_ms, budget_s=1, clock=clock) == 0
    assert waiting(client) == [sid] and rung(emulator) == []
    assert availability.offer_waiting_callers(desk, now_ms, budget_s=1) == 1
    assert waiting(client) == [] and rung(emulator) == [A2_PHONE]


def test_an_advisor_freed_for_a_callback_is_answered_at_once_while_twilio_stalls(
        settings, desk, client, emulator, lakeview, make_app, request):
    """A2 comes on with Pat's callback waiting, while Twilio's API holds every request.
    Placing A2's leg was done inside the request that freed A2 (here the API; as often
    a caller's own `<Dial>` action after a missed ring, or a status callback): it
    waited on Twilio, up to five tries of a connect timeout, far past the 15 s Twilio
    gives a webhook before the caller hears an application error and is cut off. Now
    the request answers at once, and A2 is rung for Pat once Twilio answers again."""
    sid = asks_for_a_callback(client)
    stalled = TwilioAnsweringLate(emulator, stalled=threading.Event())
    request.addfinalizer(stalled.close)
    web = make_app(settings.with_changes(twilio_api_url=stalled.url))
    web.test_client_class = FlaskClient  # answers without waiting for Twilio's API
    started = time.monotonic()
    comes_on(web.test_client(), "A2")
    assert time.monotonic() - started < 2, "the request waited on Twilio's API"
    assert rung(emulator) == []
    stalled.recover()
    assert web.extensions["caseline"].telephony.settle()
    assert rung(emulator) == [A2_PHONE]
    assert desk.r.hget(keys.call(sid), "ringing") == "A2"


def test_callbacks_twilio_refuses_are_tried_a_bounded_number_of_times(
        desk, client, emulator, lakeview):
    """Two callbacks wait and Twilio refuses every leg at once (a 400: the advisor's
    phone number is wrong in the directory). A2 comes on: each refusal puts that
    callback back and hands A2 the other, so the two would be tried in turn for ever,
    each a request to Twilio; the desk stops after a bounded number of tries (the last
    claim left to run out, as any claim whose caller was never brought over), and the
    reconciler then puts that one back in its place and, Twilio placing calls again,
    rings A2 for one of them."""
    first, second = asks_for_a_callback(client), asks_for_a_callback(client)
    emulator.fail_next(*[400] * 20)
    comes_on(client, "A2")  # returns once the web's background requests are over
    tried = [r for r in emulator.requests if r.method == "POST" and r.status == 400]
    assert len(tried) == 20, len(tried)  # `availability._MAX_REDIRECT_ATTEMPTS`
    assert rung(emulator) == []
    with time_machine.travel(time.time() + desk.lease_ms / 1000 + 1, tick=False):
        reconciler.reconcile()
    assert rung(emulator) == [A2_PHONE]
    [ringing] = [sid for sid in (first, second) if desk.r.hget(keys.call(sid), "ringing") == "A2"]
    assert waiting(client) == [{first, second}.difference([ringing]).pop()]
    assert status(client, "A2") == "busy"
