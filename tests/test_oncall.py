"""The on-call engineer at night: one person, one outage caller at a time, and a call
taken only with a key at the whisper, so their voicemail never "answers" an outage."""

from __future__ import annotations

import threading
import time
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from directory import keys
from directory.models import CallLog
from tests.conftest import run_jobs
from tests.test_end_then_blip import FailAfterEnd, wait_for
from tests.test_whisper_breaks import Blip
from tests.webhooks import post, post_without_token, signed_post

CHICAGO = ZoneInfo("America/Chicago")
PAT = "+16125550101"
LEE = "+16125550102"
KIM = "+16125550103"
LINE = "+18005550100"
ONCALL = "+16515559999"


@pytest.fixture
def settings(settings):
    """The desk with an on-call engineer."""
    return settings.with_changes(oncall_number=ONCALL)


@pytest.fixture
def lakeview(directory):
    """A hosted district with three contacts; hosting's only advisor A6 is off."""
    directory.district("D100", "Lakeview Public Schools", hosted=True)
    for contact_id, number in (("5001", PAT), ("5002", LEE), ("5003", KIM)):
        directory.contact(contact_id, number, "D100", f"Contact {contact_id}", "2468",
                          last_active="2026-11-01")
    directory.advisor("A6", ["hosting"], phone="+16515550106")
    directory.load()


@pytest.fixture(autouse=True)
def night():
    """Tuesday 23:30 in Chicago: the desk is closed."""
    with time_machine.travel(datetime(2026, 11, 24, 23, 30, tzinfo=CHICAGO), tick=True):
        yield


# The session's REST emulator: the calls these tests report are live on it, so that a
# redirect of a waiting caller (the engineer's line freed) reaches Twilio's side.
LIVE = []


@pytest.fixture(autouse=True)
def live_calls(emulator):
    """The calls `report_outage` places are live at the emulator."""
    LIVE[:] = [emulator]
    yield
    LIVE.clear()


def relative(url: str) -> str:
    """A TwiML URL as the path and query Twilio posts to."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def report_outage(client, caller: str) -> tuple[str, ET.Element]:
    """A verified contact calls and presses 8: (their CallSid, what they hear next)."""
    sid = "CA" + uuid.uuid4().hex
    for emulator in LIVE:
        emulator.register_call(sid, from_=caller, to=LINE)
    post(client, "/voice/incoming", {"CallSid": sid, "From": caller, "To": LINE,
                                     "StirVerstat": "TN-Validation-Passed-A"})
    return sid, post(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "8"})


def rings_oncall(doc: ET.Element) -> ET.Element | None:
    """The `<Number>` that rings the on-call engineer, if the document dials them."""
    for number in doc.iter("Number"):
        if (number.text or "").strip() == ONCALL:
            return number
    return None


def end_oncall_ring(client, sid: str, status: str = "completed", seconds: int = 60
                    ) -> ET.Element:
    """The `<Dial>` action for the on-call ring, as Twilio posts it when the leg ends."""
    return post(client, "/voice/oncall-result", {
        "CallSid": sid, "CallStatus": "in-progress", "DialCallStatus": status,
        "DialCallDuration": str(seconds)})


def logged(desk, sid: str) -> CallLog:
    """The call's log, once the worker wrote it."""
    run_jobs(desk)
    with desk.session_factory() as db:
        return db.scalars(select(CallLog).where(CallLog.call_sid == sid)).one()


def test_the_engineer_hears_who_calls_and_takes_the_call_with_a_key(desk, lakeview, client):
    sid, doc = report_outage(client, PAT)
    number = rings_oncall(doc)
    assert number is not None
    whisper = post(client, relative(number.get("url")), {"CallSid": "CL1", "CallStatus":
                                                          "in-progress"})
    gather = whisper.find("Gather")
    said = " ".join(s.text or "" for s in whisper.iter("Say"))
    assert gather is not None and "outage report" in said and "Lakeview" in said
    bridged = post(client, relative(gather.get("action")), {"CallSid": "CL1", "Digits": "1"})
    assert bridged.find("Say") is None and bridged.find("Hangup") is None
    end_oncall_ring(client, sid, seconds=300)
    post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                   "CallDuration": "320"})
    log = logged(desk, sid)
    assert (log.status, log.answered_by, log.talk_seconds) == ("answered", "on-call", 300)


