"""Waiting well: what a waiting caller hears, callbacks, overflow, wrap-up,
and the service level supervisors see."""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from rq import Worker
from sqlalchemy import select

from config.prompts import Prompts
from config.settings import PROJECT_ROOT
from directory import keys
from directory.models import CallLog
from directory.redis_client import connect_redis
from jobs.queues import WRAPUP_ENDS
from routing import acd, availability, presence
from routing.call_state import start_call
from telephony.client import Telephony
from tests.conftest import (
    ACCOUNT_SID,
    API_TOKEN,
    AUTH_TOKEN,
    BASE_URL,
    caseline_command,
    make_available,
    run_jobs,
)
from tests.live import wait_for
from tests.test_callback_lifetime import a2_takes_the_callback_and_pat_answers, asks_for_a_callback
from tests.webhooks import post, post_without_token, signed_post
from twilio_side import Caller, FlaskTransport
from workers import reconciler

PAT = "+16125550101"
CHICAGO = ZoneInfo("America/Chicago")
API = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def lakeview(directory):
    directory.district()
    directory.contact()
    directory.advisor("A7", ["general", "hosting"], phone="+16515550199")
    directory.advisor("A2", ["general"], phone="+16515550102")
    directory.advisor("A5", ["fees"], phone="+16515550105")
    directory.case("2024117", owner="A7")
    directory.load()


def queue_caller(desk, sid: str, team: str = "general", at_ms: int | None = None,
                 priority: str = "medium") -> None:
    """A caller who reached the queue (session as the webhooks leave it)."""
    now = at_ms or int(time.time() * 1000)
    start_call(desk.r, sid, {"caller": PAT, "base": BASE_URL, "started_at": now,
                                "team": team, "priority": priority, "menu": "2"})
    claim = presence.claim_for_caller(desk.r, sid, team=team, owner_id=None, now_ms=now,
                                      lease_ms=35_000, priority=priority)
    assert claim.outcome == "queued"


def on_another_call(desk, advisor_id: str, team: str = "general") -> None:
    """The advisor comes on and is rung for another caller at once (before the line
    offers them anyone waiting): busy, holding a call."""
    now = int(time.time() * 1000)
    presence.make_available(desk.r, advisor_id, now_ms=now, lease_ms=35_000, explicit=True)
    start_call(desk.r, "CA-other", {"caller": "+16125550177", "base": BASE_URL,
                                    "started_at": now, "team": team, "menu": "2"})
    claim = presence.claim_for_caller(desk.r, "CA-other", team=team, owner_id=advisor_id,
                                      now_ms=now, lease_ms=35_000)
    assert claim.advisor_id == advisor_id
    assert presence.advisor_state(desk.r, advisor_id)["hold"] == "ringing"


def hold_cycle(client, sid: str) -> list[str]:
    """Post the waitUrl as Twilio does; what the caller hears in that cycle."""
    response = signed_post(client, "/voice/wait",
                           {"CallSid": sid, "QueuePosition": "1", "QueueTime": "10"})
    return [say.text or "" for say in ET.fromstring(response.data).iter("Say")]


def test_position_and_estimate_change_as_callers_ahead_leave(client, desk, lakeview):
    p = Prompts()
    on_another_call(desk, "A7")
    desk.r.rpush(keys.team_waits("general"), 40, 40)  # recent waits: 40 s each
    for n in range(3):
        queue_caller(desk, f"CA{n}")
    heard = hold_cycle(client, "CA2")
    assert p.text("routing.queued", position=3) in heard
    assert p.text("routing.estimate", minutes="2 minutes") in heard
    acd.end_call(desk, "CA0", "completed", 30, int(time.time() * 1000))  # hangs up
    heard = hold_cycle(client, "CA2")
    assert p.text("routing.queued", position=2) in heard
    assert p.text("routing.estimate", minutes="1 minute") in heard
    stats = client.get("/api/stats", headers=API).get_json()
    assert stats["general"]["waiting"] == 2


def test_with_nobody_working_the_team_no_wait_is_promised(client, desk, lakeview):
    """At night, every hosting advisor offline: an outage caller hears their place and
    that nobody is available, never an estimate the desk cannot keep."""
    p = Prompts()
    now = int(time.time() * 1000)
    queue_caller(desk, "CA-first", team="hosting", priority="critical", at_ms=now - 1000)
    queue_caller(desk, "CA-night", team="hosting", priority="critical", at_ms=now)
    heard = hold_cycle(client, "CA-night")
    assert p.text("routing.queued_nobody_working", position=2) in heard
    assert p.text("routing.queued", position=2) not in heard
    assert p.text("routing.estimate_short") not in heard
    # A7 comes on and is rung for the caller ahead: an estimate again (once the count,
    # cached a few seconds for the hold cycles, is read anew).
    presence.make_available(desk.r, "A7", now_ms=now, lease_ms=35_000, explicit=True)
    assert hold_cycle(client, "CA-first") == []  # leaves the queue for A7
    assert presence.advisor_state(desk.r, "A7")["hold"] == "ringing"
    desk.r.delete(keys.team_working("hosting"))
    heard = hold_cycle(client, "CA-night")
    assert p.text("routing.queued", position=1) in heard
    assert p.text("routing.estimate_short") in heard


def test_with_every_advisor_busy_by_choice_no_wait_is_promised(phone, desk, lakeview):
    """Nobody on a call and every advisor of the team busy by their own choice (a
    meeting, a break): nobody serves the queue, so the caller hears their place and that
    no wait can be estimated, not "helping other callers" and "less than a minute"."""
    p = Prompts()
    make_available(desk, "A7", "A2")
    now_ms = int(time.time() * 1000)
    presence.make_unavailable(desk.r, "A7", "busy", now_ms=now_ms)
    presence.make_unavailable(desk.r, "A2", "busy", now_ms=now_ms)
    result = phone.call(PAT, "1 2024117#", max_wait_seconds=0.2)
    assert result.outcome == "queue"
    heard = " ".join(result.heard())
    assert p.text("routing.estimate_short") not in heard
    assert "helping other callers" not in heard
    assert p.text("routing.queued_nobody_working", position=1) in heard


def press_on_hold(client, sid: str, digits: str) -> ET.Element:
    """A key pressed at the hold cycle's question, posted as Twilio does; the TwiML."""
    response = signed_post(client, "/voice/callback", {"CallSid": sid, "Digits": digits})
    return ET.fromstring(response.data)


