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
from jobs.queues import CALL_LOGS_QUEUED_SECONDS, resume_call_logs
from tests.conftest import run_jobs
from tests.test_callback_wrap_up import lakeview  # noqa: F401 - the fixture
from tests.test_real_world import PAT, post
from tests.webhooks import signed_post

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