def test_a_caller_whose_engineer_hung_up_first_hears_nothing_more(desk, lakeview, client):
    """The survey asks about the desk's advisors only: Pat, whose outage the engineer
    took and ended, is not surveyed, and so hears nothing more (PRODUCT.md, the survey)."""
    sid, doc = report_outage(client, PAT)
    number = rings_oncall(doc)
    assert number is not None
    whisper = post(client, relative(number.get("url")), {"CallSid": "CL1", "CallStatus":
                                                          "in-progress"})
    post(client, relative(whisper.find("Gather").get("action")), {"CallSid": "CL1",
                                                                  "Digits": "1"})
    assert [child.tag for child in end_oncall_ring(client, sid, seconds=300)] == ["Hangup"]


def test_the_engineers_voicemail_does_not_answer_an_outage(desk, lakeview, client):
    sid, doc = report_outage(client, PAT)
    number = rings_oncall(doc)
    # Their voicemail picks up: the whisper plays, nobody presses a key, the leg hangs up.
    whisper = post(client, relative(number.get("url")), {"CallSid": "CL1",
                                                         "CallStatus": "in-progress"})
    assert whisper.find("Hangup") is not None
    after = end_oncall_ring(client, sid, status="completed", seconds=60)
    # Twilio says "completed" (the voicemail answered); the caller waits for hosting.
    assert after.find("Enqueue") is not None and after.find("Enqueue").text == "hosting"
    post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                   "CallDuration": "400"})
    assert logged(desk, sid).answered_by != "on-call"


def test_a_whisper_that_failed_for_the_engineer_is_no_answer(desk, lakeview, client,
                                                              monkeypatch):
    """The engineer picks up as Redis blips: their whisper fails, and the error's reply
    hangs up their leg, which Twilio reports `completed`, not bridged. Nobody talked:
    the caller waits for hosting, and the log does not say the engineer answered."""
    sid, doc = report_outage(client, PAT)
    number = rings_oncall(doc)
    blip = Blip(monkeypatch)
    blip.down()
    whisper = post(client, relative(number.get("url")), {"CallSid": "CL1",
                                                         "CallStatus": "in-progress"})
    blip.up()
    assert [child.tag for child in whisper] == ["Say", "Hangup"]  # a goodbye, no <Dial>
    after = post(client, "/voice/oncall-result", {
        "CallSid": sid, "CallStatus": "in-progress", "DialCallStatus": "completed",
        "DialCallDuration": "6", "DialBridged": "false"})
    assert after.find("Enqueue") is not None and after.find("Enqueue").text == "hosting"
    post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                   "CallDuration": "90"})
    assert logged(desk, sid).answered_by != "on-call"


def hold_cycle(client, sid: str) -> ET.Element:
    """Twilio re-requests the waiting caller's waitUrl."""
    return post(client, "/voice/wait", {"CallSid": sid, "QueuePosition": "1"})


def test_outage_callers_reach_the_engineer_one_at_a_time_in_the_queues_order(
        desk, lakeview, client):
    first, doc = report_outage(client, PAT)
    assert rings_oncall(doc) is not None
    second, doc = report_outage(client, LEE)
    assert rings_oncall(doc) is None
    assert doc.find("Enqueue") is not None and doc.find("Enqueue").text == "hosting"
    assert hold_cycle(client, second).find("Leave") is None  # the engineer is busy
    # The first call's ring and talk end: the caller waiting longest is next, not a
    # newcomer.
    end_oncall_ring(client, first, status="completed", seconds=120)
    _third, doc = report_outage(client, KIM)
    assert rings_oncall(doc) is None and doc.find("Enqueue") is not None
    assert hold_cycle(client, second).find("Leave") is not None
    after = post(client, "/voice/queue-result", {"CallSid": second, "QueueResult": "leave",
                                                "CallStatus": "in-progress"})
    assert rings_oncall(after) is not None