@pytest.mark.parametrize("digits", ["2", "9", "#"])
def test_a_key_not_on_offer_keeps_the_callers_place(client, desk, lakeview, digits):
    """An outage caller who has waited a minute (the voicemail is offered only after
    CASELINE_MAX_WAIT_SECONDS, 1200 s) presses a stray key: still waiting, first in line."""
    now = int(time.time() * 1000)
    queue_caller(desk, "CA-outage", team="hosting", at_ms=now - 60_000, priority="critical")
    assert Prompts().text("routing.voicemail_offer") not in hold_cycle(client, "CA-outage")
    answered = press_on_hold(client, "CA-outage", digits)
    assert answered.find("Leave") is None and answered.find("Record") is None
    assert desk.r.zrank(keys.team_waiting("hosting"), "CA-outage") == 0


def test_key_2_leaves_for_a_voicemail_once_the_longest_wait_is_over(client, desk, lakeview):
    now = int(time.time() * 1000)
    max_wait_ms = desk.settings.max_wait_seconds * 1000
    queue_caller(desk, "CA-long", at_ms=now - max_wait_ms - 1_000)
    assert Prompts().text("routing.voicemail_offer") in hold_cycle(client, "CA-long")
    assert [el.tag for el in press_on_hold(client, "CA-long", "2")] == ["Leave"]
    assert desk.r.zscore(keys.team_waiting("general"), "CA-long") is None


def test_key_2_repeated_without_its_token_leaves_for_the_voicemail_again(
        client, desk, lakeview):
    """Pat presses 2 for a voicemail; Twilio timed out on the reply and posts the key
    again without its token, acting on the second reply: Pat leaves Twilio's queue for
    the recording, never left there out of the desk's queue."""
    now = int(time.time() * 1000)
    queue_caller(desk, "CA-msg", at_ms=now - desk.settings.max_wait_seconds * 1000 - 1_000)
    assert [el.tag for el in press_on_hold(client, "CA-msg", "2")] == ["Leave"]
    assert [el.tag for el in press_on_hold(client, "CA-msg", "2")] == ["Leave"]
    after = post(client, "/voice/queue-result", {"CallSid": "CA-msg", "QueueResult": "leave",
                                                "CallStatus": "in-progress"})
    assert after.find("Record") is not None


def test_callback_keeps_the_place_and_calls_back_advisor_first(phone, desk, lakeview, client,
                                                               emulator, app):
    caller = phone.caller(PAT, "2 wait:1", max_wait_seconds=5)
    result = caller.run()
    assert result.queued and result.outcome != "advisor"
    # The caller has hung up but keeps their place in line.
    assert desk.r.zscore(keys.team_waiting("general"), caller.call_sid) is not None
    client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
    [leg] = emulator.created_calls
    assert leg.to == "+16515550102"  # the advisor is called first
    advisor_leg = Caller(
        FlaskTransport(app.test_client(), BASE_URL, auth_token=AUTH_TOKEN),
        "+18005550100", "+16515550102", start_url=leg.url, direction="outbound-api",
        call_sid=leg.sid,
        keys=["1"], advisor_policy={PAT: "answer"}, account_sid=ACCOUNT_SID,
        status_path=leg.status_callback, talk_seconds=90)
    callback = advisor_leg.run()
    assert callback.dialed == [PAT]  # then the contact, bridged
    assert callback.outcome == "advisor"
    run_jobs(desk)
    [log] = client.get("/api/cases/" + _new_case(desk), headers=API).get_json() or [None]
    assert log["answered_by"] == "A2" and log["talk_seconds"] == 90
    # Pat's place was kept from joining the queue until the callback was placed.
    assert log["queue_wait_seconds"] is not None and log["queue_wait_seconds"] > 0
    assert presence.advisor_state(desk.r, "A2")["status"] == "available"


def _new_case(desk) -> str:
    """The number of the case the worker opened for the last call, with /calls."""
    from directory.models import CallLog

    with desk.session_factory() as db:
        log = db.query(CallLog).order_by(CallLog.id.desc()).first()
        return f"{log.case_number}/calls"


def test_an_advisor_who_misses_a_callback_is_let_go_before_their_claim_runs_out(
        phone, desk, lakeview, client, emulator):
    # Twilio rings an outbound call 60 s unless told otherwise, longer than the claim
    # on the advisor: the reconciler would free them mid-ring, and the leg's no-answer
    # would then find the caller's place gone (never called back).
    phone.caller(PAT, "2 wait:1", max_wait_seconds=5).run()
    client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
    [leg] = emulator.created_calls
    assert int(leg.form["Timeout"]) == desk.settings.ring_timeout_seconds
    assert desk.settings.ring_timeout_seconds * 1000 < desk.lease_ms


def test_callback_to_a_contact_who_never_answers_is_tried_three_times(phone, desk, lakeview,
                                                                     client, emulator, app):
    caller = phone.caller(PAT, "2 wait:1", max_wait_seconds=5)
    caller.run()
    client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
    [leg] = emulator.created_calls
    advisor_leg = Caller(
        FlaskTransport(app.test_client(), BASE_URL, auth_token=AUTH_TOKEN),
        "+18005550100", "+16515550102", start_url=leg.url, direction="outbound-api",
        call_sid=leg.sid,
        keys=["1"], advisor_policy={PAT: "no-answer"}, account_sid=ACCOUNT_SID,
        status_path=leg.status_callback)
    callback = advisor_leg.run()
    assert callback.dialed == [PAT, PAT, PAT]
    run_jobs(desk)
    [log] = client.get("/api/cases/" + _new_case(desk), headers=API).get_json()
    assert log["status"] == "callback-unanswered"
    assert log["advisors_tried"] == ["A2"]
    assert presence.advisor_state(desk.r, "A2")["status"] == "available"


def test_product_caller_overflows_to_general_after_the_limit(desk, lakeview, emulator):
    now = int(time.time() * 1000)
    emulator.register_call("CA-fees")
    queue_caller(desk, "CA-fees", team="fees", at_ms=now - 200_000)  # waited 200 s > 120 s
    queue_caller(desk, "CA-fees-new", team="fees", at_ms=now - 1_000)
    # A general advisor frees up: serves the long-waiting fees caller, not the new one.
    release = availability.free_advisor(desk, "A2", now, explicit=True)
    assert release.call_sid == "CA-fees"
    assert emulator.redirects("CA-fees")
    assert desk.r.zscore(keys.team_waiting("fees"), "CA-fees-new") is not None


