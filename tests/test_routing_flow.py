"""The core line end to end: a signed call reaches the owner of its case, or a
teammate, or the queue, and every call is logged once on its case."""

from __future__ import annotations

import threading
import time

import pytest

from directory import keys
from routing import presence
from tests.conftest import API_TOKEN, make_available, run_jobs
from twilio_side.advisors import AdvisorPolicy

PAT = "+16125550101"
OWNER, TEAMMATE, OTHER = "A7", "A2", "A3"


@pytest.fixture
def lakeview(directory):
    """Lakeview with Pat Lee, case 2024117 owned by A7, and two of A7's teammates."""
    directory.district()
    directory.contact()
    numbers = {
        OWNER: directory.advisor(OWNER, ["general", "hosting"], phone="+16515550199"),
        TEAMMATE: directory.advisor(TEAMMATE, ["general"], phone="+16515550102"),
        OTHER: directory.advisor(OTHER, ["general"], phone="+16515550103"),
        "A9": directory.advisor("A9", ["fees"], phone="+16515550109"),
    }
    directory.case("2024117", owner=OWNER)
    directory.district("D200", "Riverside Unified", hosted=False)
    directory.case("2024999", district="D200", owner=TEAMMATE)
    directory.load()
    return numbers


def api(client, method: str, path: str, body: dict | None = None):
    """Call the operators' API with the bearer token."""
    return client.open(path, method=method, json=body,
                       headers={"Authorization": f"Bearer {API_TOKEN}"})


def test_owner_available_is_dialed_first(phone, desk, lakeview):
    make_available(desk, TEAMMATE, OTHER, OWNER)  # the owner is the most recently idle
    result = phone.call(PAT, "1 2024117#")
    assert result.dialed == [lakeview[OWNER]]
    assert result.outcome == "advisor"
    assert result.answered_by == lakeview[OWNER]


def test_any_key_at_the_whisper_takes_the_call_the_hash_key_too(phone, desk, lakeview):
    """The whisper says "press any key to accept": an advisor who presses # takes it."""
    make_available(desk, OWNER)
    result = phone.call(PAT, "1 2024117#", AdvisorPolicy(accept_key="#"))
    assert result.dialed == [lakeview[OWNER]]
    assert result.answered_by == lakeview[OWNER]


def test_owner_offline_goes_to_longest_idle_teammate(phone, desk, lakeview):
    make_available(desk, "A9", OTHER, TEAMMATE)  # A9 idles longest but is not a teammate
    result = phone.call(PAT, "1 2024117#")
    assert result.dialed == [lakeview[OTHER]]
    assert result.outcome == "advisor"


def test_owner_busy_goes_to_teammate(phone, desk, lakeview):
    make_available(desk, OWNER, TEAMMATE)
    presence.make_unavailable(desk.r, OWNER, "busy", now_ms=int(time.time() * 1000))
    result = phone.call(PAT, "1 2024117#")
    assert result.dialed == [lakeview[TEAMMATE]]


def test_no_answer_tries_each_teammate_once_then_queues(phone, desk, lakeview):
    make_available(desk, TEAMMATE, OTHER, OWNER)
    result = phone.call(PAT, "1 2024117#", advisors="no-answer", max_wait_seconds=0.3)
    assert result.dialed[0] == lakeview[OWNER]
    assert sorted(result.dialed) == sorted([lakeview[OWNER], lakeview[TEAMMATE], lakeview[OTHER]])
    assert result.queued
    assert result.outcome == "queue"
    # Nobody is stuck busy once the caller has gone.
    for advisor in (OWNER, TEAMMATE, OTHER):
        assert presence.advisor_state(desk.r, advisor)["status"] == "available"


def test_busy_owner_then_answering_teammate(phone, desk, lakeview):
    make_available(desk, TEAMMATE, OWNER)
    result = phone.call(PAT, "1 2024117#",
                        advisors={lakeview[OWNER]: "busy", lakeview[TEAMMATE]: "answer"})
    assert result.dialed == [lakeview[OWNER], lakeview[TEAMMATE]]
    assert result.answered_by == lakeview[TEAMMATE]