def test_a_key_after_the_ring_ended_for_a_caller_who_hung_up_is_no_answer(
        desk, lakeview, client):
    sid, doc = report_outage(client, PAT)
    whisper = post(client, relative(rings_oncall(doc).get("url")),
                   {"CallSid": "CL1", "CallStatus": "in-progress"})
    post(client, "/voice/oncall-result", {"CallSid": sid, "CallStatus": "completed",
                                          "DialCallStatus": "no-answer",
                                          "DialCallDuration": "0"})
    post(client, relative(whisper.find("Gather").get("action")),
         {"CallSid": "CL1", "Digits": "1"})
    post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                   "CallDuration": "40"})
    assert logged(desk, sid).answered_by != "on-call"


def test_a_caller_ending_as_their_route_takes_the_line_does_not_hold_it(
        desk, lakeview, client, monkeypatch):
    from routing import call_end, oncall

    real_take_line = oncall.take_line
    ended = []

    def take_line_as_the_caller_hangs_up(d, call_sid, now_ms, team):
        taken = real_take_line(d, call_sid, now_ms, team)
        if not ended:  # the status callback, handled in another thread, lands here
            ended.append(call_end.close_call(d, call_sid, "completed", 12, now_ms))
        return taken

    monkeypatch.setattr(oncall, "take_line", take_line_as_the_caller_hangs_up)
    report_outage(client, PAT)
    assert ended and ended[0] is not None
    monkeypatch.setattr(oncall, "take_line", real_take_line)
    # Twilio never runs the <Dial> of a call that is over: no action will come.
    _second, doc = report_outage(client, LEE)
    assert rings_oncall(doc) is not None


def test_the_engineers_line_is_freed_when_the_dial_action_never_comes(desk, lakeview, client):
    first, doc = report_outage(client, PAT)
    assert rings_oncall(doc) is not None
    # The caller hangs up; Twilio's `<Dial>` action is lost, the status callback comes.
    post(client, "/voice/status", {"CallSid": first, "CallStatus": "completed",
                                   "CallDuration": "20"})
    _second, doc = report_outage(client, LEE)
    assert rings_oncall(doc) is not None


def test_the_engineers_line_is_freed_by_the_retry_of_an_end_whose_release_met_a_blip(
        desk, lakeview, client, monkeypatch):
    """The end script commits, Redis fails before the line is freed (the `<Dial>`
    action lost): the web's kept end, retried once Redis answers, finds the end
    recorded and frees the line all the same; the next outage caller has the engineer."""
    first, doc = report_outage(client, PAT)
    assert rings_oncall(doc) is not None
    fault = FailAfterEnd(monkeypatch, desk, first)
    answered = signed_post(client, "/voice/status", {"CallSid": first,
                                                     "CallStatus": "completed",
                                                     "CallDuration": "20"})
    assert answered.status_code == 200 and fault.failed == 1
    wait_for("the line freed", lambda: desk.r.get(keys.oncall_line()) != first)
    monkeypatch.undo()
    _second, doc = report_outage(client, LEE)
    assert rings_oncall(doc) is not None


def test_a_late_action_of_an_earlier_call_does_not_free_the_line_of_the_next(
        desk, lakeview, client):
    first, doc = report_outage(client, PAT)
    post(client, "/voice/status", {"CallSid": first, "CallStatus": "completed",
                                   "CallDuration": "20"})
    second, doc = report_outage(client, LEE)
    assert rings_oncall(doc) is not None
    end_oncall_ring(client, first, status="completed", seconds=15)  # late, the first's
    _third, doc = report_outage(client, KIM)
    assert rings_oncall(doc) is None


def test_a_key_after_the_caller_hung_up_bridges_nobody(desk, lakeview, client):
    sid, doc = report_outage(client, PAT)
    number = rings_oncall(doc)
    whisper = post(client, relative(number.get("url")), {"CallSid": "CL1",
                                                         "CallStatus": "in-progress"})
    post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                   "CallDuration": "9"})
    late = post(client, relative(whisper.find("Gather").get("action")),
                {"CallSid": "CL1", "Digits": "1"})
    assert late.find("Hangup") is not None
    assert logged(desk, sid).answered_by != "on-call"


def test_the_simulated_night_outage_reaches_the_engineer_who_answers(phone, desk, lakeview):
    result = phone.call(PAT, "8")
    assert result.dialed == [ONCALL] and result.outcome == "advisor"
    voicemail = phone.call(LEE, "8", advisors={ONCALL: "voicemail"}, max_wait_seconds=2)
    assert voicemail.dialed == [ONCALL] and voicemail.queued