def test_idle_general_advisor_is_offered_on_the_next_hold_cycle(desk, lakeview, client):
    now = int(time.time() * 1000)
    make_available(desk, "A2")
    queue_caller(desk, "CA-fees", team="fees", at_ms=now - 200_000)
    root_texts = hold_cycle(client, "CA-fees")
    assert root_texts == []  # <Leave/>: the caller goes on to A2
    assert presence.advisor_state(desk.r, "A2")["call"] == "CA-fees"


def test_abandoned_caller_leaves_the_queue_at_once(phone, desk, lakeview, client):
    result = phone.call(PAT, "2", max_wait_seconds=0.2)
    assert result.queued
    assert desk.r.zcard(keys.team_waiting("general")) == 0
    run_jobs(desk)
    assert client.get("/api/stats", headers=API).get_json()["general"]["abandoned"] == 1


def call_log(desk, sid: str) -> dict:
    """The call log the worker wrote for `sid`, as the API shows call logs."""
    with desk.session_factory() as db:
        return db.scalars(select(CallLog).where(CallLog.call_sid == sid)).one().to_dict()


def status_callback(client, sid: str, duration: int, caller: str = PAT) -> None:
    """Twilio's final status callback of a caller's call, signed."""
    signed_post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                          "CallDuration": str(duration), "From": caller})


def test_an_abandoned_callers_log_keeps_how_long_they_waited_and_the_desk_hears_at_once(
        desk, lakeview, client):
    now = int(time.time() * 1000)
    queue_caller(desk, "CA-gave-up", at_ms=now - 42_000)
    pages = desk.r.pubsub()  # a wallboard open from now on
    pages.subscribe(keys.desk_changes())
    assert pages.get_message(timeout=2)["type"] == "subscribe"
    status_callback(client, "CA-gave-up", 50)
    heard = pages.get_message(timeout=2)
    pages.close()
    run_jobs(desk)
    gave_up = call_log(desk, "CA-gave-up")

    assert heard and heard["data"] == "queue"
    assert desk.r.zcard(keys.team_waiting("general")) == 0
    assert gave_up["details"]["abandoned"] is True
    assert 42 <= gave_up["queue_wait_seconds"] < 50


def _gave_up(desk, client, sid: str, team: str = "general") -> tuple[dict, dict]:
    """Pat's call `sid` is over (status callback 50 s): its log and `team`'s stats."""
    status_callback(client, sid, 50)
    run_jobs(desk)
    return call_log(desk, sid), client.get("/api/stats", headers=API).get_json()[team]


@pytest.mark.parametrize("brought_over", ["redirect-sent", "redirect-404", "ringing"])
def test_a_caller_who_hangs_up_as_a_freed_advisor_is_claimed_for_them_is_abandoned(
        desk, lakeview, client, emulator, brought_over):
    """Pat waited 42 s; A2 frees up and is claimed for Pat. Pat hangs up before reaching
    A2: as Twilio moves the call (the redirect sent), before it (the redirect answers
    404), or while A2's phone rings. Abandoned, with the 42 s in the queue; A2 free."""
    now = int(time.time() * 1000)
    emulator.register_call("CA-late")
    queue_caller(desk, "CA-late", at_ms=now - 42_000)
    if brought_over == "redirect-404":
        emulator.end_call("CA-late")
    availability.free_advisor(desk, "A2", now, explicit=True)
    assert len(emulator.redirects("CA-late")) == 1
    if brought_over == "ringing":
        dial = post_without_token(client, "/voice/connect", {"CallSid": "CA-late",
                                                             "CallStatus": "in-progress"})
        assert [n.text for n in dial.iter("Number")] == ["+16515550102"]
    emulator.end_call("CA-late")
    gave_up, general = _gave_up(desk, client, "CA-late")

    assert gave_up["status"] == "abandoned" and gave_up["details"]["abandoned"] is True
    assert 42 <= gave_up["queue_wait_seconds"] < 43  # the wait ended at the claim
    assert (general["abandoned"], general["answered"], general["asa_seconds"]) == (1, 0, None)
    assert presence.advisor_state(desk.r, "A2")["status"] == "available"


def test_a_caller_who_hangs_up_after_a_hold_cycle_took_a_free_advisor_is_abandoned(
        desk, lakeview, client):
    """Pat has waited 200 s for fees; a hold cycle finds general's A2 idle and leaves the
    queue for A2 (`<Leave/>`, overflow); Pat hangs up before Twilio posts the
    `<Enqueue>` action. Abandoned, with the 200 s in the queue; A2 free again."""
    now = int(time.time() * 1000)
    make_available(desk, "A2")
    queue_caller(desk, "CA-left", team="fees", at_ms=now - 200_000)
    assert hold_cycle(client, "CA-left") == []  # <Leave/>
    assert presence.advisor_state(desk.r, "A2")["call"] == "CA-left"
    gave_up, stats = _gave_up(desk, client, "CA-left", team="fees")

    assert gave_up["status"] == "abandoned"
    assert 200 <= gave_up["queue_wait_seconds"] < 205
    assert stats["abandoned"] == 1
    assert presence.advisor_state(desk.r, "A2")["status"] == "available"


def test_a_caller_whose_end_comes_between_a_claim_and_its_note_is_abandoned(desk, lakeview):
    """The end lands after a hold cycle's claim took Pat out of the fees queue for A2 and
    before the claim's wait was noted on the call: abandoned, the wait counted to the
    claim."""
    now = int(time.time() * 1000)
    make_available(desk, "A2")
    queue_caller(desk, "CA-race", team="fees", at_ms=now - 200_000)
    claim = presence.claim_for_caller(desk.r, "CA-race", team="general", owner_id=None,
                                      now_ms=now, lease_ms=35_000, queue_if_none=False)
    assert claim.advisor_id == "A2"
    ended = acd.end_call(desk, "CA-race", "completed", 210, now + 5_000)
    assert ended is not None
    assert (ended["abandoned"], ended["queue_wait_ms"]) == ("1", "200000")