def test_voicemail_pickup_is_no_answer(phone, desk, lakeview):
    make_available(desk, TEAMMATE, OWNER)
    result = phone.call(PAT, "1 2024117#",
                        advisors={lakeview[OWNER]: "voicemail", lakeview[TEAMMATE]: "answer"})
    assert result.dialed == [lakeview[OWNER], lakeview[TEAMMATE]]
    assert result.answered_by == lakeview[TEAMMATE]
    run_jobs(desk)
    log = api(phone.app.test_client(), "GET", "/api/cases/2024117/calls").get_json()[0]
    assert log["advisors_tried"] == [OWNER, TEAMMATE]
    assert log["answered_by"] == TEAMMATE


def test_nobody_available_enqueues(phone, desk, lakeview):
    result = phone.call(PAT, "1 2024117#", max_wait_seconds=0.2)
    assert result.queued and result.dialed == []
    enqueue = result.events("enqueue")[0]
    assert enqueue.text == "general"


def test_queued_caller_is_redirected_to_the_advisor_who_frees_up(phone, desk, lakeview, emulator):
    caller = phone.caller(PAT, "1 2024117#", max_wait_seconds=10)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(result=caller.run()))
    thread.start()
    deadline = time.monotonic() + 5
    while not desk.r.zscore(keys.team_waiting("general"), caller.call_sid):
        assert time.monotonic() < deadline, "caller never queued"
        time.sleep(0.01)
    freed_at = time.monotonic()
    response = api(phone.app.test_client(), "PUT", f"/api/advisors/{TEAMMATE}/status",
                   {"status": "available"})
    assert response.status_code == 200
    thread.join(timeout=10)
    result = outcome["result"]
    redirects = emulator.redirects(caller.call_sid)
    assert redirects, "no REST redirect reached Twilio"
    assert redirects[0].at - freed_at < 1.0
    assert result.dialed == [lakeview[TEAMMATE]]
    assert result.outcome == "advisor"


@pytest.mark.databases
def test_each_call_is_logged_once_even_when_status_repeats(phone, desk, lakeview, client):
    make_available(desk, OWNER)
    phone.call(PAT, "1 2024117#", post_status_twice=True)
    run_jobs(desk)
    logs = api(client, "GET", "/api/cases/2024117/calls").get_json()
    assert len(logs) == 1
    log = logs[0]
    assert log["caller"] == PAT
    assert log["answered_by"] == OWNER
    assert log["status"] == "answered"
    assert log["menu_path"].startswith("1")
    assert log["talk_seconds"] == 60


def test_another_districts_case_is_not_found(phone, desk, lakeview):
    make_available(desk, TEAMMATE, OWNER)
    # 2024999 belongs to Riverside: Pat hears "not found" three times, then general.
    result = phone.call(PAT, "1 2024999# 2024999# 2024999#")
    assert result.outcome == "advisor"
    assert lakeview[TEAMMATE] in result.dialed or lakeview[OWNER] in result.dialed
    run_jobs(desk)
    assert api(phone.app.test_client(), "GET", "/api/cases/2024999/calls").get_json() == []


def test_advisor_released_after_answered_call(phone, desk, lakeview):
    make_available(desk, OWNER)
    phone.call(PAT, "1 2024117#")
    assert presence.advisor_state(desk.r, OWNER)["status"] == "available"


def test_reconciler_frees_an_advisor_whose_callbacks_were_lost(desk, lakeview, emulator):
    """A claim whose Dial result and status never came back expires; the next caller
    waiting gets that advisor."""
    from routing import acd

    now = int(time.time() * 1000)
    make_available(desk, OWNER)
    presence.claim_for_caller(desk.r, "CA-lost", team="general", owner_id=OWNER, now_ms=now,
                              lease_ms=desk.lease_ms)
    desk.r.hset(keys.call("CA-next"), mapping={"base": "http://caseline.test"})
    emulator.register_call("CA-next")
    presence.claim_for_caller(desk.r, "CA-next", team="general", owner_id=None, now_ms=now + 1,
                              lease_ms=desk.lease_ms)
    assert acd.reconcile(desk, now + 1000) == {"freed": 0, "dropped": 0}
    assert presence.advisor_state(desk.r, OWNER)["call"] == "CA-lost"
    later = now + desk.lease_ms + 1
    assert acd.reconcile(desk, later)["freed"] == 1
    assert presence.advisor_state(desk.r, OWNER)["call"] == "CA-next"
    assert emulator.redirects("CA-next")