def ask_for_callback(client, sid: str) -> None:
    """A waiting caller presses 1 on hold (a callback, confirmed) and hangs up."""
    post(client, "/voice/callback", {"CallSid": sid, "Digits": "1"})
    post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                   "CallDuration": "40"})


def test_a_callback_at_the_head_of_hosting_leaves_the_engineer_to_the_callers_behind(
        desk, lakeview, client):
    first, doc = report_outage(client, PAT)
    assert rings_oncall(doc) is not None
    second, doc = report_outage(client, LEE)
    ask_for_callback(client, second)
    third, doc = report_outage(client, KIM)
    assert doc.find("Enqueue") is not None
    assert desk.r.hget(keys.call(second), "callback") == "1"
    end_oncall_ring(client, first, status="completed", seconds=120)
    post(client, "/voice/status", {"CallSid": first, "CallStatus": "completed",
                                   "CallDuration": "130"})
    # The contact who asked for a callback hung up: the engineer goes to the caller
    # still on the line behind them, on their next hold cycle.
    assert hold_cycle(client, third).find("Leave") is not None
    after = post(client, "/voice/queue-result", {"CallSid": third, "QueueResult": "leave",
                                                "CallStatus": "in-progress"})
    assert rings_oncall(after) is not None
    # The callback keeps its place for the advisors in the morning.
    assert desk.r.zscore(keys.team_waiting("hosting"), second) is not None


def test_a_callback_alone_in_hosting_does_not_queue_the_next_outage_caller(
        desk, lakeview, client):
    first, doc = report_outage(client, PAT)
    second, _doc = report_outage(client, LEE)
    ask_for_callback(client, second)
    end_oncall_ring(client, first, status="completed", seconds=120)
    post(client, "/voice/status", {"CallSid": first, "CallStatus": "completed",
                                   "CallDuration": "130"})
    _third, doc = report_outage(client, KIM)
    assert rings_oncall(doc) is not None


def test_a_caller_the_engineer_does_not_serve_at_the_head_does_not_block_them(
        desk, lakeview, directory, client):
    directory.district("D200", "Riverside Schools", hosted=False)
    directory.contact("6001", "+16125550201", "D200", "Contact 6001", "2468",
                      last_active="2026-11-01")
    directory.load()
    # A non-hosted district's outage, accepted at 17:59 (hosting's advisor is off): it
    # waits for hosting's advisors, never for the engineer.
    with time_machine.travel(datetime(2026, 11, 24, 17, 59, tzinfo=CHICAGO), tick=True):
        early, doc = report_outage(client, "+16125550201")
        assert doc.find("Enqueue") is not None
    first, doc = report_outage(client, PAT)
    assert rings_oncall(doc) is not None
    second, doc = report_outage(client, LEE)
    assert rings_oncall(doc) is None and doc.find("Enqueue") is not None
    end_oncall_ring(client, first, status="completed", seconds=120)
    assert hold_cycle(client, early).find("Leave") is None
    assert hold_cycle(client, second).find("Leave") is not None
    after = post(client, "/voice/queue-result", {"CallSid": second, "QueueResult": "leave",
                                                "CallStatus": "in-progress"})
    assert rings_oncall(after) is not None
    assert desk.r.zscore(keys.team_waiting("hosting"), early) is not None


# Twilio's largest queue: callbacks kept for the morning may fill hosting's at night.
KEPT = 5_000


def keep_callbacks(r, n: int) -> None:
    """`n` hosted outage reporters of the evening who asked for a callback and hung up,
    kept for the morning at the head of hosting (Critical, earlier than anyone)."""
    before_ms = int(time.time() * 1000) - 3_600_000
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        sid = f"CAcb{i:032d}"
        pipe.hset(keys.call(sid), mapping={
            "call_sid": sid, "callback": "1", "callback_state": "waiting", "outage": "1",
            "verified": "1", "hosted": "1", "waiting_team": "hosting",
            "priority": "critical", "contact": "5001"})
        pipe.set(keys.call_ended(sid), "1")
        pipe.zadd(keys.team_waiting("hosting"), {sid: before_ms - n + i})
    pipe.execute()


