"""A caller the desk lost track of starts over, never hears a goodbye mid-call.

Redis may come back empty while calls are live (flushed, or restarted without
persistence: docs/deploy.md). Their next webhook meets no session. PRODUCT: a caller
still reaches a human, never a silent hang-up; so a caller still finding their way in
hears an apology and is sent back to the greeting (a caller on hold leaves the queue
first), and the call goes on from there and is logged once.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from config.prompts import Prompts
from directory import keys
from directory.models import CallLog
from tests.conftest import make_available, run_jobs
from tests.test_callback_wrap_up import lakeview  # noqa: F401 - the fixture
from tests.test_real_world import PAT, post

LINE = "+18005550100"
ATTESTED = "TN-Validation-Passed-A"

pytestmark = pytest.mark.usefixtures("lakeview")


def calls(client) -> tuple[str, dict[str, str]]:
    """Pat calls the line and hears the menu; their CallSid and the form Twilio posts."""
    sid = "CA" + uuid.uuid4().hex
    form = {"CallSid": sid, "From": PAT, "To": LINE, "StirVerstat": ATTESTED,
            "CallStatus": "in-progress"}
    assert post(client, "/voice/incoming", form).find("Gather") is not None
    return sid, form


def redis_comes_back_empty(desk) -> None:
    """Redis is flushed under the running service (an empty restart)."""
    desk.r.flushall()


def follows_to_the_greeting(client, form, reply) -> None:
    """The reply apologises and sends the call back to the greeting, which Twilio
    fetches: Pat hears the menu again."""
    p = Prompts()
    assert reply.findtext("Say") == p.text("routing.start_over")
    redirect = reply.find("Redirect")
    assert redirect is not None and redirect.text == "/voice/incoming"
    assert reply.find("Hangup") is None
    again = post(client, redirect.text, form)
    assert again.find("Gather") is not None


def test_a_caller_in_the_menu_when_redis_comes_back_empty_starts_over_and_is_logged_once(
        client, desk):
    sid, form = calls(client)
    redis_comes_back_empty(desk)
    follows_to_the_greeting(client, form, post(client, "/voice/menu?attempt=1",
                                               {**form, "Digits": "1"}))
    assert desk.r.exists(keys.call(sid))  # the greeting opened the call again
    asked = post(client, "/voice/menu?attempt=1", {**form, "Digits": "1"})
    assert asked.find("Gather") is not None  # the case number: the call goes on
    post(client, "/voice/status", {**form, "CallStatus": "completed", "CallDuration": "40"})
    run_jobs(desk)
    with desk.session_factory() as db:
        assert len(db.scalars(select(CallLog).filter_by(call_sid=sid)).all()) == 1


def test_a_caller_on_hold_when_redis_comes_back_empty_leaves_the_queue_and_starts_over(
        client, desk):
    sid, form = calls(client)
    assert post(client, "/voice/menu?attempt=1", {**form, "Digits": "2"}).find(
        "Enqueue") is not None  # A2 has gone home: Pat waits
    redis_comes_back_empty(desk)
    hold = post(client, "/voice/wait", {**form, "QueuePosition": "1"})
    assert hold.find("Leave") is not None
    result = post(client, "/voice/queue-result", {**form, "QueueResult": "leave"})
    follows_to_the_greeting(client, form, result)


def test_a_key_pressed_on_hold_after_redis_comes_back_empty_leaves_the_queue(client, desk):
    _, form = calls(client)
    post(client, "/voice/menu?attempt=1", {**form, "Digits": "2"})
    redis_comes_back_empty(desk)
    assert post(client, "/voice/callback", {**form, "Digits": "1"}).find("Leave") is not None


@pytest.mark.parametrize(("path", "fields"), [
    ("/voice/dial-result?advisor=A2", {"DialCallStatus": "completed",
                                       "DialCallDuration": "300", "DialBridged": "true"}),
    ("/voice/queue-result", {"QueueResult": "bridged"}),
    ("/voice/queue-result", {"QueueResult": "hangup"}),
    ("/voice/recorded", {"RecordingUrl": "https://api.twilio.com/rec/RE1",
                         "RecordingDuration": "12"}),
    ("/voice/survey", {"Digits": "5"}),
])
def test_a_call_whose_conversation_is_over_hears_goodbye_not_the_greeting_again(
        client, desk, path, fields):
    _, form = calls(client)
    redis_comes_back_empty(desk)
    reply = post(client, path, {**form, **fields})
    assert reply.find("Redirect") is None and reply.find("Hangup") is not None


@pytest.mark.parametrize(("path", "fields"), [
    ("/voice/dial-result?advisor=A2", {"DialCallStatus": "completed",
                                       "DialCallDuration": "300", "DialBridged": "true"}),
    ("/voice/queue-result", {"QueueResult": "bridged"}),
])
def test_a_caller_whose_advisor_hung_up_after_redis_came_back_empty_hears_nothing_more(
        client, desk, path, fields):
    """Nobody can tell whether Pat may be surveyed: like anyone not surveyed, Pat hears
    nothing more after the conversation (PRODUCT.md, the survey), only the hang-up."""
    _, form = calls(client)
    redis_comes_back_empty(desk)
    reply = post(client, path, {**form, **fields})
    assert [child.tag for child in reply] == ["Hangup"]


@pytest.mark.parametrize("path", ["/voice/dial-result?advisor=A2", "/voice/oncall-result"])
@pytest.mark.parametrize("bridged", [{"DialBridged": "false"}, {}], ids=["not-bridged",
                                                                        "bridged-unsaid"])
def test_a_caller_whose_advisor_never_got_past_the_whisper_starts_over_not_hung_up(
        client, desk, path, bridged):
    """Redis came back empty while A2's phone rang: their whisper found no session and
    hung up their leg, which Twilio reports `completed` (after the whisper's few
    seconds), not bridged. Pat talked to nobody: Pat starts over from the greeting
    (PRODUCT: the caller still reaches a human), never a bare hang-up. Without
    `DialBridged` nothing says Pat talked either: starting over is the safe side."""
    _, form = calls(client)
    redis_comes_back_empty(desk)
    reply = post(client, path, {**form, "DialCallStatus": "completed",
                                "DialCallDuration": "14", **bridged})
    follows_to_the_greeting(client, form, reply)


def test_a_call_whose_state_was_lost_after_the_advisor_answered_is_not_logged_fallback(
        client, desk):
    """Pat talks to A2; Redis comes back empty meanwhile; the call ends (the `<Dial>`'s
    action, then the status callback). Nobody gave Pat the fallback reply: the log
    must not say `fallback` (before: every call with no `started_at` was), but that
    the line does not know how the call went (`unknown`)."""
    make_available(desk, "A2")
    sid, form = calls(client)
    dial = post(client, "/voice/menu?attempt=1", {**form, "Digits": "2"}).find("Dial")
    assert dial is not None and dial.findtext("Number") == "+16515550102"
    leg = {"CallSid": "CA" + uuid.uuid4().hex, "From": LINE, "To": "+16515550102",
           "CallStatus": "in-progress"}
    whisper = post(client, dial.find("Number").get("url"), leg)
    post(client, whisper.find("Gather").get("action"), {**leg, "Digits": "1"})
    redis_comes_back_empty(desk)
    ended = post(client, dial.get("action"), {**form, "DialCallStatus": "completed",
                                              "DialCallDuration": "300",
                                              "DialBridged": "true"})
    assert ended.find("Dial") is None  # nobody sends Pat to the fallback number
    post(client, "/voice/status", {**form, "CallStatus": "completed", "CallDuration": "320"})
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.scalars(select(CallLog).filter_by(call_sid=sid)).all()
    assert log.status == "unknown"
    assert "fallback" not in log.details
