"""Calls whose final status callback never reached the line (Twilio posts it once; a
restart or a load balancer lost it): the reconciler asks Twilio about calls still open
ten minutes after they began, and ends and logs those Twilio says are over, once."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import redis.connection
import time_machine

from caseline.work import RECONCILE_EVERY_SECONDS
from directory import keys
from jobs.queues import CALL_LOGS_QUEUED_SECONDS
from routing import acd, presence
from routing.call_end import (
    OPEN_CALL_FETCH_TIMEOUT_SECONDS,
    OPEN_CALL_RECHECK_MS,
    OPEN_CALL_RETRY_MS,
    OPEN_CALLS_PASS_SECONDS,
)
from routing.call_state import OPEN_CALL_FIRST_CHECK_MS, get_call, start_call
from telephony import Telephony
from tests.conftest import (
    ACCOUNT_SID,
    API_TOKEN,
    AUTH_TOKEN,
    BASE_URL,
    make_available,
    run_jobs,
)
from tests.test_end_then_blip import FailAfterEnd
from tests.test_real_world import PAT
from tests.webhooks import post
from twilio_side import Caller, FlaskTransport
from workers import context
from workers.reconciler import reconcile

pytestmark = pytest.mark.databases

A7_PHONE = "+16515550199"


@pytest.fixture
def lakeview(directory):
    """A hosted district, its contact Pat, advisor A7 (owner of 2024117)."""
    directory.district()
    directory.contact()
    directory.advisor("A7", ["general"], phone=A7_PHONE)
    directory.case("2024117", owner="A7")
    directory.load()


@pytest.fixture
def quick(desk):
    """The desk, its REST retries a few milliseconds apart, used by the worker's jobs."""
    fast = dataclasses.replace(
        desk, telephony=Telephony(desk.settings, retry_delays=(0.01, 0.01, 0.01, 0.01)))
    context.configure(fast)
    return fast


def logs_on(desk, number: str) -> list[dict]:
    """The call logs on a case, as `GET /api/cases/<number>/calls` lists them."""
    from directory.call_logs import calls_on_case

    return calls_on_case(desk.session_factory, number)


def reconciler_pass(after_ms: int) -> dict[str, int]:
    """The worker's reconciler job, run `after_ms` (ms) from now."""
    with time_machine.travel(time.time() + after_ms / 1000, tick=False):
        return reconcile()


def fetches(emulator, sid: str) -> list[int]:
    """The answers (HTTP statuses) to the line's reads of a call at Twilio."""
    return [r.status for r in emulator.requests if r.method == "GET" and r.call_sid == sid]


def lost_callback_call(phone, keys_pressed: str = "1 2024117#"):
    """A call that ends with Twilio's status callback lost on the way to the line."""
    return phone.call(PAT, keys_pressed, status_path=None)


FIRST_CHECK = OPEN_CALL_FIRST_CHECK_MS + 1000


def test_a_call_whose_status_callback_is_lost_is_logged_by_the_reconciler(
        phone, quick, lakeview, emulator):
    make_available(quick, "A7")
    result = lost_callback_call(phone)
    assert result.outcome == "advisor"
    assert presence.advisor_state(quick.r, "A7")["status"] == "available"  # the Dial action
    run_jobs(quick)
    assert logs_on(quick, "2024117") == []  # nothing ended the call

    assert reconciler_pass(60_000)["open_calls_checked"] == 0  # too soon to ask Twilio
    done = reconciler_pass(FIRST_CHECK)
    assert (done["open_calls_checked"], done["open_calls_logged"]) == (1, 1)
    run_jobs(quick)

    [log] = logs_on(quick, "2024117")
    assert log["call_sid"] == result.call_sid
    assert (log["status"], log["answered_by"]) == ("answered", "A7")
    assert log["details"]["call_status"] == "completed"  # Twilio's
    call = get_call(quick.r, result.call_sid)
    assert call["duration"] == str(result.duration)  # Twilio's, not the reconciler's guess
    # Ended when Twilio says it ended, not ten minutes later when the line found out.
    ended = datetime.fromisoformat(log["ended_at"])
    assert abs(ended.astimezone(UTC).timestamp() - time.time()) < 30
    assert reconciler_pass(2 * FIRST_CHECK)["open_calls_checked"] == 0  # asked once