def test_a_caller_who_never_waited_and_hangs_up_while_ringing_is_not_abandoned(
        desk, lakeview, client):
    """Pat rings A2 at once (nobody waited) and hangs up during the ring: unanswered,
    not an abandonment of the queue."""
    make_available(desk, "A2")
    post_without_token(client, "/voice/incoming", {"CallSid": "CA-ring", "From": PAT,
                                                   "To": "+18005550100",
                                                   "StirVerstat": "TN-Validation-Passed-A"})
    dial = post_without_token(client, "/voice/menu?attempt=1",
                              {"CallSid": "CA-ring", "Digits": "2"})
    assert [n.text for n in dial.iter("Number")] == ["+16515550102"]
    rang, general = _gave_up(desk, client, "CA-ring")

    assert rang["status"] == "unanswered" and rang["details"]["abandoned"] is False
    assert general["abandoned"] == 0


def test_a_call_first_heard_of_at_its_end_is_logged_from_what_twilio_said(
        desk, lakeview, client):
    sid = "CA" + "e" * 32  # its first webhook never reached the desk
    status_callback(client, sid, 30, caller="+16125550177")
    run_jobs(desk)
    call = call_log(desk, sid)
    started = datetime.fromisoformat(call["started_at"])
    ended = datetime.fromisoformat(call["ended_at"])

    assert call["caller"].endswith("0177")
    assert (ended - started).total_seconds() == pytest.approx(30, abs=1)
    assert 0 < desk.r.ttl(keys.call(sid)) <= 24 * 3600  # a day, like every call's hash


def test_stats_for_a_scripted_day(phone, desk, lakeview, client, emulator):
    """Known answers: 3 answered (waits 0, 0, 20 s), 1 abandoned, 1 still waiting."""
    make_available(desk, "A7", "A2")
    phone.call(PAT, "1 2024117#")
    phone.call(PAT, "1 2024117#")
    presence.make_unavailable(desk.r, "A7", "offline", now_ms=int(time.time() * 1000))
    presence.make_unavailable(desk.r, "A2", "offline", now_ms=int(time.time() * 1000))
    phone.call(PAT, "2", max_wait_seconds=0.1)  # abandons
    # A caller who waited 20 s before A2 came back.
    now = int(time.time() * 1000)
    queue_caller(desk, "CA-waited", at_ms=now - 20_000)
    emulator.register_call("CA-waited")
    availability.free_advisor(desk, "A2", now, explicit=True)
    desk.r.hset(keys.call("CA-waited"), mapping={"answered_by": "A2", "talk_seconds": 30})
    acd.end_call(desk, "CA-waited", "completed", 50, now + 30_000)
    from jobs.queues import enqueue_call_log

    enqueue_call_log(desk.job_redis, "CA-waited")
    presence.make_unavailable(desk.r, "A2", "offline", now_ms=now + 30_001)
    queue_caller(desk, "CA-still", at_ms=now - 7_000)  # waiting right now
    run_jobs(desk)
    general = client.get("/api/stats", headers=API).get_json()["general"]
    assert general["answered"] == 3
    assert general["abandoned"] == 1
    assert general["asa_seconds"] == pytest.approx(20 / 3, abs=0.1)
    assert general["answered_within_15s"] == pytest.approx(2 / 3, abs=0.001)
    assert general["waiting"] == 1
    assert 6 <= general["longest_wait_seconds"] <= 9
    assert general["callbacks_waiting"] == 0


def test_a_callback_placed_two_hours_later_counts_its_hold_not_its_hours(
        desk, client, emulator, lakeview):
    """Pat holds a few seconds, asks for a callback and hangs up at 09:00; A2 calls back
    at 11:00. The line's speed of answer counts Pat's seconds on hold, not two hours:
    the two hours are the callback's own figure."""
    with time_machine.travel(datetime(2026, 11, 24, 9, 0, tzinfo=CHICAGO), tick=True):
        reconciler.reconcile()
        sid = asks_for_a_callback(client)
    with time_machine.travel(datetime(2026, 11, 24, 11, 0, tzinfo=CHICAGO), tick=True):
        client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
        [leg] = emulator.created_calls
        a2_takes_the_callback_and_pat_answers(client, leg)
        run_jobs(desk)
        general = client.get("/api/stats", headers=API).get_json()["general"]
    with desk.session_factory() as db:
        log = db.scalars(select(CallLog).where(CallLog.call_sid == sid)).one()
    assert log.details["callback"] is True
    assert 0 <= log.details["callback_hold_seconds"] < 60
    # The log keeps the whole time to the call back.
    assert log.queue_wait_seconds == pytest.approx(7200, abs=60)
    assert general["answered"] == 1
    assert general["asa_seconds"] < 60, general
    assert general["answered_within_15s"] == 1.0
    assert general["callbacks_answered"] == 1
    assert general["callback_wait_seconds"] == pytest.approx(7200, abs=60)
    # Nor do the two hours become the estimate the next callers on hold hear.
    assert all(float(w) < 60 for w in desk.r.lrange(keys.team_waits("general"), 0, -1))


def test_a_pending_callback_is_not_a_caller_on_hold(desk, client, emulator, lakeview):
    """At 09:00 Pat asks for a callback and hangs up; at 10:00 nobody is on hold: the
    stats count the callback apart, an hour old, and no caller waiting an hour."""
    with time_machine.travel(datetime(2026, 11, 24, 9, 0, tzinfo=CHICAGO), tick=True):
        reconciler.reconcile()
        asks_for_a_callback(client)
    with time_machine.travel(datetime(2026, 11, 24, 10, 0, tzinfo=CHICAGO), tick=True):
        queue_caller(desk, "CA-holding", at_ms=int(time.time() * 1000) - 5_000)
        general = client.get("/api/stats", headers=API).get_json()["general"]
        queued = client.get("/api/queues", headers=API).get_json()["general"]
    assert [caller["callback"] for caller in queued] == [True, False]
    assert general["waiting"] == 1
    assert 4 <= general["longest_wait_seconds"] < 60, general
    assert general["callbacks_waiting"] == 1
    assert general["oldest_callback_seconds"] == pytest.approx(3600, abs=60)


# How late a wrap-up's end may come, at worst over several (seconds): PRODUCT.md
# connects the waiting caller within a second of the advisor becoming available; the
# clock is aimed at a fraction of that, and the margin is a loaded CI machine's.
# RQ's whole-second schedule, polled each second, came 0-2 s late.
WRAPUP_LATENESS_SECONDS = 0.9


