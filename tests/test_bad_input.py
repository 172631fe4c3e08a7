"""Any input at all gets valid TwiML, never a 5xx; failures still reach a human."""

from __future__ import annotations

import dataclasses
import logging
import xml.etree.ElementTree as ET

import pytest
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
    "/voice/outage/route", "/voice/oncall-result",
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


def test_a_call_that_reached_the_fallback_while_redis_was_down_is_logged_as_such(
        settings, desk, client, make_app):
    """Redis is down when the call comes in: the caller talks 60 s at the fallback number;
    Redis is back for the status callback. The call log and /metrics say `fallback`,
    not a caller who gave up in the menu (docs/contract.md, Call logs)."""
    down = make_app(settings.with_changes(redis_url="redis://127.0.0.1:9/0",
                                          fallback_number="+16515550000"))
    form = {"CallSid": "CA" + "3" * 32, "From": "+16125550101", "To": "+18005550100"}
    answer = signed_post(down.test_client(), "/voice/incoming", form)
    assert ET.fromstring(answer.data).find("Dial").text == "+16515550000"
    signed_post(client, "/voice/status", {**form, "CallStatus": "completed",
                                          "CallDuration": "60"})
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.query(CallLog).all()
    assert (log.call_sid, log.status) == (form["CallSid"], "fallback")
    assert 'outcome="fallback"' in client.get("/metrics").text


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