def test_a_status_callback_after_the_reconciler_ended_the_call_writes_no_second_log(
        phone, quick, lakeview, client):
    make_available(quick, "A7")
    result = lost_callback_call(phone)
    reconciler_pass(FIRST_CHECK)
    run_jobs(quick)
    [before] = logs_on(quick, "2024117")

    # The lost callback turns up at last (a retrying proxy), with another status.
    post(client, "/voice/status", {"CallSid": result.call_sid, "CallStatus": "canceled",
                                   "CallDuration": "7", "From": PAT})
    run_jobs(quick)
    assert logs_on(quick, "2024117") == [before]
    assert get_call(quick.r, result.call_sid)["call_status"] == "completed"
    assert presence.advisor_state(quick.r, "A7")["status"] == "available"


def _path(url: str) -> str:
    """The path (and query) of one of the line's URLs, as Twilio requests it."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _follow(client, answer: ET.Element, sid: str, digits: str) -> ET.Element:
    """Press `digits` at the `<Gather>` of a TwiML answer, as Twilio posts them."""
    action = next(answer.iter("Gather")).get("action", "")
    return post(client, _path(action), {"CallSid": sid, "Digits": digits})


def _talking_to_a7(client, emulator, sid: str) -> None:
    """Pat calls about 2024117 and A7 takes the call at the whisper: they talk."""
    emulator.register_call(sid, from_=PAT)
    greeting = post(client, "/voice/incoming", {"CallSid": sid, "From": PAT,
                                                "StirVerstat": "TN-Validation-Passed-A"})
    dial = _follow(client, _follow(client, greeting, sid, "1"), sid, "2024117#")
    [number] = dial.iter("Number")
    assert number.text == A7_PHONE
    heard = post(client, _path(number.get("url", "")), {"CallSid": "CA-a7-leg"})
    assert [el.tag for el in _follow(client, heard, "CA-a7-leg", "1")] != ["Hangup"]


def test_a_call_still_in_progress_at_twilio_is_left_talking(
        quick, lakeview, client, emulator):
    make_available(quick, "A7")
    _talking_to_a7(client, emulator, "CA-long")
    assert presence.advisor_state(quick.r, "A7")["hold"] == "talking"

    done = reconciler_pass(FIRST_CHECK)
    assert (done["open_calls_checked"], done["open_calls_live"]) == (1, 1)
    run_jobs(quick)
    assert logs_on(quick, "2024117") == []
    state = presence.advisor_state(quick.r, "A7")
    assert (state["hold"], state["call"]) == ("talking", "CA-long")  # not freed
    assert "ended_at" not in get_call(quick.r, "CA-long")
    # Asked again ten minutes on, not at every pass.
    assert reconciler_pass(FIRST_CHECK + 60_000)["open_calls_checked"] == 0

    # Twenty minutes in, A7 and Pat hang up; neither the <Dial>'s action nor the status
    # callback reaches the line. The next question finds the call over.
    emulator.end_call("CA-long", duration=1230)
    done = reconciler_pass(FIRST_CHECK + OPEN_CALL_RECHECK_MS)
    assert done["open_calls_logged"] == 1
    run_jobs(quick)
    [log] = logs_on(quick, "2024117")
    assert (log["status"], log["answered_by"]) == ("answered", "A7")
    assert presence.advisor_state(quick.r, "A7")["status"] == "available"


def test_an_end_the_reconciler_applied_halfway_frees_the_advisor_at_a_later_pass(
        quick, lakeview, client, emulator, monkeypatch):
    """Neither the `<Dial>`'s action nor the status callback reaches the line; the
    reconciler's pass ends the call (its end script commits, the call off the open
    calls) and Redis fails before A7's release: the pass fails. A later pass finds A7
    still talking on a call ended a minute ago or more and ends it again, as a repeat:
    A7 is free hours before the talk's lease runs out, and the call is logged once."""
    make_available(quick, "A7")
    _talking_to_a7(client, emulator, "CA-half")
    emulator.end_call("CA-half", duration=300)
    fault = FailAfterEnd(monkeypatch, quick, "CA-half", client=type(quick.r))
    with pytest.raises(redis.ConnectionError):
        reconciler_pass(FIRST_CHECK)
    assert fault.failed == 1
    monkeypatch.undo()
    assert presence.advisor_state(quick.r, "A7")["hold"] == "talking"

    done = reconciler_pass(FIRST_CHECK + 10_000)
    assert done["ended_holds_released"] == 1
    assert presence.advisor_state(quick.r, "A7")["status"] == "available"
    # A pass later still resumes the call's log (its job was never queued), once.
    later = reconciler_pass(FIRST_CHECK + (CALL_LOGS_QUEUED_SECONDS + 1) * 1000)
    assert (later["ended_holds_released"], later["call_logs_resumed"]) == (0, 1)
    run_jobs(quick)
    [log] = logs_on(quick, "2024117")
    assert (log["call_sid"], log["answered_by"]) == ("CA-half", "A7")