def wrap_up_ends_on_time(desk, emulator, wrapped, after: str, waiting: str,
                         at_fraction: float) -> float:
    """A2, on `after`, wraps up (`wrapped`'s wrap-up) starting at `at_fraction` of a
    wall-clock second, while `waiting` waits for the general team; how late (seconds)
    after the wrap-up's end that caller was redirected to A2. Never early: A2 is
    still busy and nobody redirected just before the end."""
    start_call(desk.r, waiting, {"caller": PAT, "base": BASE_URL, "team": "general"})
    emulator.register_call(waiting)
    queue_caller(desk, waiting)
    time.sleep((at_fraction - time.time() % 1) % 1)
    now_ms, started = int(time.time() * 1000), time.monotonic()
    availability.finish_with_advisor(wrapped, after, "A2", now_ms)
    ends_at = started + wrapped.settings.wrapup_seconds
    assert presence.advisor_state(desk.r, "A2")["status"] == "busy"  # wrapping up
    time.sleep(max(0.0, ends_at - 0.05 - time.monotonic()))
    assert presence.advisor_state(desk.r, "A2")["status"] == "busy"
    assert emulator.redirects(waiting) == []
    deadline = time.monotonic() + 10
    while not emulator.redirects(waiting):
        assert time.monotonic() < deadline, "wrap-up never ended"
        time.sleep(0.01)
    assert presence.advisor_state(desk.r, "A2")["call"] == waiting
    [redirect] = emulator.redirects(waiting)
    assert redirect.form["Url"].endswith("/voice/connect")
    return redirect.at - ends_at


def test_wrap_up_then_served_from_the_queue_without_any_request(
        settings, desk, lakeview, emulator, tmp_path):
    """A real `caseline worker` ends each wrap-up on its own, never early and within
    a fraction of a second of its end, and serves the queue: A2 wraps up six times,
    starting at six points of a second, with a caller waiting each time."""
    wrapped = dataclasses_replace(desk, settings=settings.with_changes(wrapup_seconds=1))
    make_available(desk, "A2")
    presence.claim_for_caller(desk.r, "CA-first", team="general", owner_id=None,
                              now_ms=int(time.time() * 1000), lease_ms=35_000)
    desk.r.hset(keys.call("CA-first"), "answered_by", "A2")
    worker = start_worker(settings, tmp_path)
    try:
        late = wrap_ups_lateness(desk, emulator, wrapped, rounds=6)
        assert min(late) >= 0, late  # never early
        assert max(late) < WRAPUP_LATENESS_SECONDS, late
    finally:
        worker.terminate()
        worker.wait(timeout=10)


def wrap_ups_lateness(desk, emulator, wrapped, rounds: int) -> list[float]:
    """A2, on call CA-first, wraps up `rounds` times, each starting at another point of
    a second, with a caller (CA-next-0, -1, ...) waiting each time, whom they are then
    rung for; how late each wrap-up's caller was redirected (s, `wrap_up_ends_on_time`)."""
    after, late = "CA-first", []
    for round_ in range(rounds):
        waiting = f"CA-next-{round_}"
        late.append(wrap_up_ends_on_time(desk, emulator, wrapped, after, waiting,
                                         at_fraction=round_ / rounds + 0.05))
        after = waiting  # A2 is rung for them: their call is the next to end
    return late


def a2_on_a_call_with_a_caller_waiting(desk, emulator) -> None:
    """A2 on call CA-first (claimed for it), and CA-next waiting in general's queue."""
    make_available(desk, "A2")
    presence.claim_for_caller(desk.r, "CA-first", team="general", owner_id=None,
                              now_ms=int(time.time() * 1000), lease_ms=35_000)
    start_call(desk.r, "CA-next", {"caller": PAT, "base": BASE_URL, "team": "general"})
    emulator.register_call("CA-next")
    queue_caller(desk, "CA-next")


def test_a_wrap_up_pending_while_the_worker_is_down_ends_when_it_is_back(
        settings, desk, lakeview, emulator, tmp_path):
    """The worker stops (a deploy) while A2 wraps up and is back after the wrap-up's
    end: the wrap-up ends then, and the waiting caller is brought to A2, once."""
    wrapped = dataclasses_replace(desk, settings=settings.with_changes(wrapup_seconds=2))
    a2_on_a_call_with_a_caller_waiting(desk, emulator)
    worker = start_worker(settings, tmp_path)
    availability.finish_with_advisor(wrapped, "CA-first", "A2", int(time.time() * 1000))
    worker.terminate()
    assert worker.wait(timeout=10) is not None
    time.sleep(2.5)  # past the wrap-up's end, no worker
    assert presence.advisor_state(desk.r, "A2")["status"] == "busy"
    worker = start_worker(settings, tmp_path)
    try:
        wait_for("the caller brought to A2", lambda: emulator.redirects("CA-next"),
                 timeout=5)
        assert presence.advisor_state(desk.r, "A2")["call"] == "CA-next"
        time.sleep(1.0)
        assert len(emulator.redirects("CA-next")) == 1
    finally:
        worker.terminate()
        worker.wait(timeout=10)


def test_two_workers_end_a_wrap_up_once_and_on_time(
        settings, desk, lakeview, emulator, tmp_path):
    """Two `caseline worker`s (two hosts, or a deploy's overlap): each wrap-up is ended
    by one of them, on time, and its waiting caller redirected once."""
    wrapped = dataclasses_replace(desk, settings=settings.with_changes(wrapup_seconds=1))
    make_available(desk, "A2")
    presence.claim_for_caller(desk.r, "CA-first", team="general", owner_id=None,
                              now_ms=int(time.time() * 1000), lease_ms=35_000)
    workers = [start_worker(settings, tmp_path / "one"), start_worker(settings, tmp_path / "two")]
    try:
        late = wrap_ups_lateness(desk, emulator, wrapped, rounds=3)
        time.sleep(1.0)  # a second redirect, were there one, has come by now
        assert [len(emulator.redirects(f"CA-next-{i}")) for i in range(3)] == [1, 1, 1]
        assert min(late) >= 0 and max(late) < WRAPUP_LATENESS_SECONDS, late
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=10)


