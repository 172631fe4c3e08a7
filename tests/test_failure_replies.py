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
from directory.redis_client import connect_redis, raw_twin
from ivr.voice.errors import FAILURE_REPLIES, HOLD_THROUGH_SECONDS
from routing import availability
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, BASE_URL, NOW, free_port
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
