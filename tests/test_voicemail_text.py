"""A voicemail left at night is read, not only heard: Twilio's transcription lands on
the call's log, so the advisor who opens the case in the morning sees which message
is urgent. Driven as Twilio does (signed posts), on an evening of the suite's week."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis
import time_machine
from sqlalchemy import select

from directory import keys
from directory.models import CallLog
from jobs.queues import Queues, queue
from tests.conftest import API_TOKEN, card_while_ringing, run_jobs
from tests.test_real_world import PAT
from tests.webhooks import post

API = {"Authorization": f"Bearer {API_TOKEN}"}
EVENING = datetime(2026, 11, 24, 19, 30, tzinfo=ZoneInfo("America/Chicago"))
TEXT = "Hi, this is Pat, our payment portal is down for every school since six."


@pytest.fixture
def lakeview(directory):
    directory.district()
    directory.contact()
    directory.advisor("A7", ["general"])
    directory.case("2024117", owner="A7")
    directory.load()


def _voicemail(client, sid: str) -> None:
    """Pat leaves a message on case 2024117 after hours; the call ends."""
    post(client, "/voice/incoming", {"CallSid": sid, "From": PAT, "To": "+18005550100",
                                     "StirVerstat": "TN-Validation-Passed-A"})
    post(client, "/voice/menu", {"CallSid": sid, "Digits": "1"})
    record = post(client, "/voice/after-hours/case", {"CallSid": sid, "Digits": "2024117"})
    found = record.find("Record")
    assert found is not None and found.get("transcribe") == "true"
    assert found.get("transcribeCallback", "").endswith("/voice/transcribed")
    post(client, "/voice/recorded", {"CallSid": sid, "RecordingUrl": "https://rec/RE9",
                                     "RecordingDuration": "12"})
    post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                   "CallDuration": "60"})


def _transcribed(client, sid: str, status: str = "completed", text: str = TEXT) -> None:
    post(client, "/voice/transcribed", {"CallSid": sid, "TranscriptionStatus": status,
                                        "TranscriptionText": text, "RecordingUrl": "https://rec/RE9"})


@pytest.mark.databases
def test_the_transcription_of_a_night_voicemail_lands_once_on_the_case(desk, lakeview, client):
    with time_machine.travel(EVENING, tick=True):
        _voicemail(client, "CA-night")
        run_jobs(desk)  # the log is written long before Twilio transcribes
        _transcribed(client, "CA-night")
        _transcribed(client, "CA-night")  # Twilio repeats its callback
        run_jobs(desk)
    [log] = client.get("/api/cases/2024117/calls", headers=API).get_json()
    assert log["recording_url"] == "https://rec/RE9" and log["status"] == "voicemail"
    assert log["details"]["transcription"] == TEXT


@pytest.mark.databases
def test_a_transcription_before_the_log_waits_for_it(desk, lakeview, client):
    """The transcription job runs first (the log job not yet done, or the database down):
    it retries and the text still lands."""
    with time_machine.travel(EVENING, tick=True):
        _voicemail(client, "CA-early")
        _transcribed(client, "CA-early")
        jobs = queue(Queues.CALL_LOGS, desk.job_redis)
        # Run the transcription's job alone first: no log yet, so it is retried.
        [first] = [j for j in jobs.get_jobs() if j.func_name.endswith("attach_transcription")]
        with pytest.raises(Exception, match="CA-early"):
            first.perform()
        run_jobs(desk)
    with desk.session_factory() as db:
        log = db.scalars(select(CallLog).where(CallLog.call_sid == "CA-early")).one()
        assert log.details["transcription"] == TEXT


def test_a_failed_transcription_leaves_the_recording_as_it_stands(desk, lakeview, client):
    with time_machine.travel(EVENING, tick=True):
        _voicemail(client, "CA-failed")
        run_jobs(desk)
        _transcribed(client, "CA-failed", status="failed", text="")
        run_jobs(desk)
    [log] = client.get("/api/cases/2024117/calls", headers=API).get_json()
    assert log["recording_url"] == "https://rec/RE9" and "transcription" not in log["details"]


def test_the_advisor_reads_the_nights_message_on_the_card_in_the_morning(
        app, phone, desk, lakeview, client):
    import re

    from directory.accounts import set_password
    from tests.conftest import make_available
    from tests.test_console import sign_in

    with time_machine.travel(EVENING, tick=True):
        _voicemail(client, "CA-night")
        _transcribed(client, "CA-night")
        run_jobs(desk)
    set_password(desk.session_factory, desk.r, "A7", "correct horse battery", supervisor=False)
    page = app.test_client()
    sign_in(page, "A7", "correct horse battery")
    make_available(desk, "A7")
    card = card_while_ringing(page, phone, PAT, "1 2024117#")
    earlier = re.search(r'<ul id="card-previous">(.*?)</ul>', card, re.S)
    assert earlier is not None
    assert f'<q class="transcription">{TEXT}</q>' in earlier.group(1)
    assert 'href="https://rec/RE9"' in earlier.group(1)


def _leaves_a_message(client, sid: str) -> None:
    """Pat reaches the `<Record>` on case 2024117 after hours (the message follows)."""
    post(client, "/voice/incoming", {"CallSid": sid, "From": PAT, "To": "+18005550100",
                                     "StirVerstat": "TN-Validation-Passed-A"})
    post(client, "/voice/menu", {"CallSid": sid, "Digits": "1"})
    assert post(client, "/voice/after-hours/case",
                {"CallSid": sid, "Digits": "2024117"}).find("Record") is not None


def _the_log(desk, sid: str) -> CallLog:
    run_jobs(desk)
    with desk.session_factory() as db:
        return db.scalars(select(CallLog).where(CallLog.call_sid == sid)).one()


@pytest.mark.databases
def test_a_voicemail_whose_record_action_met_a_redis_blip_still_reaches_the_case(
        desk, lakeview, client, monkeypatch):
    """Pat hangs up to end her message; Redis is unreachable for the `<Record>` action
    only (Twilio posts it once): the web process keeps the recording and notes it once
    Redis answers, and the log carries it (before: `ended-in-menu`, no recording)."""
    sid = "CA-blip"

    def unreachable(self, *args, **kwargs):
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1. Connection refused.")
    with time_machine.travel(EVENING, tick=True):
        _leaves_a_message(client, sid)
        monkeypatch.setattr(redis.Redis, "execute_command", unreachable)
        monkeypatch.setattr(redis.Redis, "evalsha", unreachable)
        post(client, "/voice/recorded", {"CallSid": sid, "RecordingUrl": "https://rec/RE9",
                                         "RecordingDuration": "12", "CallStatus": "completed"})
        monkeypatch.undo()
        post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                       "CallDuration": "60"})
        deadline = time.monotonic() + 10
        while not desk.r.hget(keys.call(sid), "recording_url"):
            assert time.monotonic() < deadline, "the kept voicemail was never noted"
            time.sleep(0.05)
        log = _the_log(desk, sid)
    assert (log.recording_url, log.status) == ("https://rec/RE9", "voicemail")


@pytest.mark.databases
def test_a_voicemail_whose_record_action_never_came_reaches_the_case_by_its_text(
        desk, lakeview, client):
    """The `<Record>` action is lost outright (never reaches the line); Twilio's
    transcription callback, a minute on, names the recording (`RecordingUrl`): the log
    carries the recording and its text (before: the text on an `ended-in-menu` log)."""
    sid = "CA-lost"
    with time_machine.travel(EVENING, tick=True):
        _leaves_a_message(client, sid)
        post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                       "CallDuration": "60"})
        assert _the_log(desk, sid).recording_url is None  # written without it
        _transcribed(client, sid)
        log = _the_log(desk, sid)
    assert (log.recording_url, log.status) == ("https://rec/RE9", "voicemail")
    assert log.details["transcription"] == TEXT