def test_a_wrap_up_end_that_met_a_redis_blip_is_tried_again(
        settings, desk, lakeview, emulator, monkeypatch):
    """Redis fails the wrap-up's end (a blip): it is tried again a moment later, A2 is
    freed and the waiting caller brought to them, once."""
    import threading

    import redis

    from workers import wrapups

    wrapped = dataclasses_replace(desk, settings=settings.with_changes(wrapup_seconds=1))
    a2_on_a_call_with_a_caller_waiting(desk, emulator)
    blips = []
    evalsha = desk.r.evalsha

    def blip_once(*args):
        # The first command of the end itself (on the clock's pool) meets the blip.
        if threading.current_thread().name.startswith("wrapup-end") and not blips:
            blips.append(args)
            raise redis.ConnectionError("Error 111 connecting: Connection refused")
        return evalsha(*args)

    monkeypatch.setattr(desk.r, "evalsha", blip_once)
    stopped = threading.Event()
    clock = threading.Thread(target=wrapups.run_clock, args=(stopped, lambda: wrapped))
    clock.start()
    try:
        availability.finish_with_advisor(wrapped, "CA-first", "A2", int(time.time() * 1000))
        wait_for("the caller brought to A2", lambda: emulator.redirects("CA-next"), timeout=5)
        assert blips, "the blip never came"
        assert presence.advisor_state(desk.r, "A2")["call"] == "CA-next"
        time.sleep(1.0)
        assert len(emulator.redirects("CA-next")) == 1
        assert desk.r.zcard(WRAPUP_ENDS) == 0  # done with
    finally:
        stopped.set()
        clock.join(timeout=5)


def dataclasses_replace(desk, **changes):
    """A copy of the desk with some parts changed."""
    import dataclasses

    return dataclasses.replace(desk, **changes)


