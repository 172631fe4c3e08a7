"""Any input at all gets valid TwiML, never a 5xx; failures still reach a human."""

from __future__ import annotations

import dataclasses
import logging
import time
import xml.etree.ElementTree as ET

import pytest
import redis
import time_machine
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from directory import keys
from directory.models import CallLog
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, BASE_URL, make_available, run_jobs
from tests.webhooks import signed_post

ENDPOINTS = [
    "/voice/incoming", "/voice/menu", "/voice/menu?attempt=abc", "/voice/case",
    "/voice/product?attempt=99999999999999999999", "/voice/dial-result?advisor=nobody",
    "/voice/whisper?call=CAnothing&advisor=A1", "/voice/whisper/accept", "/voice/wait",
    "/voice/queue-result", "/voice/connect", "/voice/status", "/voice/verify/contact",
    "/voice/verify/pin?option=zz", "/voice/after-hours/case", "/voice/recorded",
    "/voice/outage/route", "/voice/oncall-result", "/voice/fallback/over",
]

FORMS = [
    {},
    {"CallSid": "CAbad"},
    {"CallSid": "CA" + "f" * 32, "From": "not a number", "Digits": "#*#*"},
    {"CallSid": "CA" + "e" * 32, "Digits": "9" * 70_000},
    {"CallSid": "CA" + "d" * 32, "From": "+16125550101", "Digits": "1",
     "DialCallStatus": "completed", "DialCallDuration": "-5", "CallDuration": "x",
     "QueueResult": "leave", "RecordingUrl": "javascript:alert(1)"},
    {"CallSid": "\x00\x01", "From": "\u202e+1612", "Digits": "\u0661"},
]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_voice_url_answers_twiml_whatever_the_form(client, path):
    for form in FORMS:
        response = signed_post(client, path, form)
        assert response.status_code < 500, (path, form.keys(), response.status_code)
        root = ET.fromstring(response.data)
        assert root.tag == "Response", (path, response.data[:200])


