"""What a failure inside a call answers, by where the request came from
(`ivr.voice.errors.FAILURE_REPLIES`): the caller's own call reaches the fallback
number; a caller on hold keeps their place (Twilio allows no `<Dial>` in waitUrl
TwiML, and a `<Hangup>` there loses their place); an advisor's leg ends, never dialing
the fallback from the advisor's phone; a status callback hears `<Response/>`."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import time_machine

from caseline.embedded_redis import start_server, wait_until_up
from directory import keys
from directory.redis_client import connect_redis, raw_twin
from ivr.voice.errors import FAILURE_REPLIES, HOLD_THROUGH_SECONDS
from routing import acd, availability, presence
from routing.call_state import start_call
from tests.conftest import (
    ACCOUNT_SID,
    API_TOKEN,
    AUTH_TOKEN,
    BASE_URL,
    NOW,
    free_port,
    run_jobs,
)
from tests.webhooks import signed_post
from twilio_side import Caller, FlaskTransport, InProcessLink
from workers import context

PAT = "+16125550101"
A2 = "+16515550102"
FALLBACK = "+16515550000"
SID = "CA" + "3" * 32
LEG = "CA" + "4" * 32
# What Twilio plays in waitUrl TwiML; anything else there is an application error.
ALLOWED_ON_HOLD = {"Play", "Say", "Pause", "Hangup", "Redirect", "Leave", "Gather"}
DOWN = "redis://127.0.0.1:9/0"  # nothing listens: every Redis command fails

# Each webhook as Twilio reaches it: path, with the query our own TwiML puts on it.
CALLERS_OWN = ["/voice/incoming", "/voice/menu?attempt=1", "/voice/product?attempt=1",
               "/voice/case?attempt=1", "/voice/verify/contact?option=1&attempt=1",
               "/voice/verify/pin?option=1", "/voice/after-hours/case?attempt=1",
               "/voice/outage/route", "/voice/oncall-result",
               "/voice/dial-result?advisor=A2", "/voice/connect", "/voice/hold-again",
               "/voice/queue-result",
               f"/voice/conference/join?call={SID}&role=contact",
               f"/voice/conference/ended?call={SID}&role=contact"]
ON_HOLD = ["/voice/wait", "/voice/callback"]
ADVISORS_LEG = [f"/voice/whisper?call={SID}&advisor=A2",
                f"/voice/whisper/accept?call={SID}&advisor=A2",
                f"/voice/callback/advisor?call={SID}&advisor=A2",
                f"/voice/callback/accept?call={SID}&advisor=A2",
                f"/voice/callback/dial-result?call={SID}&advisor=A2&attempt=1",
                f"/voice/oncall/whisper?call={SID}", f"/voice/oncall/accept?call={SID}",
                f"/voice/conference/join?call={SID}&role=advisor",
                f"/voice/conference/ended?call={SID}&role=advisor"]
CALLBACKS = ["/voice/status", f"/voice/callback/status?call={SID}&advisor=A2",
             f"/voice/conference/colleague?call={SID}", "/voice/transcribed"]


@pytest.fixture
def down(settings, make_app):
    """Post a webhook to a service whose Redis is down (`fallback`: with the fallback
    number set); the TwiML answered, which must be a 200."""
    apps = {}

    def post(path: str, fallback: bool = True, **form: str):
        key = fallback
        if key not in apps:
            apps[key] = make_app(settings.with_changes(
                redis_url=DOWN, fallback_number=FALLBACK if fallback else None))
        leg = LEG if "call=" in path else SID
        response = signed_post(apps[key].test_client(), path,
                               {"CallSid": leg, "From": PAT, "CallStatus": "in-progress",
                                **form})
        assert response.status_code == 200, (path, response.status_code, response.data)
        return ET.fromstring(response.data)
    return post


def dialed(root: ET.Element) -> list[str]:
    """What a TwiML document dials."""
    return [(d.text or "").strip() for d in root.iter("Dial")]


def verbs(root: ET.Element) -> list[str]:
    """The verbs of a TwiML document, in order."""
    return [verb.tag for verb in root]


def test_every_voice_webhook_has_its_failure_reply(app):
    """A new webhook decides what its failure answers (a caller on hold cannot be
    dialed; an advisor's leg must not dial the fallback)."""
    routes = {rule.endpoint for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/voice")}
    assert routes == set(FAILURE_REPLIES)
    tested = {path.split("?")[0] for path in CALLERS_OWN + ON_HOLD + ADVISORS_LEG + CALLBACKS}
    tested |= {"/voice/survey", "/voice/fallback/over", "/voice/recorded"}  # own tests below
    assert tested == {rule.rule for rule in app.url_map.iter_rules()
                      if rule.rule.startswith("/voice")}


@pytest.mark.parametrize("path", CALLERS_OWN)
def test_the_callers_own_call_reaches_the_fallback_number(down, path):
    assert dialed(down(path)) == [FALLBACK]


@pytest.mark.parametrize("fallback", [True, False])
def test_a_caller_who_just_left_a_voicemail_hears_its_thanks(down, fallback):
    """The `<Record>` action fails (Redis down) and the caller pressed `#`, still on the
    line: their message is recorded at Twilio, so they hear the voicemail's thanks and
    goodbye, as when nothing failed (before: the fallback number dialed, or the
    apology and "please call again", right after leaving their message)."""
    root = down("/voice/recorded", fallback, RecordingUrl="https://rec/RE1",
                RecordingDuration="14", Digits="#")
    assert dialed(root) == [] and verbs(root) == ["Say", "Hangup"], verbs(root)
    assert "Monday" not in "".join(root.itertext())  # not the apology with the hours


@pytest.mark.parametrize("fallback", [True, False])
@pytest.mark.parametrize("path", ON_HOLD)
def test_a_caller_on_hold_keeps_their_place(down, path, fallback):
    """Before: the fallback's `<Dial>` (not allowed on hold: Twilio drops the call
    from its hold music with an application error), or the apology and `<Hangup/>`."""
    root = down(path, fallback, QueueTime="40", QueuePosition="1")
    assert set(verbs(root)) <= ALLOWED_ON_HOLD, verbs(root)
    assert "Hangup" not in verbs(root) and "Leave" not in verbs(root), verbs(root)
    # Silence for a moment, then Twilio asks the waitUrl again.
    assert verbs(root)[-1] == "Pause"


@pytest.mark.parametrize("path", ADVISORS_LEG)
def test_an_advisors_leg_ends_without_dialing(down, path):
    """The advisor's phone never dials the fallback number (a caller left ringing on
    the advisor's leg); their leg ends with a sentence, the caller's goes on."""
    root = down(path)
    assert dialed(root) == []
    assert verbs(root) == ["Say", "Hangup"]


@pytest.mark.parametrize("path", CALLBACKS)
def test_a_status_callback_hears_an_empty_response(down, path):
    assert verbs(down(path, CallStatus="completed")) == []


@pytest.mark.parametrize("dial_status", ["completed", "no-answer"])
def test_the_fallback_numbers_dial_action_never_dials_it_again(down, dial_status):
    """The fallback leg is over and Redis is (still) down: dialing the fallback number
    again would ring it after the caller's conversation there."""
    root = down("/voice/fallback/over", DialCallStatus=dial_status)
    assert dialed(root) == [] and verbs(root)[-1] == "Hangup"


def test_a_fallback_number_that_did_not_answer_leaves_the_apology_with_redis_down(down):
    """Nobody answered at the fallback number, and Redis is still down: the caller, on
    the line, hears the apology with the desk's hours before the call ends (before: a
    silent hang-up, the error reply, as the fallback's record failed). Answered after
    a conversation there, the call just ends."""
    root = down("/voice/fallback/over", DialCallStatus="no-answer")
    assert verbs(root) == ["Say", "Hangup"], verbs(root)
    assert "Monday" in "".join(root.itertext()), "".join(root.itertext())
    assert verbs(down("/voice/fallback/over", DialCallStatus="completed")) == ["Hangup"]


def test_the_survey_after_the_conversation_says_goodbye(down):
    root = down("/voice/survey?q=1", Digits="4")
    assert dialed(root) == [] and verbs(root)[-1] == "Hangup"


def test_a_long_outage_on_hold_leaves_the_queue_for_the_fallback_number(down):
    """Hold cycles failing past `HOLD_THROUGH_SECONDS` (not a restart any more): the
    caller leaves the queue, and the Enqueue action, failing too, dials the fallback."""
    hold = {"QueueTime": "40", "QueuePosition": "1"}
    assert verbs(down("/voice/wait", **hold))[-1] == "Pause"
    with time_machine.travel(NOW + timedelta(seconds=HOLD_THROUGH_SECONDS - 5)):
        assert verbs(down("/voice/wait", **hold))[-1] == "Pause"
    with time_machine.travel(NOW + timedelta(seconds=HOLD_THROUGH_SECONDS + 1)):
        assert verbs(down("/voice/wait", **hold)) == ["Leave"]
        assert dialed(down("/voice/queue-result", QueueResult="leave")) == [FALLBACK]


def test_without_a_fallback_number_the_caller_holds_until_the_longest_wait(down, settings):
    """No fallback number: leaving would only end in the apology, so the caller holds
    on through the outage until the queue's own limit (`CASELINE_MAX_WAIT_SECONDS`)."""
    limit = settings.max_wait_seconds
    with time_machine.travel(NOW + timedelta(seconds=HOLD_THROUGH_SECONDS * 10)):
        assert verbs(down("/voice/wait", False, QueueTime=str(limit - 1)))[-1] == "Pause"
        assert verbs(down("/voice/wait", False, QueueTime=str(limit))) == ["Leave"]
        assert verbs(down("/voice/queue-result", False, QueueResult="leave")) == [
            "Say", "Hangup"]


class RestartingRedis:
    """A Redis server that restarts from its snapshot (about a second down)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = start_server(folder, port=self.port)
        wait_until_up(self.url)
        self.down = False

    def stop(self) -> None:
        redis.Redis.from_url(self.url).shutdown(save=True)
        self.process.wait(timeout=10)
        self.down = True

    def start(self) -> None:
        self.process = start_server(self.folder, port=self.port)
        wait_until_up(self.url)
        self.down = False

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def restarting_redis(tmp_path: Path):
    server = RestartingRedis(tmp_path / "restarting-redis")
    yield server
    server.close()


@pytest.mark.slow
def test_redis_restarting_during_a_hold_cycle_the_caller_holds_on_and_is_answered(
        settings, directory, desk, make_app, emulator, restarting_redis):
    """Pat waits for the general team; Redis restarts as a hold cycle is fetched: she
    hears she keeps her place (before: the fallback's `<Dial>`, not allowed on hold, or
    the apology and a hang-up), and the advisor free after the restart answers her."""
    directory.district()
    directory.contact()
    directory.advisor("A2", ["general"], phone=A2)
    s = settings.with_changes(redis_url=restarting_redis.url, fallback_number=FALLBACK)
    r = connect_redis(restarting_redis.url)
    here = replace(desk, r=r, settings=s, jobs=raw_twin(r))
    context.configure(here)
    directory.desk = here
    directory.load()
    app = make_app(s)
    pat = Caller(FlaskTransport(app.test_client(), BASE_URL, auth_token=AUTH_TOKEN), PAT,
                 keys=["2"], advisor_policy="answer", account_sid=ACCOUNT_SID,
                 emulator_link=InProcessLink(emulator), max_wait_seconds=8.0,
                 wait_poll_interval=0.02)
    waits = []

    def on_event(event) -> None:
        if event.kind != "wait":
            return
        waits.append(event)
        if len(waits) == 2:
            restarting_redis.stop()  # this hold cycle meets no Redis
        elif restarting_redis.down:
            restarting_redis.start()  # a cycle later it is back
        elif len(waits) == 4:
            availability.free_advisor(here, "A2", int(time.time() * 1000), explicit=True)
    pat.on_event = on_event
    try:
        result = pat.run()
    finally:
        r.close()
    warnings = [e.text for e in result.transcript if e.kind == "warning"]
    assert not warnings, warnings
    assert not [e for e in result.transcript if e.kind == "hangup" and e.party == "service"]
    assert result.answered_by == A2, result.summary()


# --- A caller given the fallback reply is out of the desk's queue for good. ---

A7 = "+16515550199"
API = {"Authorization": f"Bearer {API_TOKEN}"}
BLIP = redis.ConnectionError("Error 111 connecting to 127.0.0.1. Connection refused.")


@pytest.fixture
def two_advisors(directory):
    """Pat (a verified contact) and two general advisors, A2 and A7, offline."""
    directory.district()
    directory.contact()
    directory.advisor("A2", ["general"], phone=A2)
    directory.advisor("A7", ["general"], phone=A7)
    directory.load()


def waiting(desk, sid: str, at_ms: int) -> None:
    """Pat's call `sid` waits in the general queue since `at_ms`, live at the emulator's
    Twilio (its session as the webhooks leave it)."""
    start_call(desk.r, sid, {"caller": PAT, "base": BASE_URL, "started_at": at_ms,
                             "team": "general", "priority": "medium", "menu": "2"})
    claim = presence.claim_for_caller(desk.r, sid, team="general", owner_id=None,
                                      now_ms=at_ms, lease_ms=desk.lease_ms)
    assert claim.outcome == "queued"


def queued(client) -> list[str]:
    """The CallSids GET /api/queues lists, every team."""
    queues = client.get("/api/queues", headers=API).get_json()
    return [caller["call_sid"] for callers in queues.values() for caller in callers]


def advisor(client, advisor_id: str) -> dict:
    """The advisor as GET /api/advisors shows them."""
    [found] = [a for a in client.get("/api/advisors", headers=API).get_json()
               if a["id"] == advisor_id]
    return found


def test_a_caller_whose_connect_failed_is_not_redirected_from_the_fallback_number(
        settings, desk, two_advisors, make_app, emulator, monkeypatch):
    """A2 frees up and is claimed for Pat, who waited; Twilio moves her call to
    /voice/connect, which fails on a bug: she is dialed to the fallback number. Her
    place is gone and A2 is free at once; once A2's ring would have run out, the
    reconciler puts nobody back, and A7 freed later never redirects her call (before:
    the release put her back in her place and A7's claim redirected her live call,
    cutting her conversation at the fallback number, to ring A7)."""
    from directory.scripts import script

    app = make_app(settings.with_changes(fallback_number=FALLBACK))
    client = app.test_client()
    now = int(time.time() * 1000)
    emulator.register_call(SID, from_=PAT)
    waiting(desk, SID, now - 42_000)
    assert availability.free_advisor(desk, "A2", now, explicit=True).call_sid == SID
    assert len(emulator.redirects(SID)) == 1  # to /voice/connect

    renew = script(desk.r, presence._RENEW_RING).sha
    scripts, failed = redis.Redis.evalsha, []

    def a_bug_renewing_the_ring(self, *args, **kwargs):
        if args and args[0] == renew and not failed:
            failed.append("bug")
            raise redis.ResponseError("ERR user_script:1: attempt to index a nil value")
        return scripts(self, *args, **kwargs)
    monkeypatch.setattr(redis.Redis, "evalsha", a_bug_renewing_the_ring)
    answer = ET.fromstring(signed_post(client, "/voice/connect", {
        "CallSid": SID, "From": PAT, "CallStatus": "in-progress"}).data)
    monkeypatch.undo()
    assert failed and dialed(answer) == [FALLBACK]

    assert SID not in queued(client)
    later = now + desk.lease_ms + 1_000  # A2's ring would have run out
    acd.reconcile(desk, later)
    assert SID not in queued(client)
    availability.free_advisor(desk, "A7", later, explicit=True)
    assert len(emulator.redirects(SID)) == 1  # never moved again
    assert SID not in queued(client)
    # Nobody was held for her meanwhile: A2 was let go with the fallback, not at the
    # end of the ring's lease.
    for advisor_id in ("A2", "A7"):
        found = advisor(client, advisor_id)
        assert (found["status"], found["call_sid"]) == ("available", None), found
    assert int(presence.advisor_state(desk.r, "A2")["since"]) < later


def test_a_caller_who_left_hold_for_the_fallback_is_not_redirected_once_redis_is_back(
        settings, desk, two_advisors, make_app, emulator, monkeypatch):
    """Redis is unreachable past `HOLD_THROUGH_SECONDS`: Pat's hold cycles answer
    `<Leave/>` and the Enqueue action, failing too, dials the fallback number. Redis
    comes back; once the web process has written the fallback's mark, she is out of
    the queue, and A2 freed then never redirects her call away from the fallback
    number (before: still in the desk's queue, she was A2's next caller)."""
    app = make_app(settings.with_changes(fallback_number=FALLBACK))
    client = app.test_client()
    now = int(time.time() * 1000)
    emulator.register_call(SID, from_=PAT)
    waiting(desk, SID, now - 42_000)

    def unreachable(self, *args, **kwargs):
        raise BLIP
    monkeypatch.setattr(redis.Redis, "execute_command", unreachable)
    form = {"CallSid": SID, "From": PAT, "CallStatus": "in-progress"}
    hold = {**form, "QueueTime": "40", "QueuePosition": "1"}
    assert verbs(ET.fromstring(signed_post(client, "/voice/wait", hold).data))[-1] == "Pause"
    with time_machine.travel(time.time() + HOLD_THROUGH_SECONDS + 1):
        left = ET.fromstring(signed_post(client, "/voice/wait", hold).data)
        answer = ET.fromstring(signed_post(client, "/voice/queue-result", {
            **form, "QueueResult": "leave"}).data)
    monkeypatch.undo()
    assert verbs(left) == ["Leave"] and dialed(answer) == [FALLBACK]

    deadline = time.monotonic() + 10
    while desk.r.hget(keys.call(SID), "fallback") is None:
        assert time.monotonic() < deadline, "the fallback was never recorded"
        time.sleep(0.05)
    assert SID not in queued(client)
    availability.free_advisor(desk, "A2", int(time.time() * 1000), explicit=True)
    assert emulator.redirects(SID) == []
    assert SID not in queued(client)
    assert advisor(client, "A2")["status"] == "available"


# --- A failure right after a conversation hangs up; the call's end frees the advisor. ---

@pytest.mark.parametrize("failure", ["blip", "bug"])
def test_a_failure_after_the_conversation_hangs_up_and_the_end_frees_the_advisor(
        settings, desk, two_advisors, make_app, emulator, monkeypatch, failure):
    """Pat talked to A2, who hangs up first (`DialCallStatus` completed, `DialBridged`
    true, Pat still on the line) as Redis blinks or a bug fires: Pat hears a bare
    `<Hangup/>`, as the gate answers a caller it lost after a conversation (before:
    "sorry for the trouble" and the fallback number, a second conversation about a
    problem handled, with A2 left talking until it ended). Her status callback then
    puts A2 in wrap-up, and the log says answered, not fallback."""
    app = make_app(settings.with_changes(fallback_number=FALLBACK))
    client = app.test_client()
    now = int(time.time() * 1000)
    start_call(desk.r, SID, {"caller": PAT, "base": BASE_URL, "started_at": now - 60_000,
                             "team": "general", "priority": "medium", "menu": "2"})
    availability.free_advisor(desk, "A2", now - 60_000, explicit=True)
    claim = presence.claim_for_caller(desk.r, SID, team="general", owner_id=None,
                                      now_ms=now - 50_000, lease_ms=desk.lease_ms)
    assert claim.advisor_id == "A2"
    assert acd.accept_call(desk, SID, "A2", now - 45_000)
    assert advisor(client, "A2")["call_sid"] == SID

    scripts, failed = redis.Redis.evalsha, []

    def a_bug_once(self, *args, **kwargs):
        if not failed:
            failed.append("bug")
            raise redis.ResponseError("ERR user_script:1: attempt to index a nil value")
        return scripts(self, *args, **kwargs)

    def unreachable(self, *args, **kwargs):
        failed.append("blip")
        raise BLIP
    if failure == "bug":
        monkeypatch.setattr(redis.Redis, "evalsha", a_bug_once)
    else:
        monkeypatch.setattr(redis.Redis, "execute_command", unreachable)
    form = {"CallSid": SID, "From": PAT, "CallStatus": "in-progress"}
    answer = ET.fromstring(signed_post(client, "/voice/dial-result?advisor=A2", {
        **form, "DialCallStatus": "completed", "DialBridged": "true",
        "DialCallDuration": "44"}).data)
    monkeypatch.undo()
    assert failed and verbs(answer) == ["Hangup"], verbs(answer)

    signed_post(client, "/voice/status", {**form, "CallStatus": "completed",
                                          "CallDuration": "60"})
    a2 = advisor(client, "A2")
    assert a2["call_sid"] is None and (a2["wrap_up"] or a2["status"] == "available"), a2
    run_jobs(desk)
    log = _call_log(desk, SID)
    assert log["status"] == "answered", log


def _call_log(desk, sid: str) -> dict:
    """The call log the worker wrote for `sid`, as the API shows call logs."""
    from sqlalchemy import select

    from directory.models import CallLog
    with desk.session_factory() as db:
        return db.scalars(select(CallLog).where(CallLog.call_sid == sid)).one().to_dict()


@pytest.mark.parametrize("path", [
    "/voice/dial-result?advisor=A2", "/voice/oncall-result",
    f"/voice/conference/ended?call={SID}&role=contact"])
def test_right_after_a_conversation_a_failure_hangs_up(down, path):
    """Redis down as the conversation ends, the caller still on the line: `<Hangup/>`,
    never the fallback number; a `<Dial>` to a leg that ended at the whisper
    (`DialBridged` false) still reaches the fallback."""
    after = {"DialCallStatus": "completed", "DialBridged": "true"}
    assert verbs(down(path, **after)) == ["Hangup"]
    assert verbs(down(path, False, **after)) == ["Hangup"]
    if "conference" not in path:
        assert dialed(down(path, DialCallStatus="completed", DialBridged="false")) == [FALLBACK]
    assert verbs(down("/voice/queue-result", QueueResult="bridged")) == ["Hangup"]