@pytest.mark.parametrize("fault", [429, 500])
def test_twilio_failing_leaves_the_call_open_for_a_later_pass(
        phone, quick, lakeview, emulator, fault):
    make_available(quick, "A7")
    first = lost_callback_call(phone)
    second = lost_callback_call(phone)
    emulator.fail_next_fetch(fault)  # one try: no retry within the pass

    done = reconciler_pass(FIRST_CHECK)
    assert done["open_calls_deferred"] == 2 and done["open_calls_ended"] == 0
    assert fetches(emulator, first.call_sid) == [fault]
    assert fetches(emulator, second.call_sid) == []  # Twilio is struggling: not asked
    run_jobs(quick)
    assert logs_on(quick, "2024117") == []

    # Not asked again at every pass: a minute later.
    assert reconciler_pass(FIRST_CHECK + 30_000)["open_calls_checked"] == 0
    done = reconciler_pass(FIRST_CHECK + OPEN_CALL_RETRY_MS + 1000)
    assert done["open_calls_logged"] == 2
    run_jobs(quick)
    assert sorted(log["call_sid"] for log in logs_on(quick, "2024117")) == sorted(
        [first.call_sid, second.call_sid])


def _open_unknown_call(client, sid: str = "CA-unknown") -> None:
    """A call the line opened and Twilio has no such call (its reads answer 404)."""
    post(client, "/voice/incoming", {"CallSid": sid, "From": PAT,
                                     "StirVerstat": "TN-Validation-Passed-A"})


def test_a_call_unknown_to_twilio_is_ended_and_logged_once_no_call_could_last_that_long(
        quick, lakeview, client, emulator):
    """Twilio answers 404 for a call the line opened longer ago than any call can last
    (the talk lease): no live call can post that status now, so the reconciler ends
    and logs it."""
    _open_unknown_call(client)
    done = reconciler_pass(quick.settings.talk_lease_seconds * 1000 + 60_000)
    assert (done["open_calls_checked"], done["open_calls_logged"]) == (1, 1)
    run_jobs(quick)
    with quick.session_factory() as db:
        from directory.models import CallLog

        [log] = db.query(CallLog).all()
    assert (log.call_sid, log.status) == ("CA-unknown", "ended-in-menu")
    assert log.details["call_status"] == "completed"