def test_repeated_parameters_still_answer_twiml(client):
    body = f"AccountSid={ACCOUNT_SID}&CallSid=CA1&CallSid=CA2&Digits=1&Digits=2"
    form = MultiDict([("AccountSid", ACCOUNT_SID), ("CallSid", "CA1"), ("CallSid", "CA2"),
                      ("Digits", "1"), ("Digits", "2")])
    signature = RequestValidator(AUTH_TOKEN).compute_signature(BASE_URL + "/voice/menu", form)
    response = client.post("/voice/menu", data=body, headers={
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code < 500
    assert ET.fromstring(response.data).tag == "Response"


def test_redis_down_dials_the_fallback_number(settings, engine, make_app):
    app = make_app(settings.with_changes(redis_url="redis://127.0.0.1:9/0",
                                           fallback_number="+16515550000"))
    form = {"CallSid": "CA" + "1" * 32, "From": "+16125550101"}
    response = signed_post(app.test_client(), "/voice/incoming", form)
    assert response.status_code == 200
    root = ET.fromstring(response.data)
    assert root.find("Dial").text == "+16515550000"


def _reaches_the_fallback_while_redis_is_down(settings, make_app) -> tuple[dict, str]:
    """A call comes in while Redis is down: its form, and the fallback `<Dial>`'s action,
    which Twilio posts from the call when the fallback leg is over."""
    down = make_app(settings.with_changes(redis_url="redis://127.0.0.1:9/0",
                                          fallback_number="+16515550000"))
    form = {"CallSid": "CA" + "3" * 32, "From": "+16125550101", "To": "+18005550100"}
    answer = signed_post(down.test_client(), "/voice/incoming", form)
    dial = ET.fromstring(answer.data).find("Dial")
    assert dial.text == "+16515550000"
    return form, dial.get("action")


def _pat_at_the_menu(settings, make_app, sid: str) -> tuple:
    """Pat (attested) calls a line with a fallback number and hears the menu: the
    app's client and her call's form."""
    client = make_app(settings.with_changes(fallback_number="+16515550000")).test_client()
    form = {"CallSid": sid, "From": "+16125550101", "To": "+18005550100",
            "StirVerstat": "TN-Validation-Passed-A", "CallStatus": "in-progress"}
    assert ET.fromstring(signed_post(client, "/voice/incoming", form).data).find(
        "Gather") is not None
    return client, form


def _a_bug_once(monkeypatch) -> list:
    """The next Redis script fails on a bug (a script error from Redis, which is up),
    once; the list of the failed calls' arguments (empty until it failed)."""
    scripts, failed = redis.Redis.evalsha, []

    def a_bug_once(self, *args, **kwargs):
        if not failed:
            failed.append(args)
            raise redis.ResponseError("ERR user_script:1: attempt to index a nil value")
        return scripts(self, *args, **kwargs)
    monkeypatch.setattr(redis.Redis, "evalsha", a_bug_once)
    return failed


def _the_log(desk) -> CallLog:
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.query(CallLog).all()
        return log


def test_a_call_that_reached_the_fallback_while_redis_was_down_is_logged_as_such(
        settings, desk, client, make_app):
    """Redis is down when the call comes in: the caller talks 60 s at the fallback number;
    Redis is back for the `<Dial>`'s action and the status callback. The call log and
    /metrics say `fallback`, not a caller who gave up in the menu (docs/contract.md,
    Call logs)."""
    form, action = _reaches_the_fallback_while_redis_is_down(settings, make_app)
    over = signed_post(client, action, {**form, "CallStatus": "in-progress",
                                        "DialCallStatus": "completed",
                                        "DialCallDuration": "60"})
    assert [verb.tag for verb in ET.fromstring(over.data)] == ["Hangup"]
    signed_post(client, "/voice/status", {**form, "CallStatus": "completed",
                                          "CallDuration": "60"})
    log = _the_log(desk)
    assert (log.call_sid, log.status) == (form["CallSid"], "fallback")
    assert log.details["fallback"] == "number"
    assert 'outcome="fallback"' in client.get("/metrics").text


def test_a_fallback_told_after_the_status_callback_rewrites_the_log(
        settings, desk, client, make_app):
    """Twilio may post the `<Dial>`'s action after the status callback (the caller hung
    up at the fallback number): the log, written without it, is written again."""
    form, action = _reaches_the_fallback_while_redis_is_down(settings, make_app)
    signed_post(client, "/voice/status", {**form, "CallStatus": "completed",
                                          "CallDuration": "60"})
    assert _the_log(desk).status == "unknown"  # nothing the line kept says how it went
    signed_post(client, action, {**form, "CallStatus": "completed",
                                 "DialCallStatus": "completed", "DialCallDuration": "58"})
    log = _the_log(desk)
    assert (log.call_sid, log.status) == (form["CallSid"], "fallback")


def test_a_fallback_number_that_does_not_answer_leaves_the_apology(
        settings, desk, client, make_app):
    """Nobody answers at the fallback number: the caller, still on the line, hears the
    apology with the desk's hours (before: the call just ended), and is logged fallback."""
    form, action = _reaches_the_fallback_while_redis_is_down(settings, make_app)
    over = ET.fromstring(signed_post(client, action, {
        **form, "CallStatus": "in-progress", "DialCallStatus": "no-answer"}).data)
    assert [verb.tag for verb in over] == ["Say", "Hangup"]
    assert over.find("Dial") is None
    signed_post(client, "/voice/status", {**form, "CallStatus": "completed",
                                          "CallDuration": "40"})
    assert _the_log(desk).status == "fallback"


def test_a_fallback_given_while_redis_blinked_is_recorded_once_it_answers(
        settings, desk, make_app, monkeypatch):
    """Redis is unreachable for the call's first webhook only; the caller hangs up at the
    fallback number and Twilio's `<Dial>` action never reaches the line: the web
    process that gave the fallback records it once Redis answers, and the log says
    `fallback`."""
    app = make_app(settings.with_changes(fallback_number="+16515550000"))
    client = app.test_client()
    form = {"CallSid": "CA" + "6" * 32, "From": "+16125550101", "To": "+18005550100"}

    def unreachable(self, *args, **kwargs):
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1. Connection refused.")
    monkeypatch.setattr(redis.Redis, "execute_command", unreachable)
    answer = ET.fromstring(signed_post(client, "/voice/incoming", form).data)
    monkeypatch.undo()
    assert answer.find("Dial").text == "+16515550000"
    deadline = time.monotonic() + 10
    while desk.r.hget(keys.call(form["CallSid"]), "fallback") is None:
        assert time.monotonic() < deadline, "the fallback was never recorded"
        time.sleep(0.05)
    signed_post(client, "/voice/status", {**form, "CallStatus": "completed",
                                          "CallDuration": "30"})
    assert _the_log(desk).status == "fallback"


def _wait_for_the_mark(desk, sid: str) -> None:
    """Until the web process's retry thread has written the call's fallback mark."""
    deadline = time.monotonic() + 10
    while desk.r.hget(keys.call(sid), "fallback") is None:
        assert time.monotonic() < deadline, "the fallback was never recorded"
        time.sleep(0.05)


def test_a_fallback_given_while_redis_blinked_is_logged_though_its_status_is_lost(
        settings, desk, make_app, monkeypatch, emulator):
    """As above, and Twilio's status callback is lost too (Twilio never repeats it): the
    call the fallback mark opened is among the open calls, so the reconciler asks
    Twilio about it ten minutes on and logs it `fallback` (before: the mark opened a
    call nothing would ever end, and the call was never logged)."""
    from routing.call_state import OPEN_CALL_FIRST_CHECK_MS
    from workers import context
    from workers.reconciler import reconcile

    app = make_app(settings.with_changes(fallback_number="+16515550000"))
    form = {"CallSid": "CA" + "7" * 32, "From": "+16125550101", "To": "+18005550100"}
    emulator.register_call(form["CallSid"], from_=form["From"])

    def unreachable(self, *args, **kwargs):
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1. Connection refused.")
    monkeypatch.setattr(redis.Redis, "execute_command", unreachable)
    answer = ET.fromstring(signed_post(app.test_client(), "/voice/incoming", form).data)
    monkeypatch.undo()
    assert answer.find("Dial").text == "+16515550000"
    _wait_for_the_mark(desk, form["CallSid"])
    emulator.end_call(form["CallSid"], duration=45)  # its status callback lost
    context.configure(desk)
    with time_machine.travel(time.time() + OPEN_CALL_FIRST_CHECK_MS / 1000 + 60, tick=False):
        done = reconcile()
    assert done["open_calls_logged"] == 1, done
    log = _the_log(desk)
    assert (log.call_sid, log.status) == (form["CallSid"], "fallback")


def test_a_fallback_for_a_bug_is_recorded_though_redis_went_away_meanwhile(
        settings, desk, directory, make_app, monkeypatch):
    """A webhook fails on a bug (Redis up), and Redis is unreachable a moment later, as
    the fallback given for the bug is recorded: the mark is kept and written once
    Redis answers (before: kept only when Redis was the first failure, so lost), and
    the log says `fallback` though the fallback's `<Dial>` action never comes."""
    from directory.scripts import script
    from routing.call_state import _NOTE_FALLBACK

    directory.district()
    directory.contact()
    directory.load()
    client, form = _pat_at_the_menu(settings, make_app, "CA" + "8" * 32)
    note_sha = script(desk.r, _NOTE_FALLBACK).sha
    scripts, failed = redis.Redis.evalsha, []

    def a_bug_then_a_blink(self, *args, **kwargs):
        """The menu's script fails on a bug; the fallback's record meets no Redis."""
        if args and args[0] == note_sha and len(failed) == 1:
            failed.append("blink")
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1. Connection refused.")
        if not failed:
            failed.append("bug")
            raise redis.ResponseError("ERR user_script:1: attempt to index a nil value")
        return scripts(self, *args, **kwargs)
    monkeypatch.setattr(redis.Redis, "evalsha", a_bug_then_a_blink)
    answer = ET.fromstring(signed_post(client, "/voice/menu?attempt=1",
                                       {**form, "Digits": "2"}).data)
    monkeypatch.undo()
    assert failed == ["bug", "blink"] and answer.find("Dial").text == "+16515550000"
    _wait_for_the_mark(desk, form["CallSid"])
    signed_post(client, "/voice/status", {**form, "CallStatus": "completed",
                                          "CallDuration": "50"})
    assert _the_log(desk).status == "fallback"


def test_a_bug_mid_call_with_redis_up_is_logged_fallback(settings, desk, directory,
                                                         make_app, monkeypatch):
    """Pat keys her case number and the webhook fails on a bug (a script error from
    Redis, which is up): she is dialed to the fallback number, hangs up there, and
    Twilio's status callback comes before any `<Dial>` action. The log says
    `fallback` (before: `ended-in-menu`, as if she had given up in the menu)."""
    directory.district()
    directory.contact()
    directory.advisor("A7", ["general"])
    directory.case("2024117", owner="A7")
    directory.load()
    client, form = _pat_at_the_menu(settings, make_app, "CA" + "5" * 32)
    signed_post(client, "/voice/menu?attempt=1", {**form, "Digits": "1"})
    scripts, failed = redis.Redis.evalsha, []

    def a_bug_noting_the_case(self, *args, **kwargs):
        """The script that notes the case number on the call fails, once."""
        if not failed and "case_tries" in args:
            failed.append(args)
            raise redis.ResponseError("ERR user_script:1: attempt to index a nil value")
        return scripts(self, *args, **kwargs)
    monkeypatch.setattr(redis.Redis, "evalsha", a_bug_noting_the_case)
    answer = ET.fromstring(signed_post(client, "/voice/case?attempt=1",
                                       {**form, "Digits": "2024117"}).data)
    monkeypatch.undo()
    assert failed and answer.find("Dial").text == "+16515550000"
    signed_post(client, "/voice/status", {**form, "CallStatus": "completed",
                                          "CallDuration": "90"})
    log = _the_log(desk)
    assert (log.call_sid, log.status) == (form["CallSid"], "fallback")
    assert log.menu_path.startswith("1")  # the call's own record is kept beside it


def test_redis_down_without_fallback_apologises_and_hangs_up(settings, engine, make_app):
    app = make_app(settings.with_changes(redis_url="redis://127.0.0.1:9/0"))
    form = {"CallSid": "CA" + "1" * 32, "From": "+16125550101"}
    response = signed_post(app.test_client(), "/voice/incoming", form)
    root = ET.fromstring(response.data)
    assert root.find("Say") is not None and root.find("Hangup") is not None


def test_database_down_on_a_cache_miss_still_reaches_a_human(settings, desk, tmp_path,
                                                               make_app):
    app = make_app(settings.with_changes(fallback_number="+16515550000"))
    down = create_engine(f"sqlite:///{tmp_path}/no-such-dir/caseline.db")
    app.extensions["caseline"] = dataclasses.replace(
        app.extensions["caseline"], session_factory=sessionmaker(down))
    client = app.test_client()
    form = {"CallSid": "CA" + "2" * 32, "From": "+16125550101",
            "StirVerstat": "TN-Validation-Passed-A"}  # a number we trust: looked up
    response = signed_post(client, "/voice/incoming", form)
    assert ET.fromstring(response.data).find("Dial").text == "+16515550000"


@pytest.mark.parametrize("call_sid", ["", "%", "CA:1", "CA 1", "CA" + "f" * 70])
def test_a_webhook_naming_no_call_claims_no_advisor(client, desk, directory, r, call_sid):
    directory.advisor("A1")
    directory.load()
    make_available(desk, "A1")
    response = signed_post(client, "/voice/connect", {"CallSid": call_sid})
    assert ET.fromstring(response.data).find("Dial") is None
    assert r.hget(keys.advisor("A1"), "status") == "available"
    assert r.zscore(keys.leases(), "A1") is None


def test_a_status_callback_with_an_odd_call_sid_changes_nothing_and_never_crashes(
        client, r, caplog):
    form = {"CallSid": "CA:1", "CallStatus": "completed", "CallDuration": "5"}
    response = signed_post(client, "/voice/status", form)
    assert response.status_code == 200
    assert len(ET.fromstring(response.data)) == 0
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert r.keys("*") == []


@pytest.mark.parametrize("path", ["/voice/whisper/accept?advisor=A1",
                                  "/voice/callback/accept?advisor=A1"])
def test_an_accept_for_no_call_leaves_an_idle_advisor_idle(client, desk, directory, r, path):
    directory.advisor("A1")
    directory.load()
    make_available(desk, "A1")
    response = signed_post(client, path, {"CallSid": "CA" + "a" * 32, "Digits": "1"})
    assert ET.fromstring(response.data).find("Hangup") is not None  # nobody to bridge
    assert r.hget(keys.advisor("A1"), "status") == "available"
    assert r.zscore(keys.leases(), "A1") is None  # no lease that would later "free" them


def test_a_call_whose_session_was_lost_mid_call_still_expires_when_it_ends(client, r):
    sid = "CA" + "b" * 32  # Redis was flushed mid-call: the desk first hears of it ringing
    signed_post(client, "/voice/dial-result?advisor=A1", {"CallSid": sid,
                                                          "DialCallStatus": "no-answer"})
    signed_post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed"})
    assert r.exists(keys.call(sid))
    assert 0 < r.ttl(keys.call(sid)) <= 24 * 3600  # a day, like every call's session


def test_a_webhook_failing_after_the_caller_hung_up_is_no_fallback(settings, desk, directory,
                                                                   make_app, monkeypatch):
    """Pat hangs up while A2's phone rings; Twilio posts the `<Dial>`'s action after the
    status callback, and that webhook fails on a bug. Twilio ignores its reply (Pat is
    gone), so nobody was given the fallback: the log keeps `unanswered`."""
    directory.district()
    directory.contact()
    directory.advisor("A2", ["general"], phone="+16515550102")
    directory.load()
    make_available(desk, "A2")
    app = make_app(settings.with_changes(fallback_number="+16515550000"))
    client = app.test_client()
    form = {"CallSid": "CA" + "7" * 32, "From": "+16125550101", "To": "+18005550100",
            "StirVerstat": "TN-Validation-Passed-A", "CallStatus": "in-progress"}
    signed_post(client, "/voice/incoming", form)
    dial = ET.fromstring(signed_post(client, "/voice/menu?attempt=1",
                                     {**form, "Digits": "2"}).data).find("Dial")
    assert dial.findtext("Number") == "+16515550102"
    ended = {**form, "CallStatus": "completed"}
    signed_post(client, "/voice/status", {**ended, "CallDuration": "20"})
    assert _the_log(desk).status == "unanswered"

    failed = _a_bug_once(monkeypatch)
    signed_post(client, dial.get("action"), {**ended, "DialCallStatus": "no-answer"})
    monkeypatch.undo()
    assert failed
    log = _the_log(desk)
    assert log.status == "unanswered" and "fallback" not in log.details


def test_a_try_number_in_other_digits_is_read_as_none_not_a_crash(settings, make_app):
    """`?attempt=²` (a digit to `str.isdigit`, which `int` refuses): the webhook answers
    as for a request naming no try; before, reading it crashed the request, and the
    caller, asked for their PIN, was dialed to the fallback number."""
    app = make_app(settings.with_changes(fallback_number="+16515550000"))
    client = app.test_client()
    form = {"CallSid": "CA" + "9" * 32, "From": "+16125550101", "To": "+18005550100",
            "CallStatus": "in-progress"}
    signed_post(client, "/voice/incoming", form)
    answer = ET.fromstring(signed_post(
        client, "/voice/verify/pin?option=1&attempt=%C2%B2", {**form, "Digits": "7"}).data)
    assert answer.find("Dial") is None, ET.tostring(answer)


def test_a_failure_on_a_post_twilio_ignores_gives_no_fallback_and_frees_nobody(
        settings, desk, directory, make_app, emulator, monkeypatch):
    """A2 frees up for Pat, who waits; the redirect takes Pat out of Twilio's queue and
    /voice/connect rings A2. Twilio then posts the `<Enqueue>` action
    (`QueueResult=redirected`), whose reply it ignores, and that request fails on a
    bug: Pat was given nothing, so the call is not marked `fallback` (before: marked,
    which took Pat out of the desk's queue and freed A2 while A2's phone rang for
    her). And a mark that does come for a call already ringing its advisor (a reply
    Twilio did not act on) leaves the advisor held: only a claim never brought over
    is released."""
    from routing import availability, presence
    from tests.test_real_world import queue_caller

    directory.district()
    directory.contact()
    directory.advisor("A2", ["general"])
    directory.load()
    app = make_app(settings.with_changes(fallback_number="+16515550000"))
    client = app.test_client()
    sid = "CA" + "a" * 32
    emulator.register_call(sid)
    queue_caller(desk, sid, int(time.time() * 1000) - 60_000)
    make_available(desk, "A2")
    assert emulator.redirects(sid)  # A2 was claimed for Pat, Pat redirected
    form = {"CallSid": sid, "From": "+16125550101", "CallStatus": "in-progress"}
    assert ET.fromstring(signed_post(client, "/voice/connect", form).data).find(
        "Dial") is not None  # A2's phone rings
    failed = _a_bug_once(monkeypatch)
    signed_post(client, "/voice/queue-result", {**form, "QueueResult": "redirected"})
    monkeypatch.undo()
    assert failed
    assert desk.r.hget(keys.call(sid), "fallback") is None
    assert presence.advisor_state(desk.r, "A2")["call"] == sid

    availability.fallback_given(desk, sid, "number", int(time.time() * 1000))
    assert presence.advisor_state(desk.r, "A2")["call"] == sid  # still ringing for Pat