def call_hashes_read(r) -> int:
    """How many call hashes Redis was asked for (HMGET: the on-call take's reads)
    since the counters were reset: what an operator sees in INFO commandstats."""
    return r.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0)


def test_a_night_hold_cycle_behind_thousands_of_kept_callbacks_blocks_redis_briefly(
        desk, lakeview, client):
    first, doc = report_outage(client, PAT)
    assert rings_oncall(doc) is not None
    second, _ = report_outage(client, LEE)
    third, _ = report_outage(client, KIM)
    keep_callbacks(desk.r, KEPT)
    end_oncall_ring(client, first, status="completed", seconds=120)
    desk.r.config_resetstat()
    # KIM's hold cycle comes first: LEE, just ahead, has the engineer before her.
    assert hold_cycle(client, third).find("Leave") is None
    assert call_hashes_read(desk.r) <= 150
    desk.r.config_resetstat()
    # LEE, behind 5,000 callbacks the engineer does not serve, is offered them.
    assert hold_cycle(client, second).find("Leave") is not None
    assert call_hashes_read(desk.r) <= 150
    after = post(client, "/voice/queue-result", {"CallSid": second, "QueueResult": "leave",
                                                "CallStatus": "in-progress"})
    assert rings_oncall(after) is not None


def test_a_new_outage_caller_behind_thousands_of_kept_callbacks_blocks_redis_briefly(
        desk, lakeview, client):
    keep_callbacks(desk.r, KEPT)
    desk.r.config_resetstat()
    _sid, doc = report_outage(client, LEE)
    assert rings_oncall(doc) is not None
    assert call_hashes_read(desk.r) <= 150


def test_a_new_outage_caller_waits_for_the_one_queued_behind_kept_callbacks(
        desk, lakeview, client):
    first, doc = report_outage(client, PAT)
    assert rings_oncall(doc) is not None
    second, _ = report_outage(client, LEE)
    keep_callbacks(desk.r, KEPT)
    end_oncall_ring(client, first, status="completed", seconds=120)
    desk.r.config_resetstat()
    # KIM calls as the line frees: LEE, waiting behind 5,000 callbacks, comes first.
    _third, doc = report_outage(client, KIM)
    assert rings_oncall(doc) is None and doc.find("Enqueue") is not None
    assert call_hashes_read(desk.r) <= 150
    assert hold_cycle(client, second).find("Leave") is not None


def test_a_hold_cycle_repeated_without_its_token_after_it_took_the_engineer_leaves_again(
        desk, lakeview, client):
    first, doc = report_outage(client, PAT)
    assert rings_oncall(doc) is not None
    second, _ = report_outage(client, LEE)
    third, _ = report_outage(client, KIM)
    end_oncall_ring(client, first, status="completed", seconds=120)
    # LEE's hold cycle takes the engineer, but Twilio timed out on its reply and posts
    # it again without its token: Twilio acts on the second reply.
    assert hold_cycle(client, second).find("Leave") is not None
    again = post_without_token(client, "/voice/wait", {"CallSid": second,
                                                       "QueuePosition": "1"})
    assert again.find("Leave") is not None
    after = post(client, "/voice/queue-result", {"CallSid": second, "QueueResult": "leave",
                                                "CallStatus": "in-progress"})
    number = rings_oncall(after)
    assert number is not None
    # The engineer takes LEE's call; once it ends, the line is KIM's, behind.
    whisper = post(client, relative(number.get("url")), {"CallSid": "CL2",
                                                         "CallStatus": "in-progress"})
    post(client, relative(whisper.find("Gather").get("action")), {"CallSid": "CL2",
                                                                  "Digits": "1"})
    end_oncall_ring(client, second, seconds=300)
    post(client, "/voice/status", {"CallSid": second, "CallStatus": "completed",
                                   "CallDuration": "320"})
    assert hold_cycle(client, third).find("Leave") is not None


def waits_for_hosting(desk, sid: str) -> bool:
    """Whether the caller waits in hosting's queue, as the desk's queue shows."""
    return desk.r.zscore(keys.team_waiting("hosting"), sid) is not None