def test_a_404_on_a_call_that_may_still_be_live_ends_nothing(
        quick, lakeview, client, emulator, caplog):
    """A wrong account or region makes every read 404: calls ten minutes in are left
    open (a caller waiting, an advisor talking), the error named, asked again later."""
    make_available(quick, "A7")
    _talking_to_a7(client, emulator, "CA-talking")
    _open_unknown_call(client)
    emulator.fail_next_fetch(404)  # CA-talking's read, as under the wrong account

    done = reconciler_pass(FIRST_CHECK)
    assert (done["open_calls_checked"], done["open_calls_ended"]) == (2, 0)
    assert done["open_calls_unsettled"] == 2
    run_jobs(quick)
    assert logs_on(quick, "2024117") == []
    state = presence.advisor_state(quick.r, "A7")
    assert (state["hold"], state["call"]) == ("talking", "CA-talking")  # not freed
    errors = [r.getMessage() for r in caplog.records
              if r.levelname == "ERROR" and "unknown to Twilio (404)" in r.getMessage()]
    assert [("CA-talking" in e, "CA-unknown" in e) for e in errors] == [
        (True, False), (False, True)]
    for sid in ("CA-talking", "CA-unknown"):
        assert quick.r.exists(keys.call_ended(sid)) == 0
        due = quick.r.zscore(keys.open_calls(), sid)
        assert abs(due - (time.time() * 1000 + FIRST_CHECK + OPEN_CALL_RECHECK_MS)) < 30_000
    assert reconciler_pass(FIRST_CHECK + 60_000)["open_calls_checked"] == 0


def test_a_read_twilio_refuses_does_not_hold_up_the_calls_behind_it(
        phone, quick, lakeview, emulator, caplog):
    """A 4xx of its own (not 404, not 429) on one call's read: that call is asked again
    later, the others now."""
    make_available(quick, "A7")
    first = lost_callback_call(phone)
    second = lost_callback_call(phone)
    emulator.fail_next_fetch(400)

    done = reconciler_pass(FIRST_CHECK)
    assert (done["open_calls_checked"], done["open_calls_logged"]) == (2, 1)
    assert done["open_calls_unsettled"] == 1
    assert fetches(emulator, first.call_sid) == [400]
    assert any(r.levelname == "ERROR" and first.call_sid in r.getMessage()
               for r in caplog.records)
    run_jobs(quick)
    assert [log["call_sid"] for log in logs_on(quick, "2024117")] == [second.call_sid]

    assert reconciler_pass(FIRST_CHECK + 5 * 60_000)["open_calls_checked"] == 0
    done = reconciler_pass(FIRST_CHECK + OPEN_CALL_RECHECK_MS + 1000)
    assert done["open_calls_logged"] == 1
    run_jobs(quick)
    assert len(logs_on(quick, "2024117")) == 2


def test_twilio_answering_429_is_let_be_for_a_minute_account_wide(quick, lakeview, emulator):
    """A 429 is the account's rate limit (shared with the redirects that bring callers
    to advisors), not one call's: with more than a pass's worth of calls due (the
    backlog after an outage of the status callbacks), the next passes, 10 and 20 s on,
    do not hit Twilio again; a minute on, it is asked again."""
    now_ms = int(time.time() * 1000)
    for n in range(120):
        start_call(quick.r, f"CA-due-{n:03d}", {"caller": PAT, "started_at": now_ms})
    emulator.fail_next_fetch(*[429] * 100)
    done = reconciler_pass(FIRST_CHECK)
    assert (done["open_calls_checked"], done["open_calls_deferred"]) == (1, 50)
    asked_first = len([r for r in emulator.requests if r.method == "GET"])
    assert asked_first == 1
    later = [reconciler_pass(FIRST_CHECK + 10_000), reconciler_pass(FIRST_CHECK + 20_000)]
    asked = len([r for r in emulator.requests if r.method == "GET"])
    assert asked == asked_first, f"{asked - asked_first} more requests within 20 s of a 429"
    assert [done["open_calls_paused"] for done in later] == [1, 1]
    assert reconciler_pass(FIRST_CHECK + 61_000)["open_calls_checked"] == 1  # 429 again


