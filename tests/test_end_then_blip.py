"""A Redis error right after a call's end is recorded cannot lose its call log.

The final status callback records the end (first end wins), then queues the log's job
in a second round trip. Redis going away between the two used to leave a call ended
but never among the calls to log: its retry (the web's kept end, or Twilio's repeat)
found the end recorded and did nothing, and the reconciler drops ended calls from the
open calls. The end now puts the call among the calls to log in its own step, and
the reconciler resumes logs no job was queued for.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from sqlalchemy import select

from directory.models import CallLog
from directory.redis_client import ThreadClient
from directory.scripts import script
from jobs.queues import CALL_LOGS_QUEUED_SECONDS, WRAPUP_ENDS, resume_call_logs, wrapup_end
from routing import acd, availability, presence
from tests.conftest import make_available, run_jobs
from tests.test_callback_wrap_up import lakeview  # noqa: F401 - the fixture
from tests.test_real_world import PAT, _on_call, post
from tests.webhooks import post_without_token, signed_post

pytestmark = pytest.mark.usefixtures("lakeview")


def test_a_redis_error_right_after_the_end_is_recorded_still_logs_the_call_once(
        app, client, desk, monkeypatch):
    sid = "CA" + uuid.uuid4().hex
    form = {"CallSid": sid, "From": PAT, "To": "+18005550100",
            "StirVerstat": "TN-Validation-Passed-A"}
    assert post(client, "/voice/incoming", form).find("Gather") is not None

    failed = []

    def gone(*args, **kwargs):
        failed.append(1)
        raise redis.ConnectionError("Redis went away right after the end was recorded")

    # The end's own script runs; the next round trip, queueing the log's job, fails.
    monkeypatch.setattr(app.extensions["caseline"].job_redis, "pipeline", gone)
    answered = signed_post(client, "/voice/status",
                           {**form, "CallStatus": "completed", "CallDuration": "20"})
    assert answered.status_code == 200  # valid TwiML, whatever failed behind it
    assert failed, "the log's job was queued on another connection"
    monkeypatch.undo()
    # Twilio's repeat (or the web's kept end) finds the end recorded.
    post(client, "/voice/status", {**form, "CallStatus": "completed", "CallDuration": "20"})

    # The reconciler's pass a minute later resumes the logs no job was queued for.
    resume_call_logs(desk.job_redis, time.time() + CALL_LOGS_QUEUED_SECONDS + 1)
    run_jobs(desk)
    with desk.session_factory() as db:
        logs = db.scalars(select(CallLog).filter_by(call_sid=sid)).all()
    assert [log.status for log in logs] == ["ended-in-menu"]


class FailAfterEnd:
    """Redis unreachable for the next `count` commands of the clients of class `client`
    (the web's: each request thread's client, the kept ends' retry thread's too) right
    after the end script (`_END_CALL`) of `call_sid` has run and committed: a blip, a
    failover, between the end and the releases that follow it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, desk, call_sid: str,
                 count: int = 1, client: type[redis.Redis] = ThreadClient) -> None:
        self.failed = 0
        sha = script(desk.r, acd._END_CALL).sha
        real = client._execute_command
        left = [0]

        def execute(client, *args, **options):
            if left[0] > 0:
                left[0] -= 1
                self.failed += 1
                raise redis.ConnectionError("Error 111 connecting: Connection refused")
            reply = real(client, *args, **options)
            if args[:2] == ("EVALSHA", sha) and call_sid in args:
                left[0] = count
            return reply

        monkeypatch.setattr(client, "_execute_command", execute)