def test_a_waiting_outage_caller_reaches_the_engineer_as_their_line_frees_without_a_hold_cycle(
        phone, desk, lakeview, client):
    """Twilio asks the waitUrl again only once the hold music (a track minutes long) has
    played out: LEE, waiting while the engineer talks to PAT, is brought over by a
    redirect the moment that call ends, not at the end of the track."""
    first, doc = report_outage(client, PAT)
    assert rings_oncall(doc) is not None
    lee = phone.caller(LEE, "8", hold_track_seconds=600, max_wait_seconds=20)
    waiting = threading.Thread(target=lee.run)
    waiting.start()
    try:
        deadline = time.monotonic() + 10
        while not waits_for_hosting(desk, lee.call_sid):
            assert time.monotonic() < deadline, "LEE never queued"
            time.sleep(0.02)
        time.sleep(0.3)  # LEE hears the position and the hold music: their one hold cycle
        end_oncall_ring(client, first, status="completed", seconds=120)
    finally:
        waiting.join(timeout=30)
    result = lee.result
    assert result.dialed == [ONCALL] and result.outcome == "advisor"
    assert result.queue_seconds < 15  # not given up at the queue's limit (20 s)


def redirects_to(emulator, sid: str, count: int = 1) -> list:
    """The REST redirects of the call, once `count` have come (the web service sends
    them on its background pool, after answering the webhook that freed the line)."""
    deadline = time.monotonic() + 15
    while len(emulator.redirects(sid)) < count:
        assert time.monotonic() < deadline, f"{sid} was not redirected"
        time.sleep(0.02)
    return emulator.redirects(sid)


def test_one_waiting_caller_is_redirected_to_the_freed_engineer_and_the_next_if_gone(
        desk, lakeview, client, emulator):
    first, doc = report_outage(client, PAT)
    assert rings_oncall(doc) is not None
    second, _ = report_outage(client, LEE)
    third, _ = report_outage(client, KIM)
    # LEE hung up on Twilio's side; their status callback has not come yet.
    emulator.end_call(second)
    end_oncall_ring(client, first, status="completed", seconds=120)
    # Twilio said LEE's call is over: the line goes to KIM, behind, at once.
    assert [relative(r.form["Url"]) for r in redirects_to(emulator, third)] == \
        ["/voice/connect"]
    assert desk.r.get(keys.oncall_line()) == third
    assert not waits_for_hosting(desk, third)
    after = post(client, "/voice/connect", {"CallSid": third, "CallStatus": "in-progress"})
    assert rings_oncall(after) is not None
    # Nobody else was brought over for that one line.
    assert len(emulator.redirects()) == 2


def test_a_redirect_to_the_freed_engineer_that_failed_is_sent_again(
        desk, lakeview, client, emulator):
    first, _ = report_outage(client, PAT)
    second, _ = report_outage(client, LEE)
    emulator.fail_next(503)
    end_oncall_ring(client, first, status="completed", seconds=120)
    assert [r.status for r in redirects_to(emulator, second, 2)] == [503, 200]
    after = post(client, "/voice/connect", {"CallSid": second, "CallStatus": "in-progress"})
    assert rings_oncall(after) is not None


def test_a_caller_twilio_would_not_redirect_keeps_their_place_and_the_next_pass_brings_them(
        desk, lakeview, client, emulator):
    from workers import context
    from workers.reconciler import reconcile

    first, _ = report_outage(client, PAT)
    second, _ = report_outage(client, LEE)
    score = desk.r.zscore(keys.team_waiting("hosting"), second)
    emulator.fail_next(*[503] * 5)  # every try of the redirect
    end_oncall_ring(client, first, status="completed", seconds=120)
    deadline = time.monotonic() + 20
    while desk.r.get(keys.oncall_line()) is not None:
        assert time.monotonic() < deadline, "the line was never given back"
        time.sleep(0.05)
    # LEE keeps their place (not counted as missed by the engineer), the line is free.
    assert desk.r.zscore(keys.team_waiting("hosting"), second) == score
    # The reconciler's next pass (10 s on) brings LEE over.
    context.configure(desk)
    try:
        assert reconcile()["oncall_caller_served"] == 1
    finally:
        context.configure(None)
    assert [r.status for r in redirects_to(emulator, second, 6)] == [503] * 5 + [200]
    after = post(client, "/voice/connect", {"CallSid": second, "CallStatus": "in-progress"})
    assert rings_oncall(after) is not None