def test_a_caller_keeping_their_place_for_a_callback_is_not_logged_early(
        phone, quick, lakeview):
    caller = phone.caller(PAT, "2 wait:1", max_wait_seconds=5, status_path=None)
    caller.run()
    assert quick.r.zscore(keys.team_waiting("general"), caller.call_sid) is not None

    done = reconciler_pass(FIRST_CHECK)
    assert done["open_calls_checked"] == 1 and done["open_calls_logged"] == 0
    run_jobs(quick)
    with quick.session_factory() as db:
        from directory.models import CallLog

        assert db.query(CallLog).all() == []  # logged when the callback is over
    assert quick.r.zscore(keys.team_waiting("general"), caller.call_sid) is not None
    assert get_call(quick.r, caller.call_sid)["callback_state"] == "waiting"
    assert reconciler_pass(2 * FIRST_CHECK)["open_calls_checked"] == 0  # asked once


def test_the_reconciler_keeps_the_callback_end_on_a_callback_whose_inbound_status_was_lost(
        phone, desk, lakeview, client, emulator, app):
    """Pat asks for a callback and hangs up; that status callback is lost. The callback
    is placed, talked and over (its log queued) before the reconciler's first
    question; the log is written after it (the log worker behind, a database blip).
    The log must say when the callback ended, as it does when the status came."""
    caller = phone.caller(PAT, "2 wait:1", max_wait_seconds=5, status_path=None)
    caller.run()
    client.put("/api/advisors/A7/status", json={"status": "available"},
               headers={"Authorization": f"Bearer {API_TOKEN}"})
    [leg] = [c for c in emulator.created_calls if c.to == A7_PHONE]
    advisor_leg = Caller(
        FlaskTransport(app.test_client(), BASE_URL, auth_token=AUTH_TOKEN),
        "+18005550100", A7_PHONE, start_url=leg.url, direction="outbound-api",
        call_sid=leg.sid, keys=["1"], advisor_policy={PAT: "answer"},
        account_sid=ACCOUNT_SID, status_path=leg.status_callback, talk_seconds=90)
    with time_machine.travel(time.time() + 300, tick=False):  # A7 frees up 5 min on
        assert advisor_leg.run().outcome == "advisor"
    callback_over = get_call(desk.r, caller.call_sid)
    assert callback_over["callback_state"] == "done"

    reconciler_pass(FIRST_CHECK)  # Twilio: Pat's own call completed long ago
    run_jobs(desk)
    with desk.session_factory() as db:
        from directory.models import CallLog

        [log] = db.query(CallLog).all()
    ended = int(log.ended_at.replace(tzinfo=UTC).timestamp() * 1000)
    assert ended >= int(callback_over["ended_at"]) - 1000, (
        f"log ends {(int(callback_over['ended_at']) - ended) / 1000:.0f} s before the "
        f"callback did, before its talk began")
    after = get_call(desk.r, caller.call_sid)
    assert after["ended_at"] == callback_over["ended_at"]
    assert after["call_status"] == "completed"  # Pat's own call's, still recorded


def test_a_call_whose_state_expired_is_dropped_without_asking_twilio(
        phone, quick, lakeview, emulator):
    make_available(quick, "A7")
    result = lost_callback_call(phone)
    quick.r.delete(keys.call(result.call_sid))  # its day is over
    done = reconciler_pass(FIRST_CHECK)
    assert (done["open_calls_dropped"], done["open_calls_checked"]) == (1, 0)
    assert fetches(emulator, result.call_sid) == []
    assert quick.r.zcard(keys.open_calls()) == 0


class _RoundTrips:
    """Counts what this process sends to Redis (one packed send per round trip)."""

    def __init__(self, monkeypatch) -> None:
        self.count = 0
        send = redis.connection.AbstractConnection.send_packed_command

        def counted(conn, command, check_health=True):
            self.count += 1
            return send(conn, command, check_health)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)