def wait_for(what: str, check, timeout: float = 5.0) -> None:
    """Wait until `check()` holds (the kept end's retry runs 0.25-2 s after a failure)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


@pytest.fixture
def settings(settings):
    """A 30 s wrap-up after each talk."""
    return settings.with_changes(wrapup_seconds=30)


def test_an_end_whose_advisors_release_met_a_redis_failure_puts_them_in_wrap_up_once(
        app, client, desk, monkeypatch):
    """The end script commits, Redis fails for the advisor's release: the web keeps the
    end, and its retry (the end found recorded) starts the wrap-up it missed, from the
    retry's time; a later repeat starts no second wrap-up, and the call is logged once."""
    now = int(time.time() * 1000)
    make_available(desk, "A2")
    _on_call(desk, "A2", "CA-half-end", now)
    fault = FailAfterEnd(monkeypatch, desk, "CA-half-end")
    form = {"CallSid": "CA-half-end", "CallStatus": "completed", "CallDuration": "60"}
    assert signed_post(client, "/voice/status", form).status_code == 200
    assert fault.failed == 1, "the release after the end never met the failure"

    wait_for("A2 in wrap-up after the call",
             lambda: presence.advisor_state(desk.r, "A2").get("hold") == "wrapup")
    monkeypatch.undo()
    # The retry holds A2 in wrap-up, then schedules its end: a step of its own, which
    # may come a moment later (under load, after the fault is gone).
    wait_for("the wrap-up's end scheduled",
             lambda: desk.job_redis.zscore(WRAPUP_ENDS, wrapup_end("A2", "CA-half-end")))
    state = presence.advisor_state(desk.r, "A2")
    lease = int(state["lease"])
    assert state["call"] == "CA-half-end"
    # On time: 30 s from the retry (within seconds of the end), not the talk's hours.
    assert now + 30_000 <= lease <= int(time.time() * 1000) + 30_000
    assert desk.job_redis.zscore(WRAPUP_ENDS, wrapup_end("A2", "CA-half-end")) == lease

    post(client, "/voice/status", form)  # Twilio's repeat: the wrap-up started once
    assert presence.advisor_state(desk.r, "A2")["lease"] == str(lease)
    assert desk.job_redis.zscore(WRAPUP_ENDS, wrapup_end("A2", "CA-half-end")) == lease
    run_jobs(desk)
    with desk.session_factory() as db:
        logs = db.scalars(select(CallLog).filter_by(call_sid="CA-half-end")).all()
    assert [log.answered_by for log in logs] == ["A2"]


def test_a_status_repeated_long_after_the_end_leaves_the_advisors_next_call_alone(
        app, client, desk):
    """Twilio repeats a call's final status hours later: its advisor, who went through
    their wrap-up and now talks on another call, keeps that call, hold and lease."""
    now = int(time.time() * 1000)
    make_available(desk, "A2")
    _on_call(desk, "A2", "CA-old", now - 3 * 3600_000)
    form = {"CallSid": "CA-old", "CallStatus": "completed", "CallDuration": "60"}
    post(client, "/voice/status", form)
    assert presence.advisor_state(desk.r, "A2")["hold"] == "wrapup"
    availability.end_wrapup(desk, "A2", "CA-old", now - 3 * 3600_000 + 90_000)
    _on_call(desk, "A2", "CA-new", now)
    before = presence.advisor_state(desk.r, "A2")

    post(client, "/voice/status", form)
    post_without_token(client, "/voice/status", form)

    after = presence.advisor_state(desk.r, "A2")
    assert (after["call"], after["hold"], after["lease"]) == (
        "CA-new", "talking", before["lease"])
    assert desk.job_redis.zscore(WRAPUP_ENDS, wrapup_end("A2", "CA-new")) is None


def test_a_half_applied_end_of_a_conference_call_hangs_up_the_leg_it_left(
        app, client, desk, monkeypatch, emulator):
    """As above, for a contact who hung up in a conference with A2 (A2 brought a
    colleague in, say): the retry that releases A2 also hangs up A2's leg, which the
    failed first end never did. Before, A2 was shown available (after wrap-up) while
    their phone stayed connected to an empty conference, and the next caller's ring
    met a busy phone."""
    from directory import keys

    now = int(time.time() * 1000)
    make_available(desk, "A2")
    _on_call(desk, "A2", "CA-conf-end", now)
    desk.r.hset(keys.call("CA-conf-end"), mapping={
        "conference": "conf-CA-conf-end", "advisor_leg": "CA-a2-leg"})
    emulator.register_call("CA-a2-leg")
    fault = FailAfterEnd(monkeypatch, desk, "CA-conf-end")
    form = {"CallSid": "CA-conf-end", "CallStatus": "completed", "CallDuration": "60"}
    assert signed_post(client, "/voice/status", form).status_code == 200
    assert fault.failed == 1
    wait_for("A2 in wrap-up after the call",
             lambda: presence.advisor_state(desk.r, "A2").get("hold") == "wrapup")
    monkeypatch.undo()
    # The retry hangs the leg up after A2's release, on the web's background pool.
    wait_for("A2's leg hung up", lambda: [
        r.call_sid for r in emulator.requests if r.method == "POST"] == ["CA-a2-leg"])