def start_worker(settings, tmp_path: Path) -> subprocess.Popen:
    """`caseline worker` as its own process, on the test Redis and database and the
    test's clock, once it is at work (RQ lists it): how long it takes to start
    (seconds on a busy host) is no part of what a test then times."""
    import os

    env = {**os.environ, "REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url,
           "TWILIO_API_URL": settings.twilio_api_url, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
           "TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
           "CASELINE_INSTANCE_PATH": str(tmp_path / "instance")}
    process = subprocess.Popen(caseline_command("worker"), env=env, cwd=PROJECT_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    connection = connect_redis(settings.redis_url, decode_responses=False)

    def registered() -> bool:
        assert process.poll() is None, "caseline worker exited"
        return any(w.pid == process.pid for w in Worker.all(connection=connection))

    try:
        wait_for("caseline worker to register with RQ", registered, timeout=30)
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        connection.close()
    return process




def test_the_queue_listing_names_each_of_1100_waiting_callers_in_order(client, desk, lakeview):
    """GET /api/queues lists every waiting caller, each with their own call's facts
    (read a few hundred at a time: a storm queues thousands)."""
    now = int(time.time() * 1000)
    for i in range(1100):
        sid = f"CA-storm-{i:04d}"
        start_call(desk.r, sid, {"caller": f"+1612555{i:04d}", "started_at": now + i,
                                 "team": "general", "priority": "medium", "menu": "2",
                                 "base": BASE_URL})
        if i % 3 == 0:
            desk.r.hset(keys.call(sid), "case", f"20{i:05d}")
        assert isinstance(acd.route_caller(desk, sid, now + i), acd.WaitInQueue)
    desk.r.delete(keys.call("CA-storm-0501"))  # its hash gone: listed with no facts
    listed = client.get("/api/queues", headers=API).get_json()["general"]
    assert [c["call_sid"] for c in listed] == [f"CA-storm-{i:04d}" for i in range(1100)]
    for i, caller in enumerate(listed):
        expected = (None, None) if i == 501 else (
            f"+1612555{i:04d}", f"20{i:05d}" if i % 3 == 0 else None)
        assert (caller["caller"], caller["case_number"]) == expected, caller


def twilio_posts(client, path: str, sid: str, **params: str) -> ET.Element:
    """One webhook of Pat's call as Twilio posts it (signed, its own idempotency
    token); the TwiML answered."""
    return post(client, path, {"CallSid": sid, "From": PAT, "To": "+18005550100",
                               "CallStatus": "in-progress", **params})


def test_a_waiting_caller_routed_to_another_team_waits_there_only_and_is_served_once(
        client, desk, directory, lakeview, emulator):
    """A caller waiting for food service whose call is routed to fees (another product
    key reached the desk for their call) waits for fees alone: listed once, handed to
    one advisor, and nothing left in a queue when they hang up."""
    directory.advisor("A4", ["food-service"], phone="+16515550104")  # offline for now
    directory.load()
    sid = "CA" + "f" * 32
    emulator.register_call(sid, from_=PAT)
    twilio_posts(client, "/voice/incoming", sid, CallStatus="ringing",
                 StirVerstat="TN-Validation-Passed-A")  # Pat, known by caller ID
    assert twilio_posts(client, "/voice/menu", sid, Digits="6").find("Gather") is not None
    assert twilio_posts(client, "/voice/product", sid, Digits="1").findtext("Enqueue") \
        == "food-service"
    assert twilio_posts(client, "/voice/product", sid, Digits="2").findtext("Enqueue") == "fees"

    queues = client.get("/api/queues", headers=API).get_json()
    assert {team: [c["call_sid"] for c in callers] for team, callers in queues.items()
            if callers} == {"fees": [sid]}
    stats = client.get("/api/stats", headers=API).get_json()
    assert (stats["food-service"]["waiting"], stats["fees"]["waiting"]) == (0, 1)
    # The food-service advisor who frees up is not claimed for a caller who waits for
    # fees (two advisors rung for one caller); the fees advisor is.
    client.put("/api/advisors/A4/status", json={"status": "available"}, headers=API)
    client.put("/api/advisors/A5/status", json={"status": "available"}, headers=API)
    assert presence.advisor_state(desk.r, "A4")["status"] == "available"
    assert presence.advisor_state(desk.r, "A5")["call"] == sid


def test_a_caller_who_hangs_up_after_being_routed_to_another_team_leaves_no_queue_behind(
        client, desk, lakeview, emulator):
    sid = "CA" + "e" * 32
    emulator.register_call(sid, from_=PAT)
    twilio_posts(client, "/voice/incoming", sid, CallStatus="ringing",
                 StirVerstat="TN-Validation-Passed-A")
    twilio_posts(client, "/voice/menu", sid, Digits="6")
    assert twilio_posts(client, "/voice/product", sid, Digits="1").findtext("Enqueue") \
        == "food-service"
    assert twilio_posts(client, "/voice/product", sid, Digits="2").findtext("Enqueue") == "fees"
    emulator.end_call(sid)
    status_callback(client, sid, 40)

    queues = client.get("/api/queues", headers=API).get_json()
    assert all(callers == [] for callers in queues.values()), queues
    stats = client.get("/api/stats", headers=API).get_json()
    assert stats["food-service"]["waiting"] == stats["fees"]["waiting"] == 0


def test_a_hold_cycle_repeated_without_its_token_after_it_took_an_advisor_leaves_again(
        desk, lakeview, client):
    """Pat's hold cycle takes general's idle A2 (`<Leave/>`, overflow), but Twilio timed
    out on its reply and posts it again without its token: Twilio acts on the second
    reply, which must tell Pat to leave again, or Pat stays in Twilio's queue out of
    the desk's while A2 is held for her."""
    now = int(time.time() * 1000)
    make_available(desk, "A2")
    queue_caller(desk, "CA-again", team="fees", at_ms=now - 200_000)
    assert hold_cycle(client, "CA-again") == []  # <Leave/>, lost to Twilio
    again = post_without_token(client, "/voice/wait", {"CallSid": "CA-again",
                                                       "QueuePosition": "1"})
    assert [el.tag for el in again] == ["Leave"]
    after = post(client, "/voice/queue-result", {"CallSid": "CA-again", "QueueResult": "leave",
                                                "CallStatus": "in-progress"})
    assert [n.text for n in after.iter("Number")] == ["+16515550102"]


def test_a_hold_cycle_as_a_freed_advisor_is_brought_to_the_caller_keeps_them_waiting(
        desk, lakeview, client, emulator):
    """A2 frees up and is claimed for Pat, who is brought over by a redirect; a hold
    cycle of Pat's before the redirect lands keeps her in Twilio's queue (the redirect
    brings her to A2), never a second way to A2."""
    now = int(time.time() * 1000)
    emulator.register_call("CA-brought")
    queue_caller(desk, "CA-brought", at_ms=now - 42_000)
    availability.free_advisor(desk, "A2", now, explicit=True)
    assert len(emulator.redirects("CA-brought")) == 1
    heard = post_without_token(client, "/voice/wait", {"CallSid": "CA-brought",
                                                       "QueuePosition": "1"})
    assert heard.find("Leave") is None


def test_a_caller_who_waited_then_left_a_voicemail_has_their_wait_on_the_log(
        client, desk, lakeview):
    """PRODUCT.md: the call log has the queue wait. Pat waited past the longest wait
    (1200 s and 5 more), pressed 2 and recorded a message: the log says how long Pat
    waited, as it does for a caller who hung up while waiting."""
    now = int(time.time() * 1000)
    waited_s = desk.settings.max_wait_seconds + 5
    queue_caller(desk, "CA-msg", at_ms=now - waited_s * 1000)
    assert [el.tag for el in press_on_hold(client, "CA-msg", "2")] == ["Leave"]
    form = {"CallSid": "CA-msg", "CallStatus": "in-progress"}
    assert post(client, "/voice/queue-result", {**form, "QueueResult": "leave"}).find(
        "Record") is not None
    post(client, "/voice/recorded", {**form, "RecordingUrl": "https://api.twilio.com/rec/RE1",
                                     "RecordingDuration": "20"})
    post(client, "/voice/status", {**form, "CallStatus": "completed", "CallDuration": "1230"})
    run_jobs(desk)
    with desk.session_factory() as db:
        # As `GET /api/cases/<number>/calls` shows it (a call without a case here).
        [log] = [row.to_dict() for row in db.scalars(select(CallLog))]
    assert log["status"] == "voicemail" and log["recording_url"]
    assert waited_s <= log["queue_wait_seconds"] < waited_s + 30


def reconciler_pass(desk) -> dict[str, int]:
    """One pass of the reconciler (every ~10 s in `caseline worker`), on this desk."""
    from workers import context
    from workers.reconciler import reconcile

    context.configure(desk)
    try:
        return reconcile()
    finally:
        context.configure(None)


def test_a_caller_past_the_longest_wait_is_offered_the_voicemail_without_a_hold_cycle(
        client, desk, lakeview, emulator):
    """Twilio asks the waitUrl again only once the hold music (a track minutes long) has
    played out: the reconciler's pass brings a caller past CASELINE_MAX_WAIT_SECONDS
    back into the queue, whose waitUrl is asked at once and offers the voicemail. They
    decline: still first in line, with the arrival they had, and offered only once."""
    now = int(time.time() * 1000)
    queue_caller(desk, "CA-long", at_ms=now - desk.settings.max_wait_seconds * 1000 - 1_000)
    queue_caller(desk, "CA-later", at_ms=now - 5_000)
    emulator.register_call("CA-long", from_=PAT)
    emulator.register_call("CA-later", from_=PAT)
    score = desk.r.zscore(keys.team_waiting("general"), "CA-long")
    assert reconciler_pass(desk)["voicemail_offers"] == 1
    [redirect] = emulator.redirects("CA-long")
    assert redirect.form["Url"] == f"{BASE_URL}/voice/hold-again"
    assert emulator.redirects("CA-later") == []
    # Twilio takes the caller out of its queue (the `<Enqueue>` action says so) and
    # follows the redirect: back into the queue, whose waitUrl it asks at once.
    post(client, "/voice/queue-result", {"CallSid": "CA-long", "QueueResult": "redirected",
                                        "CallStatus": "in-progress"})
    doc = post(client, "/voice/hold-again", {"CallSid": "CA-long",
                                             "CallStatus": "in-progress"})
    enqueue = doc.find("Enqueue")
    assert enqueue is not None and enqueue.text == "general"
    assert enqueue.get("waitUrl").endswith("/voice/wait")
    assert Prompts().text("routing.voicemail_offer") in hold_cycle(client, "CA-long")
    # They decline (a stray key): still first in line, their place as it was.
    answered = press_on_hold(client, "CA-long", "9")
    assert answered.find("Leave") is None and answered.find("Record") is None
    assert desk.r.zrank(keys.team_waiting("general"), "CA-long") == 0
    assert desk.r.zscore(keys.team_waiting("general"), "CA-long") == score
    # Offered once: the next pass leaves them to their hold music.
    assert reconciler_pass(desk)["voicemail_offers"] == 0
    assert len(emulator.redirects("CA-long")) == 1


def test_a_caller_whose_hold_cycle_offered_the_voicemail_is_not_brought_back_for_it(
        client, desk, lakeview, emulator):
    now = int(time.time() * 1000)
    long_ago = now - desk.settings.max_wait_seconds * 1000 - 1_000
    queue_caller(desk, "CA-heard", at_ms=long_ago)
    queue_caller(desk, "CA-over", at_ms=long_ago)
    desk.r.set(keys.call_ended("CA-over"), "1")  # hung up, not ended by the desk yet
    emulator.register_call("CA-heard", from_=PAT)
    assert Prompts().text("routing.voicemail_offer") in hold_cycle(client, "CA-heard")
    assert reconciler_pass(desk)["voicemail_offers"] == 0
    assert emulator.redirects() == []


def test_a_simulated_caller_on_hold_music_leaves_a_voicemail_offered_after_the_longest_wait(
        phone, desk, lakeview):
    """The hold music plays for ten minutes (Twilio asks the waitUrl again only after
    it): twenty minutes after Pat joined the queue, the reconciler's pass brings the
    offer to Pat, who presses 2 and leaves a message on their case."""
    pat = phone.caller(PAT, "2 wait: wait:2", hold_track_seconds=600, max_wait_seconds=20)
    waiting = threading.Thread(target=pat.run)
    waiting.start()
    try:
        wait_for("Pat queued", lambda: desk.r.zscore(keys.team_waiting("general"),
                                                     pat.call_sid) is not None, timeout=10)
        time.sleep(0.5)  # Pat's one hold cycle: the position, the callback offer, music
        with time_machine.travel(time.time() + desk.settings.max_wait_seconds + 1, tick=True):
            reconciler_pass(desk)
            waiting.join(timeout=30)
    finally:
        waiting.join(timeout=30)
    result = pat.result
    assert result.outcome == "voicemail" and result.queue_seconds < 15


def _offer_while_retrying(desk, during_backoff) -> int:
    """A reconciler pass whose redirects, on failing, run `during_backoff` once in their
    first backoff (as an advisor's claim or a hold cycle lands while Twilio fails)."""
    happened: list[float] = []

    def sleep(seconds: float) -> None:
        if not happened:
            happened.append(seconds)
            during_backoff()
        time.sleep(min(seconds, 0.05))

    telephony = Telephony(desk.settings, retry_delays=(0.05,) * 4, sleep=sleep)
    return reconciler_pass(dataclasses.replace(desk, telephony=telephony))["voicemail_offers"]


@pytest.mark.parametrize("fault", [429, 503])
def test_an_advisor_claiming_the_caller_while_the_offer_is_retried_is_not_cut(
        client, desk, lakeview, emulator, fault):
    """Twilio fails the reconciler's redirect to hear the voicemail offer; in its backoff
    A2 is freed and claimed for the caller, who is redirected to `/voice/connect`. The
    hold-again redirect is never sent after that claim: A2 rings once, uncut."""
    now = int(time.time() * 1000)
    queue_caller(desk, "CA-long", at_ms=now - desk.settings.max_wait_seconds * 1000 - 1_000)
    emulator.register_call("CA-long", from_=PAT)
    emulator.fail_next(fault)
    assert _offer_while_retrying(desk, lambda: make_available(desk, "A2")) == 1
    urls = [r.form["Url"] for r in emulator.redirects("CA-long")]
    assert urls == [f"{BASE_URL}/voice/hold-again", f"{BASE_URL}/voice/connect"]
    dial = post(client, "/voice/connect", {"CallSid": "CA-long",
                                           "CallStatus": "in-progress"}).find("Dial")
    assert dial is not None and dial.find("Number").text == "+16515550102"
    time.sleep(0.3)  # any straggling retry would have gone by now
    assert len(emulator.redirects("CA-long")) == 2


def test_a_hold_again_reaching_a_bridged_caller_does_not_ring_their_advisor_again(
        client, desk, lakeview, emulator):
    """A hold-again redirect that reached Twilio as A2 was claimed for the caller cut
    their conversation once A2 had accepted: the caller's call ends as answered (A2 is
    freed by that end) instead of A2 being whispered again for the caller they had."""
    queue_caller(desk, "CA-talk")
    emulator.register_call("CA-talk", from_=PAT)
    make_available(desk, "A2")
    assert post(client, "/voice/connect", {"CallSid": "CA-talk",
                                           "CallStatus": "in-progress"}).find("Dial") is not None
    signed_post(client, "/voice/whisper/accept?call=CA-talk&advisor=A2",
                {"CallSid": "CA-leg", "Digits": "1"})
    assert desk.r.hget(keys.call("CA-talk"), "state") == "bridged"
    doc = post(client, "/voice/hold-again", {"CallSid": "CA-talk", "CallStatus": "in-progress"})
    assert doc.find("Dial") is None and doc.find("Hangup") is not None
    assert presence.advisor_state(desk.r, "A2")["status"] != "ringing"


def test_a_failed_offer_after_the_hold_cycle_offered_the_voicemail_is_not_made_again(
        client, desk, lakeview, emulator):
    """Twilio keeps failing the reconciler's redirect; meanwhile the caller's own hold
    cycle offers the voicemail. The failure does not take that offer back: the next
    pass does not bring them to hear it a second time."""
    now = int(time.time() * 1000)
    queue_caller(desk, "CA-long", at_ms=now - desk.settings.max_wait_seconds * 1000 - 1_000)
    emulator.register_call("CA-long", from_=PAT)
    emulator.fail_next(*[429] * 5)  # surely not carried out: no sign is looked for
    heard: list[list[str]] = []
    assert _offer_while_retrying(desk, lambda: heard.append(hold_cycle(client, "CA-long"))) == 1
    assert Prompts().text("routing.voicemail_offer") in heard[0]
    assert reconciler_pass(desk)["voicemail_offers"] == 0
    assert len(emulator.redirects("CA-long")) == 1