def test_the_open_calls_cost_the_first_webhook_and_the_status_callback_no_round_trip(
        quick, lakeview, client, monkeypatch):
    """The index is written inside the scripts that open and end the call's state."""
    post(client, "/voice/incoming", {"CallSid": "CA-warm", "From": PAT,
                                     "StirVerstat": "TN-Validation-Passed-A"})
    post(client, "/voice/status", {"CallSid": "CA-warm", "CallStatus": "completed",
                                   "CallDuration": "5"})  # scripts loaded, cache filled
    trips = _RoundTrips(monkeypatch)
    post(client, "/voice/incoming", {"CallSid": "CA-count", "From": PAT,
                                     "StirVerstat": "TN-Validation-Passed-A"})
    incoming, trips.count = trips.count, 0
    opened = quick.r.zscore(keys.open_calls(), "CA-count")
    trips.count = 0
    post(client, "/voice/status", {"CallSid": "CA-count", "CallStatus": "completed",
                                   "CallDuration": "5"})
    status = trips.count
    assert opened is not None and quick.r.zscore(keys.open_calls(), "CA-count") is None
    assert (incoming, status) == (2, 2)  # as before the open calls were kept


@pytest.fixture
def silent_twilio():
    """Twilio's API host taking connections and never answering (an incident, a
    stuck proxy): the kernel completes the handshake, nobody reads."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_a_twilio_that_does_not_answer_holds_the_reconciler_no_longer_than_its_interval(
        desk, lakeview, client, silent_twilio):
    """RQ's cron queues the reconciler every RECONCILE_EVERY_SECONDS on the presence
    queue (it does not wait for the last one), which the worker drains before the call
    logs: a pass that outlasts the interval piles reconcile jobs up and starves them."""
    for sid in ("CA-slow-1", "CA-slow-2"):
        post(client, "/voice/incoming", {"CallSid": sid, "From": PAT,
                                         "StirVerstat": "TN-Validation-Passed-A"})
    # The worker's desk as `workers.context.build_desk` makes it: Telephony(settings).
    worker = dataclasses.replace(desk, telephony=Telephony(
        dataclasses.replace(desk.settings, twilio_api_url=silent_twilio)))
    context.configure(worker)
    started = time.perf_counter()
    done = reconciler_pass(FIRST_CHECK)
    took = time.perf_counter() - started
    assert (done["open_calls_checked"], done["open_calls_deferred"]) == (1, 2)
    assert took < OPEN_CALL_FETCH_TIMEOUT_SECONDS + 1, f"one reconcile pass took {took:.1f} s"


def test_a_pass_against_a_twilio_that_never_answers_fits_in_the_reconcilers_interval():
    """The budget is checked before each question, and the last one asked may take a
    connect and a read timeout."""
    assert OPEN_CALLS_PASS_SECONDS + 2 * OPEN_CALL_FETCH_TIMEOUT_SECONDS < RECONCILE_EVERY_SECONDS


def test_a_call_in_flight_across_the_upgrade_is_logged_when_its_callback_is_lost(
        quick, settings, lakeview, client, emulator):
    """Pat's call was opened by the previous release (its state, no place among the
    open calls). The release is deployed: `caseline serve` restarts, the moment a
    status callback is most likely lost, and this one is. The service's start brings
    the previous release's state to this release's shape (`prepare_service`)."""
    from caseline.cli import prepare_service

    emulator.register_call("CA-in-flight", from_=PAT)
    post(client, "/voice/incoming", {"CallSid": "CA-in-flight", "From": PAT,
                                     "StirVerstat": "TN-Validation-Passed-A"})
    quick.r.zrem(keys.open_calls(), "CA-in-flight")  # as the previous release left it
    prepare_service(settings)
    emulator.end_call("CA-in-flight", duration=40)  # its status callback lost
    assert reconciler_pass(60_000)["open_calls_checked"] == 0  # not before ten minutes
    done = reconciler_pass(FIRST_CHECK)
    assert done["open_calls_logged"] == 1, done


def test_the_upgrade_indexes_only_calls_nothing_ended_and_twice_changes_nothing(
        quick, lakeview, client):
    from routing.upgrade import index_open_calls

    now_ms = int(time.time() * 1000)
    for sid in ("CA-live", "CA-over"):
        post(client, "/voice/incoming", {"CallSid": sid, "From": PAT,
                                         "StirVerstat": "TN-Validation-Passed-A"})
    post(client, "/voice/status", {"CallSid": "CA-over", "CallStatus": "completed",
                                   "CallDuration": "5"})
    quick.r.hset(keys.call("CA-no-start"), "caller", PAT)  # its start unknown
    quick.r.zadd(keys.call_tried("CA-live"), {"A7": now_ms})  # a call's other key
    quick.r.delete(keys.open_calls())  # as the previous release left them
    started = int(get_call(quick.r, "CA-live")["started_at"])

    assert index_open_calls(quick.r, now_ms) == 2
    assert dict(quick.r.zrange(keys.open_calls(), 0, -1, withscores=True)) == {
        "CA-live": started + OPEN_CALL_FIRST_CHECK_MS, "CA-no-start": now_ms}
    assert index_open_calls(quick.r, now_ms + 5000) == 0
    assert dict(quick.r.zrange(keys.open_calls(), 0, -1, withscores=True)) == {
        "CA-live": started + OPEN_CALL_FIRST_CHECK_MS, "CA-no-start": now_ms}


def test_a_caller_whose_end_twilio_dates_before_their_wait_began_waited_no_time(
        quick, lakeview, client):
    """Twilio's end_time is whole seconds: a caller who hung up within a second of
    joining the queue ends, by it, before they were enqueued."""
    greeting = post(client, "/voice/incoming", {"CallSid": "CA-brief", "From": PAT,
                                                "StirVerstat": "TN-Validation-Passed-A"})
    _follow(client, _follow(client, greeting, "CA-brief", "1"), "CA-brief", "2024117#")
    call = get_call(quick.r, "CA-brief")
    enqueued = int(call["enqueued_at"])
    assert call["waiting_team"]
    # Hung up 0.3 s after joining; Twilio's end time, cut to the second, 0.5 s before.
    ended = acd.end_call(quick, "CA-brief", "completed", 1, enqueued + 900,
                         ended_ms=enqueued - 500)
    assert ended is not None and ended["abandoned"] == "1"
    assert int(ended["queue_wait_ms"]) == 0


def test_a_call_over_within_the_second_it_began_never_ends_before_it_began(
        quick, lakeview, client, emulator):
    """Twilio's end_time is whole seconds: a caller who hangs up within the second the
    line answered, whose status callback is lost, must not be logged as ending before
    they called (a negative call length in the supervisor's reports)."""
    at = datetime.fromtimestamp(int(time.time()) + 0.9, UTC)
    with time_machine.travel(at, tick=False):
        emulator.register_call("CA-brief-2", from_=PAT)
        post(client, "/voice/incoming", {"CallSid": "CA-brief-2", "From": PAT,
                                         "StirVerstat": "TN-Validation-Passed-A"})
        emulator.end_call("CA-brief-2", duration=0)  # hung up at once; callback lost
    with time_machine.travel(at.timestamp() + FIRST_CHECK / 1000, tick=False):
        done = reconcile()
    assert done["open_calls_logged"] == 1
    call = get_call(quick.r, "CA-brief-2")
    assert int(call["ended_at"]) >= int(call["started_at"]), (
        f"ended {int(call['started_at']) - int(call['ended_at'])} ms before it started")


class _ReadsOnlyTwilio(BaseHTTPRequestHandler):
    """Twilio answering reads at once (the call is completed) and never answering
    actions (a POST: the hang-up of a leg): an incident's onset."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        sid = self.path.rsplit("/", 1)[-1].removesuffix(".json")
        body = json.dumps({"sid": sid, "status": "completed", "duration": "40",
                           "end_time": "Mon, 01 Jan 2024 00:00:00 +0000"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        time.sleep(30)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def reads_only_twilio():
    with _serving(_ReadsOnlyTwilio) as url:
        yield url


@contextlib.contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A local HTTP server answering as `handler` does, standing in for Twilio's API;
    its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_pass_closing_a_call_with_conference_legs_stays_inside_the_interval(
        desk, lakeview, client, reads_only_twilio):
    """The legs a closed call left in its conference are hung up within the pass's
    time (one short try each), not with the worker client's retries (~28 s a leg),
    which would hold the presence queue's single worker past the interval."""
    post(client, "/voice/incoming", {"CallSid": "CA-conf", "From": PAT,
                                     "StirVerstat": "TN-Validation-Passed-A"})
    desk.r.hset(keys.call("CA-conf"), mapping={
        "conference": "CA-conf", "advisor_leg": "CA-leg-a7", "colleague_leg": "CA-leg-col"})
    worker = dataclasses.replace(desk, telephony=Telephony(
        dataclasses.replace(desk.settings, twilio_api_url=reads_only_twilio)))
    context.configure(worker)
    started = time.perf_counter()
    with time_machine.travel(time.time() + FIRST_CHECK / 1000, tick=True):
        done = reconcile()
    took = time.perf_counter() - started
    assert done["open_calls_logged"] == 1
    assert took < RECONCILE_EVERY_SECONDS, f"one reconcile pass took {took:.1f} s"


class _ProxyPage(BaseHTTPRequestHandler):
    """Something that is not Twilio answering 200 with a page (a captive proxy)."""

    def do_GET(self) -> None:  # noqa: N802
        body = b"<html>please sign in</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_page_that_is_not_twilios_answer_pauses_the_check_and_fails_no_job(
        desk, lakeview, client):
    with _serving(_ProxyPage) as url:
        post(client, "/voice/incoming", {"CallSid": "CA-proxied", "From": PAT,
                                         "StirVerstat": "TN-Validation-Passed-A"})
        worker = dataclasses.replace(desk, telephony=Telephony(
            dataclasses.replace(desk.settings, twilio_api_url=url)))
        context.configure(worker)
        done = reconciler_pass(FIRST_CHECK)
        assert (done["open_calls_checked"], done["open_calls_deferred"]) == (1, 1)
        assert reconciler_pass(FIRST_CHECK + 10_000)["open_calls_paused"] == 1
        assert desk.r.zscore(keys.open_calls(), "CA-proxied") is not None  # still open