def test_reconciler_drops_waiting_callers_whose_call_is_over(desk, lakeview):
    from routing import acd

    now = int(time.time() * 1000)
    desk.r.hset(keys.call("CA-gone"), mapping={"base": "http://caseline.test"})
    presence.claim_for_caller(desk.r, "CA-gone", team="general", owner_id=None, now_ms=now,
                              lease_ms=desk.lease_ms)
    desk.r.set(keys.call_ended("CA-gone"), "1")  # its status callback ran, but the queue kept it
    assert acd.reconcile(desk, now)["dropped"] == 1
    assert desk.r.zcard(keys.team_waiting("general")) == 0


@pytest.mark.databases
def test_status_for_a_call_never_seen_is_still_logged(client, desk, lakeview):
    from twilio.request_validator import RequestValidator

    from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, BASE_URL

    form = {"AccountSid": ACCOUNT_SID, "CallSid": "CA" + "9" * 32, "CallStatus": "completed",
            "CallDuration": "12", "From": PAT}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(BASE_URL + "/voice/status", form)
    client.post("/voice/status", data=form, headers={"X-Twilio-Signature": signature})
    run_jobs(desk)
    from directory.models import CallLog

    with desk.session_factory() as db:
        [log] = db.query(CallLog).all()
        # Nothing says the caller was given the fallback reply, nor how the call went.
        assert (log.call_sid, log.caller, log.status) == (form["CallSid"], PAT, "unknown")


def test_after_a_redis_flush_advisors_come_back_offline_and_can_sign_in(phone, desk, lakeview,
                                                                          client):
    make_available(desk, OWNER)
    desk.r.flushdb()
    roster = api(client, "GET", "/api/advisors").get_json()
    assert {a["id"]: a["status"] for a in roster} == dict.fromkeys(lakeview, "offline")
    response = api(client, "PUT", f"/api/advisors/{OWNER}/status", {"status": "available"})
    assert response.status_code == 200
    assert response.get_json()["status"] == "available"
    result = phone.call(PAT, "1 2024117#")  # contact and case come back from the database
    assert result.dialed == [lakeview[OWNER]]


def test_unknown_advisor_status_is_404(client, desk, lakeview):
    response = api(client, "PUT", "/api/advisors/NOPE/status", {"status": "available"})
    assert response.status_code == 404
    response = api(client, "PUT", f"/api/advisors/{OWNER}/status", {"status": "lunch"})
    assert response.status_code == 400
    assert api(client, "GET", "/api/advisors").status_code == 200
    assert client.get("/api/advisors").status_code == 401


def test_a_waiting_caller_who_hung_up_unnoticed_passes_the_advisor_on(client, desk, lakeview,
                                                                     emulator):
    """The REST redirect fails (Twilio: call not in progress): the advisor takes the next."""
    now = int(time.time() * 1000)
    for n, sid in enumerate(("CA-gone", "CA-live")):
        desk.r.hset(keys.call(sid), mapping={"base": "http://caseline.test"})
        presence.claim_for_caller(desk.r, sid, team="general", owner_id=None, now_ms=now + n,
                                  lease_ms=desk.lease_ms)
    emulator.register_call("CA-live")  # CA-gone is unknown to Twilio: its redirect fails
    api(client, "PUT", f"/api/advisors/{TEAMMATE}/status", {"status": "available"})
    deadline = time.monotonic() + 5
    while not emulator.redirects("CA-live"):
        assert time.monotonic() < deadline, "the next caller was never redirected"
        time.sleep(0.01)
    assert presence.advisor_state(desk.r, TEAMMATE)["call"] == "CA-live"
    assert desk.r.zcard(keys.team_waiting("general")) == 0