def test_a_redis_restart_has_every_open_call_asked_about_at_once_once(
        quick, lakeview, client, emulator):
    """Redis restored from an older snapshot (its kept `run_id` an older server's): the
    next pass asks Twilio about every open call, not ten minutes after each began.
    The call that is over is ended; the one still live is left alone, asked about again
    only as any live call is; and the next pass asks nothing more."""
    for sid in ("CA-over", "CA-live"):
        emulator.register_call(sid, from_=PAT)
        post(client, "/voice/incoming", {"CallSid": sid, "From": PAT,
                                         "StirVerstat": "TN-Validation-Passed-A"})
    quick.r.zrem(keys.open_calls(), "CA-over")  # its index entry rewound too: re-indexed
    first = reconciler_pass(0)  # a Redis seen for the first time: no restart
    assert (first["open_calls_made_due"], first["open_calls_checked"]) == (0, 0)
    emulator.end_call("CA-over", duration=40)  # its status callback lost
    assert reconciler_pass(60_000)["open_calls_checked"] == 0  # the same Redis: not yet

    quick.r.set(keys.redis_run_id(), "0" * 40)  # as a restored snapshot brings it back
    done = reconciler_pass(60_000)
    assert done["open_calls_made_due"] == 2, done
    assert (done["open_calls_checked"], done["open_calls_logged"],
            done["open_calls_live"]) == (2, 1, 1), done
    assert get_call(quick.r, "CA-over").get("ended_at")
    assert not get_call(quick.r, "CA-live").get("ended_at")
    assert fetches(emulator, "CA-live") == [200]
    again = reconciler_pass(120_000)
    assert (again["open_calls_made_due"], again["open_calls_checked"]) == (0, 0), again
